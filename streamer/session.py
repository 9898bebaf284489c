"""One streaming session as a pure state machine: messages, audio, model results and time in; everything out.

No sockets, clocks, threads or models here. The connection feeds the inputs (`on_message`, `on_audio`,
`on_result`, `on_tick`, `on_shutdown`, `on_disconnect`), always with `now` as data, and acts on the `Output`: jobs
for the engine, messages for the client, committed events for the sinks, and when to close with which code. Every
limit (text and frame rates, pace, idle and session length, frame sizes) is decided here, so tests drive a whole
session in microseconds. Time is the client's audio clock: samples received ÷ the client's sample rate (plus
`resume_at` for a resumed session); model-rate sample n is at n / model_rate seconds on that clock (the resampler is
delay-compensated).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import msgspec

from streamer import protocol as p
from streamer.audio.pcm import PcmDecoder
from streamer.audio.resample import StreamResampler
from streamer.config import LimitsConfig
from streamer.errors import (
    AlreadyStarted,
    FrameTooLarge,
    InvalidOption,
    ModelFailed,
    NotStarted,
    RateLimited,
    SessionTooLong,
    ShuttingDown,
    StreamerError,
    Timeout,
    UnknownModel,
    UnsupportedFormat,
)
from streamer.jobs import Failed, Job, Result, Skipped
from streamer.limits import Deadlines, FrameRate, Pace, RateLimiter
from streamer.models.base import ModelSpec
from streamer.streaming import PlannedBlock, StreamingTrack
from streamer.windowed import PlannedWindow, WindowedTrack

Track = WindowedTrack | StreamingTrack
Planned = PlannedWindow | PlannedBlock

LAG_REPORT_INTERVAL_S = 2.0
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPING = "stopping"  # `stop` received (or forced): the last jobs run, then `done`
    DONE = "done"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    default_model: str
    hop_s: float | None = None  # server-wide override of the models' default hop
    commit_margin_s: float | None = None
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    max_pending_windows: int = 2  # outstanding jobs at which an upload's reads pause


@dataclass(slots=True)
class Started:
    """What `start` set up: everything that exists only once a session has started."""

    message: p.Start
    spec: ModelSpec
    decoder: PcmDecoder
    resampler: StreamResampler
    track: Track
    origin: float  # client-clock time of the first sample (`resume_at`)

    @property
    def midi_file(self) -> bool:
        return self.message.midi_file


@dataclass(slots=True)
class Output:
    started: Started | None = None  # set by the `start` that began the session
    jobs: list[Job] = field(default_factory=list)
    messages: list[p.ServerMessage] = field(default_factory=list)
    events: list[p.NoteEvent] = field(default_factory=list)  # committed now (also inside `messages`)
    close: int | None = None  # close the connection with this code once `messages` are sent

    def extend(self, other: Output) -> Output:
        self.started = self.started or other.started
        self.jobs += other.jobs
        self.messages += other.messages
        self.events += other.events
        self.close = self.close if self.close is not None else other.close
        return self


class Session:
    def __init__(
        self, session_id: str, models: Mapping[str, ModelSpec], options: SessionOptions, now: float = 0.0
    ) -> None:
        self.id = session_id
        self._models = models
        self._options = options
        limits = options.limits
        self._limits = limits
        self.state = State.AWAITING_START
        self.started: Started | None = None
        self.client_samples = 0
        self.windows_done = 0
        self.windows_skipped = 0
        self.windows_failed = 0
        self._text_rate = RateLimiter(limits.max_text_messages_per_s)
        self._frame_rate = FrameRate(limits.max_frames_per_audio_s)
        self._pace = Pace(limits.realtime_slack_s)
        self._deadlines = Deadlines(limits.start_timeout_s, limits.idle_timeout_s, limits.max_session_s, now)
        self._seq = 0
        self._outstanding: dict[int, Planned] = {}
        self._results: dict[int, Result] = {}
        self._next_apply = 0
        self._last_lag_report = -LAG_REPORT_INTERVAL_S
        self._close_code = CLOSE_NORMAL
        self._notes_closed = False  # every sounding note was ended (at `done`, or for the sinks at the disconnect)

    # ---- what the connection asks ------------------------------------------------------------------------------

    @property
    def audio_seconds(self) -> float:
        """Audio received so far, on the client's clock (from the start of this session's audio)."""
        return self.client_samples / self.started.message.sample_rate if self.started else 0.0

    @property
    def clock(self) -> float:
        """Where the client's clock is: the end of the audio received (events are on this clock)."""
        return (self.started.origin if self.started else 0.0) + self.audio_seconds

    @property
    def throttled(self) -> bool:
        """An upload with enough work queued: read no more audio until a result comes back."""
        return (
            self.state is State.STREAMING
            and self._limits.faster_than_realtime == "throttle"
            and self._pace.upload
            and len(self._outstanding) >= self._options.max_pending_windows
        )

    # ---- inputs ------------------------------------------------------------------------------------------------

    def on_message(self, text: str | bytes, now: float) -> Output:
        """A text message from the client."""
        return self._guard(lambda: self._message(text, now))

    def on_audio(self, data: bytes, now: float) -> Output:
        """A binary frame of PCM from the client."""
        return self._guard(lambda: self._audio(data, now))

    def on_result(self, seq: int, result: Result) -> Output:
        """The engine's result for job `seq`: the model's notes, `Skipped` or `Failed`. Applied in job order."""
        return self._guard(lambda: self._result(seq, result))

    def on_tick(self, now: float) -> Output:
        """Time passes: the deadlines for `start`, idleness and session length."""
        return self._guard(lambda: self._tick(now))

    def on_error(self, error: StreamerError) -> Output:
        """An error the I/O layer found (a frame too large to read, a client that does not read, a bug)."""
        return Output() if self.state is State.DONE else self._fail(error)

    def on_shutdown(self) -> Output:
        """The server is going away: commit what was heard, `done`, and close with 1001."""
        self._close_code = CLOSE_GOING_AWAY
        if self.state is State.AWAITING_START:
            return self._fail(ShuttingDown("the server is shutting down; retry on another server or later"))
        if self.state is State.STREAMING:
            return self._stop()
        return Output()

    def on_give_up(self) -> Output:
        """Shutdown ran out of time: the jobs still out count as skipped, and the session finishes now (what was
        committed stays; notes still sounding end here; `done`; close 1001)."""
        if self.state is State.DONE:
            return Output()
        out = self.on_shutdown()
        if self.state is not State.STOPPING:
            return out
        self.windows_skipped += len(self._outstanding)
        self._outstanding.clear()
        self._results.clear()
        return out.extend(self._finish())

    def on_disconnect(self) -> list[p.NoteEvent]:
        """The connection is gone (or a fatal error ended the session): end every sounding note now, for the MIDI
        sinks; nothing more is committed."""
        self.state = State.DONE
        self._outstanding.clear()
        self._results.clear()
        if self.started is None or self._notes_closed:
            return []
        self._notes_closed = True
        return self._shift(self.started.track.close(self.audio_seconds))

    # ---- internals ---------------------------------------------------------------------------------------------

    def _guard(self, step: Callable[[], Output]) -> Output:
        if self.state is State.DONE:
            return Output()
        try:
            return step()
        except StreamerError as e:
            return self._fail(e)

    def _message(self, text: str | bytes, now: float) -> Output:
        if self.state is State.STOPPING:
            return Output()  # after `stop` everything is ignored, so the last windows still commit
        self._deadlines.message(now)
        size = len(text) if isinstance(text, bytes) else _utf8_size(text, self._limits.max_text_bytes)
        if size > self._limits.max_text_bytes:
            raise FrameTooLarge(f"text message of {size} bytes exceeds {self._limits.max_text_bytes}")
        if not self._text_rate.allow(now):
            raise RateLimited(f"more than {self._limits.max_text_messages_per_s:g} text messages per second")
        message = p.decode_client(text)
        if isinstance(message, p.Start):
            return self._start(message, now)
        if self.state is State.AWAITING_START:
            raise NotStarted(f"`{message.__struct_config__.tag}` before `start`")
        if isinstance(message, p.Flush):
            return self._jobs(self._track.flush())
        return self._stop()

    def _audio(self, data: bytes, now: float) -> Output:
        if self.state is State.AWAITING_START:
            raise NotStarted("binary audio before `start`")
        if self.state is not State.STREAMING:
            return Output()
        self._deadlines.message(now)
        limits = self._limits
        if len(data) > limits.max_frame_bytes:
            raise FrameTooLarge(f"binary frame of {len(data)} bytes exceeds {limits.max_frame_bytes}")
        started = self._started
        audio = started.decoder.decode(data)
        frame_s = len(audio) / started.message.sample_rate
        if frame_s > limits.max_frame_seconds:
            raise FrameTooLarge(
                f"binary frame of {frame_s:.3f} s of audio exceeds {limits.max_frame_seconds:g} s; send 20–50 ms frames"
            )
        if not self._frame_rate.allow(self.audio_seconds + frame_s):
            raise RateLimited(
                f"more than {limits.max_frames_per_audio_s:g} frames per second of audio; send frames of at least "
                f"{1000 / limits.max_frames_per_audio_s:g} ms"
            )
        self.client_samples += len(audio)
        ahead = self._pace.on_audio(now, self.audio_seconds, frame_s)
        if ahead and limits.faster_than_realtime == "refuse":
            raise RateLimited(f"audio is arriving faster than real time ({self.audio_seconds:.1f} s of audio)")
        out = self._jobs(self._track.push(started.resampler.process(audio)))
        if self._deadlines.too_long(now, self.audio_seconds):
            out.extend(self._too_long())
        return out

    def _tick(self, now: float) -> Output:
        if self.state is State.AWAITING_START and self._deadlines.start_overdue(now):
            raise Timeout(f"no `start` within {self._limits.start_timeout_s:g} s")
        if self.state is not State.STREAMING:
            return Output()
        if self._deadlines.too_long(now, self.audio_seconds):
            return self._too_long()
        if self._deadlines.idle(now):
            error = Timeout(f"no message for {self._limits.idle_timeout_s:g} s; what was heard is committed")
            return self._error_message(error).extend(self._stop())
        return Output()

    def _too_long(self) -> Output:
        limit = self._limits.max_session_s
        error = SessionTooLong(f"session reached the {limit:g} s limit; what was heard is committed")
        return self._error_message(error).extend(self._stop())

    def _start(self, message: p.Start, now: float) -> Output:
        if self.state is not State.AWAITING_START:
            raise AlreadyStarted("`start` was already received for this session")
        if not p.MIN_SAMPLE_RATE <= message.sample_rate <= p.MAX_SAMPLE_RATE:
            raise UnsupportedFormat(
                f"sample rate {message.sample_rate} Hz is outside {p.MIN_SAMPLE_RATE}–{p.MAX_SAMPLE_RATE} Hz"
            )
        name = self._options.default_model if message.model is None else message.model
        spec = self._models.get(name)
        if spec is None:
            raise UnknownModel(f"model {name!r} is not loaded here; available: {', '.join(sorted(self._models))}")
        decoder = PcmDecoder(message.encoding, message.channels)
        track = self._track_for(spec, message)
        resampler = StreamResampler(message.sample_rate, spec.sample_rate)
        started = Started(message, spec, decoder, resampler, track, origin=message.resume_at)
        self.started = started
        self.state = State.STREAMING
        self._deadlines.start(now)
        hop = track.block if isinstance(track, StreamingTrack) else track.hop
        ready = p.Ready(session=self.id, model=spec.name, sample_rate=spec.sample_rate, window=spec.window_s,
                        hop=hop / spec.sample_rate, lookahead=spec.lookahead_s)  # fmt: skip
        return Output(started=started, messages=[ready])

    def _track_for(self, spec: ModelSpec, message: p.Start) -> Track:
        if spec.streaming:
            # Blocks are the model's own: a client's hop means nothing here unless it asks for exactly them.
            if message.hop is not None and spec.hop_samples(message.hop) != spec.window_samples:
                raise InvalidOption(
                    f"model {spec.name} streams in blocks of {spec.window_s * 1000:.0f} ms and takes no `hop`"
                )
            return StreamingTrack(spec, interim=message.interim, progress=message.progress)
        hop_s = message.hop if message.hop is not None else (self._options.hop_s or spec.default_hop_s)
        margin_s = spec.commit_margin_s if self._options.commit_margin_s is None else self._options.commit_margin_s
        if not spec.min_hop_s <= hop_s <= spec.window_s - margin_s:
            raise InvalidOption(
                f"hop {hop_s} s is outside {spec.min_hop_s}–{spec.window_s - margin_s:.3f} s for model {spec.name}"
            )
        return WindowedTrack(spec, spec.hop_samples(hop_s), round(margin_s * spec.sample_rate), message.progress)

    def _stop(self) -> Output:
        started = self._started
        out = self._jobs(started.track.finish(started.resampler.finish()))
        self.state = State.STOPPING
        if not self._outstanding:
            out.extend(self._finish())
        return out

    def _jobs(self, planned: list[Planned]) -> Output:
        out = Output()
        # "allow" treats a fast client like a live one: its queue is bounded by merging, never by waiting.
        live = not self._pace.upload or self._limits.faster_than_realtime == "allow"
        for window in planned:
            self._outstanding[self._seq] = window
            out.jobs.append(Job(self._seq, window.payload, live))
            self._seq += 1
        return out

    def _result(self, seq: int, result: Result) -> Output:
        if seq not in self._outstanding:
            return Output()
        self._results[seq] = result
        out = Output()
        while self._next_apply in self._results:
            planned = self._outstanding.pop(self._next_apply)
            out.extend(self._apply(planned, self._results.pop(self._next_apply)))
            self._next_apply += 1
        if self.state is State.STOPPING and not self._outstanding:
            out.extend(self._finish())
        return out

    def _apply(self, planned: Planned, result: Result) -> Output:
        if isinstance(result, Skipped):
            self.windows_skipped += 1
            return self._lag_report(planned)
        if isinstance(result, Failed):
            # The next window's region starts at the same horizon, so it covers this one's if it succeeds.
            self.windows_failed += 1
            return self._error_message(ModelFailed(f"the model failed on a window: {result.message}"))
        self.windows_done += 1
        events, extra = self._track.apply(planned, result)  # type: ignore[arg-type]
        # Nothing is placed past the audio received (a model's last frame can reach a few samples beyond it).
        end = self.audio_seconds
        events = [e if e.time <= end else msgspec.structs.replace(e, time=end) for e in events]
        out = _events_output(self._shift(events))
        out.messages += [self._shift_message(m) for m in extra]
        return out

    def _lag_report(self, planned: Planned) -> Output:
        now = planned.start / self._started.spec.sample_rate
        if now - self._last_lag_report < LAG_REPORT_INTERVAL_S:
            return Output()
        self._last_lag_report = now
        message = p.Lagging(
            skipped_windows=self.windows_skipped,
            behind=round(max(0.0, self.audio_seconds - now), 3),
            message="the server is behind real time; queued windows were merged into newer ones",
        )
        return Output(messages=[message])

    def _finish(self) -> Output:
        started = self._started
        out = _events_output(self._shift(started.track.close(self.audio_seconds)))
        self._notes_closed = True
        self.state = State.DONE
        out.messages.append(
            p.Done(
                notes=started.track.notes_committed,
                duration=self.clock,
                windows=self.windows_done,
                skipped_windows=self.windows_skipped,
                failed_windows=self.windows_failed,
            )
        )
        out.close = self._close_code
        return out

    def _error_message(self, error: StreamerError) -> Output:
        return Output(messages=[error_message(error)])

    def _fail(self, error: StreamerError) -> Output:
        """A fatal error: tell the client and close; a non-fatal one is only reported."""
        out = self._error_message(error)
        if error.fatal:
            self.state = State.DONE
            out.close = error.close_code
        return out

    def _shift(self, events: list[p.NoteEvent]) -> list[p.NoteEvent]:
        """Session-relative event times → the client's clock (a resumed session starts at `resume_at`)."""
        origin = self._started.origin
        if not origin:
            return events
        return [msgspec.structs.replace(e, time=e.time + origin) for e in events]

    def _shift_message(self, message: p.ServerMessage) -> p.ServerMessage:
        """An interim or progress message on the client's clock (a resumed session starts at `resume_at`)."""
        origin = self._started.origin
        if not origin:
            return message
        if isinstance(message, p.Interim):
            notes = [msgspec.structs.replace(n, onset=n.onset + origin) for n in message.notes]
            return p.Interim(time=message.time + origin, notes=notes)
        if isinstance(message, p.Progress):
            return p.Progress(time=message.time + origin)
        return message

    @property
    def _started(self) -> Started:
        assert self.started is not None, "only called once the session has started"
        return self.started

    @property
    def _track(self) -> Track:
        return self._started.track


def _events_output(events: list[p.NoteEvent]) -> Output:
    if not events:
        return Output()
    return Output(messages=[p.Events(events=events)], events=events)


def _utf8_size(text: str, limit: int) -> int:
    """UTF-8 size of a text message, without encoding one already over the limit in characters."""
    return len(text) if len(text) > limit else len(text.encode("utf-8", "surrogatepass"))


def error_message(error: StreamerError) -> p.Error:
    return p.Error(code=error.code, message=error.message, fatal=error.fatal)
