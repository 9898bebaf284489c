"""Stream audio to a server over WebSocket (the `websockets` client) and collect what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import websockets

from streamer import protocol as p
from streamer.client.audio_file import encode_pcm
from streamer.client.history import AudioHistory, preroll_start
from streamer.client.timeline import Timeline

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
FRAME_SECONDS = 0.02


@dataclass
class StreamResult:
    ready: p.Ready | None = None  # the last session's
    # Committed events on the stream's one timeline: the server's own, or with resumes, every session's events
    # spliced together and renumbered (streamer/client/timeline.py).
    events: list[p.NoteEvent] = field(default_factory=list)
    # Wall-clock seconds since the first audio frame was sent, one per event: with real-time pacing, an event at
    # audio time t arriving at a has latency a − t / speed.
    arrivals: list[float] = field(default_factory=list)
    errors: list[p.Error] = field(default_factory=list)
    lagging: list[p.Lagging] = field(default_factory=list)
    done: p.Done | None = None  # the last session's
    close_code: int | None = None
    resumes: list[Resume] = field(default_factory=list)
    failure: str | None = None  # why the stream ended without `done`, when no server could be reached


@dataclass(frozen=True)
class ResumePolicy:
    """How a stream survives its server going away (a draining server's close 1001, or a connection lost without a
    close): it reconnects (behind a balancer, to another server), starts a session with `resume_at` a little before
    the latest point known committed, re-sends the audio it holds from there and goes on. docs/protocol.md,
    "Resuming on another server", has the rule for notes sounding at that point."""

    tries: int = 5  # connection attempts per resume
    backoff_s: float = 0.05  # wait before the second attempt, doubled before each next one (0.75 s in all)
    # Audio re-sent before the resume point, so that the model hears what leads up to it (basic-pitch normalises
    # over its last second); the new session's events before the resume point are dropped.
    preroll_s: float = 1.0
    keep_s: float = 30.0  # audio kept for resuming: a resume point further back loses the difference
    # A resuming stream asks for `progress` messages (free for the server): they confirm each step's events, so that
    # a resume starts from the latest settled point and redoes a drained server's unsettled end. `interim` messages
    # confirm too, but cost the server about 4× the stream's CPU (its model also evaluates the frames not yet
    # final); ask for them only to show interim notes.
    interim: bool = False


@dataclass(frozen=True)
class Resume:
    """One resume, and what it cost."""

    at: float  # the resume point: everything before it was committed by the earlier sessions
    reason: str  # "drained" (`done`, then 1001), "connection lost", or the error code a server refused with
    sent: float  # the client's clock at the end of the audio sent when the server went away
    lost: float  # seconds of audio no server transcribed: older than the client still held (0 when kept)
    noticed_at: float  # time.monotonic() when the client noticed
    ready_at: float  # time.monotonic() when the new session was ready
    tries: int

    @property
    def uncommitted(self) -> float:
        """Seconds of audio a server heard, or was sent, but never committed: sent again to the new one."""
        return max(0.0, self.sent - self.at)

    @property
    def reconnect_s(self) -> float:
        return self.ready_at - self.noticed_at


async def stream_audio(
    url: str,
    data: np.ndarray,
    sample_rate: int,
    *,
    speed: float = 1.0,
    frame_seconds: float = FRAME_SECONDS,
    flush_every: float | None = None,
    **options: Any,
) -> StreamResult:
    """Send `data` ((frames, channels) float32) paced at `speed` × real time (0: as fast as the server takes it),
    then `stop`, and collect everything until `done` or close. `options` go to `stream_frames`."""
    frame = max(1, int(frame_seconds * sample_rate))

    async def frames() -> AsyncIterator[np.ndarray | None]:
        t0 = time.monotonic()
        next_flush = flush_every
        for i, pos in enumerate(range(0, len(data), frame)):
            if speed > 0:
                delay = t0 + i * frame / sample_rate / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield data[pos : pos + frame]
            if next_flush is not None and (pos + frame) / sample_rate >= next_flush:
                yield None  # a flush
                next_flush += flush_every or 0

    return await stream_frames(url, frames(), sample_rate, data.shape[1], **options)


async def stream_frames(
    url: str,
    frames: AsyncIterator[np.ndarray | None],
    sample_rate: int,
    channels: int = 1,
    *,
    encoding: str = "s16le",
    model: str | None = None,
    hop: float | None = None,
    midi_file: bool = False,
    interim: bool = False,
    resume_at: float = 0.0,
    on_message: Callable[[p.ServerMessage], None] | None = None,
    on_events: Callable[[list[p.NoteEvent]], None] | None = None,
    on_resume: Callable[[Resume], None] | None = None,
    headers: dict[str, str] | None = None,
    ping_interval: float | None = 20.0,
    resume: ResumePolicy | None = None,
) -> StreamResult:
    """Stream audio frames ((n, channels) float32; None sends a `flush`) as they come from `frames` (a file, a
    microphone), then `stop`; collect everything the server sends until `done` or close.

    `on_message` sees every server message as it arrives; `on_events` the committed events of the stream's one
    timeline (with `resume`, the sessions on other servers continue it; without, they are the server's own). With
    `resume`, a server going away mid-stream is survived (`ResumePolicy`); `on_resume` hears of each resume."""
    start = p.Start(
        sample_rate=sample_rate,
        encoding=encoding,
        channels=channels,
        model=model,
        hop=hop,
        midi_file=midi_file,
        # Progress messages say how far the session has committed: the best resume point.
        interim=interim or (resume is not None and resume.interim),
        progress=resume is not None,
        resume_at=resume_at,
    )
    stream = _Stream(url, frames, start, resume, headers, ping_interval)
    stream.on_message, stream.on_events, stream.on_resume = on_message, on_events, on_resume
    try:
        return await stream.run()
    finally:
        stream.source.cancel()


# Errors after which another server may well take the session: it was draining, or full.
RETRYABLE = frozenset({"shutting_down", "busy"})
CLOSE_GOING_AWAY = 1001
OPEN_TIMEOUT_S = 5.0  # connecting and getting `ready`: no model work, only the network and a balancer's retries
BACKLOG_FRAME_S = 0.05  # frames of the audio re-sent when resuming


@dataclass
class _SessionEnd:
    done: p.Done | None = None
    error: p.Error | None = None  # the fatal one that ended it
    close_code: int | None = None


class _Source:
    """The caller's frames, shared by the successive sessions of a stream: a frame still being awaited when a
    session ends is kept for the next one, so nothing is lost or read twice."""

    END = object()  # the frames are exhausted
    INTERRUPTED = object()  # the session ended first

    def __init__(self, frames: AsyncIterator[np.ndarray | None]) -> None:
        self._frames = frames
        self._next: asyncio.Future[np.ndarray | None] | None = None
        self.exhausted = False

    async def next(self, interrupt: asyncio.Future[Any]) -> object:
        if self.exhausted:
            return self.END
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self._frames))
        await asyncio.wait({self._next, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        if not self._next.done():
            return self.INTERRUPTED
        pending, self._next = self._next, None
        try:
            return pending.result()
        except StopAsyncIteration:
            self.exhausted = True
            return self.END

    def cancel(self) -> None:
        if self._next is not None:
            self._next.cancel()


class _Stream:
    """One stream of audio, over as many sessions as it takes: the first, then one per resume."""

    def __init__(
        self,
        url: str,
        frames: AsyncIterator[np.ndarray | None],
        start: p.Start,
        policy: ResumePolicy | None,
        headers: dict[str, str] | None,
        ping_interval: float | None,
    ) -> None:
        self.url = url
        self.source = _Source(frames)
        self.start = start
        self.policy = policy
        self.on_message: Callable[[p.ServerMessage], None] | None = None
        self.on_events: Callable[[list[p.NoteEvent]], None] | None = None
        self.on_resume: Callable[[Resume], None] | None = None
        self.headers = headers
        self.ping_interval = ping_interval
        self.result = StreamResult()
        # With resuming, events wait for the server's confirmation (its `progress` message) so that a session's
        # unsettled end is redone by the next one instead (streamer/client/timeline.py).
        self.timeline = Timeline(confirm=policy is not None)
        self.history = AudioHistory(start.sample_rate, policy.keep_s) if policy else None
        self.stopped = False  # every frame was sent and `stop` with it
        self.t0: float | None = None  # wall clock of the first frame sent: event arrivals count from here
        self.grid_s: float | None = None  # the model's block or hop, from the first `ready`: where it cuts audio

    def clock(self, sample: int) -> float:
        """The client's clock at a sample of the stream."""
        return self.start.resume_at + sample / self.start.sample_rate

    async def run(self) -> StreamResult:
        start, backlog = self.start, np.zeros((0, self.start.channels), dtype=np.float32)
        pending: dict[str, Any] | None = None  # the resume under way, recorded once its session is ready
        while True:
            opened = await self._open(start)
            if opened is None:  # no server took the stream: end what still sounds where the timeline stops
                self._emit(self.timeline.close(self.timeline.committed))
                return self.result
            ws, tries = opened
            if pending is not None:
                self.result.resumes.append(Resume(**pending, ready_at=time.monotonic(), tries=tries))
                if self.on_resume:
                    self.on_resume(self.result.resumes[-1])
            end = await self._session(ws, backlog)
            noticed = time.monotonic()
            reason = self._resumable(end)
            self._emit(self.timeline.on_session_end(end.done.duration if end.done else None, final=reason is None))
            if reason is None:
                self.result.done = end.done
                if end.error is not None:
                    self.result.errors.append(end.error)
                return self.result
            start, backlog, pending = self._resume_from(reason, drained=end.done is not None)
            pending["noticed_at"] = noticed

    def _resumable(self, end: _SessionEnd) -> str | None:
        """Why the stream should go on with another session, or None when it is over."""
        if self.policy is None or (end.done is not None and self.stopped):
            return None
        if end.done is not None:  # ended by the server: resume only if it is going away
            return "drained" if end.close_code == CLOSE_GOING_AWAY and end.error is None else None
        if end.error is not None:
            return end.error.code if end.error.code in RETRYABLE else None
        return "connection lost"

    def _resume_from(self, reason: str, drained: bool) -> tuple[p.Start, np.ndarray, dict[str, Any]]:
        """The next session: it starts `preroll_s` before the latest point committed, with the audio held from
        there."""
        assert self.policy is not None and self.history is not None
        history = self.history
        rate = self.start.sample_rate
        committed = history.sample_at(self.timeline.committed - self.start.resume_at)
        committed = min(max(committed, 0), history.sent)
        preroll = round(self.policy.preroll_s * rate)
        grid = self.grid_s * rate if self.grid_s else 1.0
        first, backlog = history.since(preroll_start(committed, preroll, history.start, grid))
        lost = max(0, history.start - committed) / rate
        at = max(self.timeline.committed, self.clock(history.start))
        self.timeline.resume(at, drained)
        start = msgspec.structs.replace(self.start, resume_at=self.clock(first))
        record = {"at": at, "reason": reason, "sent": self.clock(history.sent), "lost": lost}
        return start, backlog, record

    async def _open(self, start: p.Start) -> tuple[websockets.ClientConnection, int] | None:
        """Connect and start a session (with `resume`, a few tries with a short backoff: behind a balancer each
        lands on a server that is up); None when no server took it."""
        tries = self.policy.tries if self.policy else 1
        failure = "no answer"
        for attempt in range(1, tries + 1):
            if attempt > 1:
                await asyncio.sleep(self.policy.backoff_s * 2 ** (attempt - 2))  # type: ignore[union-attr]
            try:
                ws = await websockets.connect(
                    # No ping timeout: while the server throttles an upload, our pings wait behind the audio in
                    # flight (docs/protocol.md).
                    self.url, max_size=None, additional_headers=self.headers, ping_interval=self.ping_interval,
                    ping_timeout=None, open_timeout=OPEN_TIMEOUT_S,
                )  # fmt: skip
            except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
                if self.policy is None:
                    raise
                failure = str(e) or type(e).__name__
                continue
            try:
                await ws.send(p.encode(start))
                first = p.decode_server(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            except (websockets.ConnectionClosed, TimeoutError) as e:
                await ws.close()
                failure = str(e) or type(e).__name__
                continue
            if self.on_message:
                self.on_message(first)
            if isinstance(first, p.Ready):
                self.result.ready = first
                self.grid_s = self.grid_s or first.hop
                return ws, attempt
            assert isinstance(first, p.Error)
            await _wait_closed(ws)
            self.result.close_code = ws.close_code
            if self.policy is None or first.code not in RETRYABLE:
                self.result.errors.append(first)
                return None
            failure = f"{first.code}: {first.message}"
        self.result.failure = f"no server took the stream after {tries} tries (last: {failure})"
        return None

    async def _session(self, ws: websockets.ClientConnection, backlog: np.ndarray) -> _SessionEnd:
        """Send the backlog, then the caller's frames (and `stop` after the last) while receiving; returns when the
        server closed the session or the connection was lost."""
        end = _SessionEnd()
        receiver = asyncio.create_task(self._receive(ws, end))
        try:
            step = max(1, round(BACKLOG_FRAME_S * self.start.sample_rate))
            for pos in range(0, len(backlog), step):
                if receiver.done():
                    break
                await ws.send(encode_pcm(backlog[pos : pos + step], self.start.encoding))
            while not receiver.done():
                if self.stopped:
                    await ws.send(p.encode(p.Stop()))
                    break
                item = await self.source.next(receiver)
                if item is _Source.INTERRUPTED:
                    break
                if item is _Source.END:
                    self.stopped = True
                    continue
                if item is None:
                    await ws.send(p.encode(p.Flush()))
                    continue
                assert isinstance(item, np.ndarray)
                if self.history is not None:
                    self.history.append(item)  # before sending: a frame the server may not have read is kept
                if self.t0 is None:
                    self.t0 = time.monotonic()
                await ws.send(encode_pcm(item, self.start.encoding))
        except websockets.ConnectionClosed:
            pass
        await receiver
        await ws.close()
        return end

    async def _receive(self, ws: websockets.ClientConnection, end: _SessionEnd) -> None:
        try:
            async for raw in ws:
                message = p.decode_server(raw)
                if self.on_message:
                    self.on_message(message)
                if isinstance(message, p.Events):
                    self._emit(self.timeline.on_events(message.events))
                elif isinstance(message, p.Progress | p.Interim):
                    self._emit(self.timeline.on_progress(message.time))
                elif isinstance(message, p.Error):
                    if message.fatal:
                        end.error = message
                    else:
                        self.result.errors.append(message)
                elif isinstance(message, p.Lagging):
                    self.result.lagging.append(message)
                elif isinstance(message, p.Done):
                    end.done = message
        except websockets.ConnectionClosed:
            pass
        end.close_code = self.result.close_code = ws.close_code

    def _emit(self, events: list[p.NoteEvent]) -> None:
        if not events:
            return
        now = time.monotonic() - (self.t0 if self.t0 is not None else time.monotonic())
        self.result.events.extend(events)
        self.result.arrivals.extend([now] * len(events))
        if self.on_events:
            self.on_events(events)


async def _wait_closed(ws: websockets.ClientConnection) -> None:
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass
