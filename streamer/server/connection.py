"""One WebSocket connection: moves bytes between the socket, the pure `Session`, the engine and the outputs.

Every decision (limits, pace, errors, when to close) is the session's; this class reads, feeds the session with
the time, and acts on its `Output`. MIDI ports and files are `SessionOutputs` (outputs.py), off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMessage, WSMsgType, web

from streamer import protocol as p
from streamer.errors import FrameTooLarge, NotReading, StreamerError
from streamer.jobs import Result
from streamer.server.outputs import SessionOutputs
from streamer.session import Output, Session, Started

if TYPE_CHECKING:
    from streamer.engine import StreamHandle
    from streamer.server.state import ServerState

log = logging.getLogger(__name__)

TICK_S = 0.5  # how often a quiet session's deadlines are checked, and a throttled one's socket
SHUTDOWN_CLOSE_S = 0.5  # at shutdown, how long the last messages and the close handshake may take
WS_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011


class SessionLog(logging.LoggerAdapter):
    """Every log line of a session carries its id (`session=…`), so one session's story can be grepped."""

    def process(self, msg: object, kwargs: Any) -> tuple[object, Any]:
        return f"session={self.extra['session']} {msg}", kwargs  # type: ignore[index]


class Connection:
    def __init__(self, state: ServerState, ws: web.WebSocketResponse, request: web.Request, remote: str) -> None:
        self.state = state
        self.ws = ws
        self.request = request
        self.remote = remote
        self.id = uuid.uuid4().hex[:12]
        self.session = Session(self.id, state.specs, state.session_options, now=time.monotonic())
        self.log = SessionLog(log, {"session": self.id})
        self.outputs = SessionOutputs(self.id, self.log, state.metrics.midi_file_errors.inc)
        self._stream: StreamHandle | None = None
        self._outbox: asyncio.Queue[p.ServerMessage | None] = asyncio.Queue()
        self._wake = asyncio.Event()  # a result came back, or the server is shutting down
        self._close_code: int | None = None
        self._close_wait = state.config.limits.close_timeout_s

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        except ConnectionError:
            self._close_code = self._close_code or 1000  # the peer vanished: a normal end for us
        except Exception:  # never let one session's bug take down the server
            self.log.exception("session failed")
            self._act(self.session.on_error(StreamerError("internal error")))
            self._close_code = CLOSE_INTERNAL_ERROR
        finally:
            await self._release()
            self._outbox.put_nowait(None)
            # A client that does not read (or is stuck sending) must not hold the server: bounded waits.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, self._close_wait)
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(code=self._close_code or 1000), self._close_wait)

    def shutdown(self) -> None:
        """Server shutdown: commit what was heard, send `done`, close with 1001."""
        self._close_wait = min(self._close_wait, SHUTDOWN_CLOSE_S)
        self._act(self.session.on_shutdown())
        self._wake.set()

    def give_up(self) -> None:
        """Shutdown is out of time: finish now without the windows still queued (they count as skipped)."""
        self._close_wait = min(self._close_wait, SHUTDOWN_CLOSE_S)
        if self._stream is not None:
            self._stream.close()
        self._act(self.session.on_give_up())
        self._wake.set()

    async def _read_loop(self) -> None:
        """Read and feed the session. Ticks come from our own timer, not from the socket's receive timeout: a
        client's pings would restart that, and a session that only pings must still time out."""
        receiving: asyncio.Future[Any] | None = None
        try:
            while self._close_code is None:
                if receiving is None and self.session.throttled:
                    await self._wait_for_room()
                    continue
                if receiving is None:
                    receiving = asyncio.ensure_future(self.ws.receive())
                self._wake.clear()
                waking = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({receiving, waking}, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
                if receiving not in done:
                    self._act(self.session.on_tick(time.monotonic()))
                    continue
                msg, receiving = receiving.result(), None
                if not await self._handle(msg):
                    return
        finally:
            if receiving is not None:
                receiving.cancel()

    async def _handle(self, msg: WSMessage) -> bool:
        """One message from the socket; False when the socket is closed."""
        session = self.session
        now = time.monotonic()
        if msg.type == WSMsgType.BINARY:
            before = session.audio_seconds
            self._act(session.on_audio(msg.data, now))
            self.state.metrics.audio_seconds.inc(max(0.0, session.audio_seconds - before))
        elif msg.type == WSMsgType.TEXT:
            self._act(session.on_message(msg.data, now))
            await self.outputs.opened()  # after `start`: no audio is read before the session's sinks are open
        elif msg.type == WSMsgType.ERROR:
            error = self.ws.exception()
            if getattr(error, "code", None) != WS_MESSAGE_TOO_BIG:
                raise ConnectionResetError(str(error))
            limit = self.state.config.limits.max_frame_bytes
            self._act(session.on_error(FrameTooLarge(f"message exceeds the {limit}-byte limit")))
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return False
        return True

    async def _wait_for_room(self) -> None:
        """An upload waits here for the model (TCP backpressure), watching its socket and the deadlines."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), TICK_S)
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client went away while throttled")
        self._act(self.session.on_tick(time.monotonic()))

    def _act(self, out: Output) -> None:
        if out.started is not None:
            self._attach(out.started)
        if out.events:
            self.outputs.send(out.events)
        limit = self.state.config.limits.max_outbox_messages
        for message in out.messages:
            if isinstance(message, p.Error):
                self.state.count_error(message.code)
                self.log.warning("error %s: %s", message.code, message.message)
            if self._outbox.qsize() >= limit:
                self._client_not_reading(limit)
                return
            self._outbox.put_nowait(message)
        for job in out.jobs:
            assert self._stream is not None
            self._stream.submit(job.payload, functools.partial(self._on_result, job.seq), live=job.live)
        if out.close is not None and self._close_code is None:
            self._close_code = out.close

    def _on_result(self, seq: int, result: Result) -> None:
        self._wake.set()
        self._act(self.session.on_result(seq, result))

    def _client_not_reading(self, limit: int) -> None:
        error = NotReading(f"more than {limit} messages wait for this client, which is not reading")
        self.log.warning("error %s: %s", error.code, error.message)
        self.state.count_error(error.code)
        self._close_code = error.close_code
        self.session.on_error(error)

    def _attach(self, started: Started) -> None:
        self._stream = self.state.engines[started.spec.name].open_stream()
        self.log.info("session started: model=%s start=%s from %s", started.spec.name, started.message, self.remote)
        self.outputs.open(self.state.open_sinks, started.midi_file)

    async def _write_loop(self) -> None:
        while (message := await self._outbox.get()) is not None:
            if isinstance(message, p.Done):
                await self.outputs.finish_files(message, self.session.clock)
            if self.ws.closed:
                continue
            try:
                await self.ws.send_str(p.encode(message))
            except (ConnectionError, RuntimeError):
                return

    async def _release(self) -> None:
        """Connection over (normally or not): end sounding notes on the sinks, free the engine stream."""
        if self._stream is not None:
            self._stream.close()
        await self.outputs.close(self.session.on_disconnect())
        self.state.forget(self)

