"""One WebSocket connection: moves bytes between the socket, the pure `Session`, the engine and the sinks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from streamer.errors import FrameTooLarge, ModelFailed, RateLimited, SessionTooLong, StreamerError, Timeout
from streamer.notes import WindowNote
from streamer.server import protocol as p
from streamer.session import Output, PendingWindow, Session, State, error_message
from streamer.sinks.base import EventSink
from streamer.sinks.midi_file import MidiFileSink

if TYPE_CHECKING:
    from streamer.server.hub import Hub

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
REALTIME_PACE_TOLERANCE = 1.2
WS_MESSAGE_TOO_BIG = 1009
FRAME_BURST = 100


class RateLimiter:
    """Token bucket: `rate` messages per second on average, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def text_bytes(text: str, limit: int) -> int:
    """UTF-8 size of a text message (the limit is in bytes), without encoding one already over it in characters."""
    return len(text) if len(text) > limit else len(text.encode("utf-8", "surrogatepass"))


class SessionLog(logging.LoggerAdapter):
    """Every log line of a session carries its id (`session=…`), so one session's story can be grepped."""

    def process(self, msg: object, kwargs: Any) -> tuple[object, Any]:
        return f"session={self.extra['session']} {msg}", kwargs  # type: ignore[index]


class Connection:
    def __init__(self, hub: Hub, ws: web.WebSocketResponse, remote: str) -> None:
        self.hub = hub
        self.ws = ws
        self.remote = remote
        self.id = uuid.uuid4().hex[:12]
        self.session = Session(self.id, hub.specs, hub.session_options)
        self.log = SessionLog(log, {"session": self.id})
        self.sinks: list[EventSink] = []
        self._session_file: MidiFileSink | None = None  # the MIDI file returned in `done` when asked for
        self._engine = None
        self._stream: int | None = None
        self._model_state: object = None
        self._outbox: asyncio.Queue[p.ServerMessage | None] = asyncio.Queue()
        self._capacity = asyncio.Event()
        self._finished = asyncio.Event()
        self._started_at = time.monotonic()
        self._first_audio_at: float | None = None
        self._longest_frame_s = 0.0
        self._close_code = CLOSE_NORMAL
        self._text_rate = RateLimiter(hub.config.limits.max_text_messages_per_s)
        self._frames = 0

    # ---- main loop ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            await self._read_loop()
        except StreamerError as e:
            await self._fail(e)
        except Exception as e:  # never let one session's bug take down the server
            self.log.exception("session failed")
            await self._fail(StreamerError(f"internal error: {type(e).__name__}"))
        finally:
            self._release()
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer
            if not self.ws.closed:
                await self.ws.close(code=self._close_code)

    async def _read_loop(self) -> None:
        limits = self.hub.config.limits
        while not self._finished.is_set():
            try:
                msg = await self.ws.receive(timeout=limits.idle_timeout_s)
            except TimeoutError:
                raise Timeout(f"no message for {limits.idle_timeout_s:g} s; closing idle session") from None
            if msg.type == WSMsgType.TEXT:
                if not self._text_rate.allow(time.monotonic()):
                    raise RateLimited(f"more than {limits.max_text_messages_per_s:g} text messages per second")
                size = text_bytes(msg.data, limits.max_text_bytes)
                if size > limits.max_text_bytes:
                    raise FrameTooLarge(f"text message of {size} bytes exceeds {limits.max_text_bytes}")
                out = self.session.on_text(msg.data)
                if self.session.state is not State.AWAITING_START and self._engine is None:
                    self._attach_engine()
                self._emit(out)
            elif msg.type == WSMsgType.BINARY:
                if len(msg.data) > limits.max_frame_bytes:
                    raise FrameTooLarge(f"binary frame of {len(msg.data)} bytes exceeds {limits.max_frame_bytes}")
                if self._first_audio_at is None:
                    self._first_audio_at = time.monotonic()
                self._frames += 1
                if self._frames > FRAME_BURST + limits.max_frames_per_audio_s * self.session.audio_seconds:
                    raise RateLimited(
                        f"more than {limits.max_frames_per_audio_s:g} frames per second of audio; send frames of "
                        f"at least {1000 / limits.max_frames_per_audio_s:g} ms"
                    )
                before = self.session.audio_seconds
                self._emit(self.session.on_audio(msg.data))
                self._longest_frame_s = max(self._longest_frame_s, self.session.audio_seconds - before)
                self._check_length()
                await self._throttle()
            elif msg.type == WSMsgType.ERROR:
                error = self.ws.exception()
                if getattr(error, "code", None) == WS_MESSAGE_TOO_BIG:
                    raise FrameTooLarge(f"message exceeds the {limits.max_frame_bytes}-byte limit")
                raise StreamerError(f"websocket error: {error}")
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
        await self._drain_outbox()

    async def shutdown(self, grace_s: float) -> None:
        """Server shutdown: commit what was heard, send `done`, and close with 1001."""
        self._close_code = CLOSE_GOING_AWAY
        if self.session.state is State.STREAMING:
            self._emit(self.session.request_stop())
        if self.session.state is State.AWAITING_START:
            self._finished.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), grace_s)
        await self._drain_outbox()
        if not self.ws.closed:
            await self.ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")

    # ---- plumbing ----------------------------------------------------------------------------------------------

    def _attach_engine(self) -> None:
        spec = self.session.model
        assert spec is not None
        self._engine = self.hub.engines[spec.name]
        self._stream = self._engine.open_stream()
        self._model_state = self._engine.model.new_stream()
        self.sinks = self.hub.open_sinks(self.id)
        start = self.session.start_message
        if start is not None and start.midi_file:
            self._session_file = MidiFileSink(self.id)
            self.sinks.append(self._session_file)
        self.log.info("session started: model=%s start=%s from %s", spec.name, self.session.start_message, self.remote)

    def _emit(self, out: Output) -> None:
        if out.events:
            self._send_to_sinks(out.events)
        for message in out.messages:
            if isinstance(message, p.Done) and self._session_file is not None:
                message.midi = self._session_midi()
            self._outbox.put_nowait(message)
        for window in out.windows:
            self._submit(window)
        if out.finished:
            self._finished.set()

    def _session_midi(self) -> str:
        assert self._session_file is not None
        self._session_file.close()
        return base64.b64encode(self._session_file.to_bytes()).decode("ascii")

    def _submit(self, window: PendingWindow) -> None:
        assert self._engine is not None and self._stream is not None
        window.request.stream = self._model_state
        seq = window.seq

        def done(notes: Sequence[WindowNote] | None, error: BaseException | None) -> None:
            self._capacity.set()
            if self.session.state is State.DONE:
                return
            if error is not None:
                self.hub.count_error("model_failed")
                self._outbox.put_nowait(error_message(ModelFailed(f"the model failed on a window: {error}")))
            try:
                self._emit(self.session.on_window_done(seq, notes))
            except Exception:
                self.log.exception("applying a window failed")

        self._engine.submit(self._stream, window.request, done, coalesce=not self._ahead_of_real_time())

    def _ahead_of_real_time(self) -> bool:
        """A live source cannot send audio before it was played: its audio clock stays within one frame (plus
        jitter) of the wall clock since its first frame. Anything further ahead is a file sent faster than real time."""
        if self._first_audio_at is None:
            return False
        wall = time.monotonic() - self._first_audio_at
        slack = self.hub.config.limits.realtime_slack_s + self._longest_frame_s
        return self.session.audio_seconds > REALTIME_PACE_TOLERANCE * wall + slack

    async def _throttle(self) -> None:
        """A client sending faster than real time waits here until the engine has room (TCP backpressure)."""
        if self._engine is None or self._stream is None or not self._ahead_of_real_time():
            return
        policy = self.hub.config.limits.faster_than_realtime
        if policy == "refuse":
            raise RateLimited(
                f"audio is arriving faster than real time ({self.session.audio_seconds:.1f} s of audio in "
                f"{time.monotonic() - (self._first_audio_at or 0):.1f} s)"
            )
        if policy != "throttle":
            return
        while self._engine.pending(self._stream) >= self._engine.max_pending:
            self._capacity.clear()
            await self._capacity.wait()

    def _check_length(self) -> None:
        limit = self.hub.config.limits.max_session_s
        if self.session.audio_seconds > limit or time.monotonic() - self._started_at > limit:
            self._emit(self.session.request_stop())
            raise SessionTooLong(f"session reached the {limit:g} s limit; what was heard is committed")

    def _send_to_sinks(self, events: Sequence[p.NoteEvent]) -> None:
        for sink in self.sinks:
            try:
                sink.send(events)
            except Exception:
                self.log.exception("sink %s failed", type(sink).__name__)

    async def _write_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None:
                return
            if self.ws.closed:
                continue
            try:
                await self.ws.send_str(p.encode(message))
            except (ConnectionError, RuntimeError):
                continue
            if isinstance(message, p.Done):
                await self.ws.close(code=self._close_code)

    async def _drain_outbox(self) -> None:
        while not self._outbox.empty() and not self.ws.closed:
            await asyncio.sleep(0.001)

    async def _fail(self, error: StreamerError) -> None:
        self.log.warning("session error %s: %s", error.code, error.message)
        self.hub.count_error(error.code)
        self._outbox.put_nowait(error_message(error))
        if isinstance(error, SessionTooLong):
            # The stop was already requested: let the last windows commit before closing.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), self.hub.config.server.shutdown_grace_s)
        self._close_code = error.close_code
        await self._drain_outbox()

    def _release(self) -> None:
        """Connection over (normally or not): end sounding notes on the sinks, free the engine stream."""
        self._send_to_sinks(self.session.abort())
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                self.log.exception("closing sink %s failed", type(sink).__name__)
        if self._engine is not None and self._stream is not None:
            self._engine.close_stream(self._stream)
        self.hub.forget(self)
