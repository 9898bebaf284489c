"""One streaming session as a pure state machine: messages and audio in → windows to run, events and replies out.

No sockets, clocks, threads or models here: the server moves bytes and runs windows on the engine, tests drive
this class directly. Time is the client's audio clock: samples received ÷ the client's sample rate; model-rate
sample n is at n / model_rate seconds on that same clock (the resampler is delay-compensated).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from streamer.audio.pcm import PcmDecoder
from streamer.audio.resample import StreamResampler
from streamer.audio.ring import Window, WindowCutter
from streamer.errors import (
    AlreadyStarted,
    BadMessage,
    InvalidOption,
    NotStarted,
    StreamerError,
    UnknownMessageType,
    UnknownModel,
    UnsupportedFormat,
)
from streamer.models.base import ModelSpec, WindowRequest
from streamer.notes import WindowNote
from streamer.server import protocol as p
from streamer.stitch import Stitcher

LAG_REPORT_INTERVAL_S = 2.0


class State(enum.Enum):
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPING = "stopping"
    DONE = "done"


@dataclass(slots=True)
class PendingWindow:
    """A window handed to the engine; its notes commit the stream up to `until` (model-rate samples)."""

    seq: int
    request: WindowRequest
    until: int


@dataclass(slots=True)
class Output:
    messages: list[p.ServerMessage] = field(default_factory=list)
    windows: list[PendingWindow] = field(default_factory=list)
    events: list[p.NoteEvent] = field(default_factory=list)  # committed now (also inside `messages`)
    finished: bool = False  # `done` was sent: close the connection

    def extend(self, other: Output) -> None:
        self.messages += other.messages
        self.windows += other.windows
        self.events += other.events
        self.finished = self.finished or other.finished


@dataclass(frozen=True, slots=True)
class SessionOptions:
    default_model: str
    hop_s: float | None = None  # server-wide override of the models' default hop
    commit_margin_s: float | None = None


class Session:
    def __init__(self, session_id: str, models: Mapping[str, ModelSpec], options: SessionOptions) -> None:
        self.id = session_id
        self._models = models
        self._options = options
        self.state = State.AWAITING_START
        self.model: ModelSpec | None = None
        self.start_message: p.Start | None = None
        self.client_samples = 0
        self.windows_done = 0
        self.windows_skipped = 0
        self._seq = 0
        self._planned_until = 0  # furthest commit point of any window handed out
        self._results: dict[int, Sequence[WindowNote] | None] = {}
        self._pending: dict[int, PendingWindow] = {}
        self._next_apply = 0
        self._last_lag_report = -LAG_REPORT_INTERVAL_S

    # ---- properties --------------------------------------------------------------------------------------------

    @property
    def audio_seconds(self) -> float:
        """Audio received so far, on the client's clock."""
        rate = self.start_message.sample_rate if self.start_message else 1
        return self.client_samples / rate

    # ---- inputs ------------------------------------------------------------------------------------------------

    def on_text(self, text: str | bytes) -> Output:
        if self.state in (State.STOPPING, State.DONE):
            return Output()  # messages after `stop` are ignored, malformed ones too: the last windows still commit
        try:
            message = p.decode_client(text)
        except msgspec.ValidationError as e:
            if "Invalid value" in str(e) and "$.type" in str(e):
                raise UnknownMessageType(f"unknown message type: {e}") from e
            raise BadMessage(f"invalid message: {e}") from e
        except msgspec.DecodeError as e:
            raise BadMessage(f"malformed JSON: {e}") from e
        if isinstance(message, p.Start):
            return self._start(message)
        if self.state is State.AWAITING_START:
            raise NotStarted(f"`{message.__struct_config__.tag}` before `start`")
        if isinstance(message, p.Flush):
            return self._flush()
        return self._stop()

    def on_audio(self, data: bytes) -> Output:
        if self.state is State.AWAITING_START:
            raise NotStarted("binary audio before `start`")
        if self.state is not State.STREAMING:
            return Output()
        audio = self._decoder.decode(data)
        self.client_samples += len(audio)
        return self._schedule(self._cutter.push(self._resampler.process(audio)))

    def on_window_done(self, seq: int, notes: Sequence[WindowNote] | None) -> Output:
        """Notes of a finished window, or None when the engine skipped it (lagging) or the model failed on it."""
        if seq not in self._pending:
            return Output()
        self._results[seq] = notes
        out = Output()
        while self._next_apply in self._results:
            window = self._pending.pop(self._next_apply)
            result = self._results.pop(self._next_apply)
            self._next_apply += 1
            out.extend(self._apply(window, result))
        if self.state is State.STOPPING and not self._pending:
            out.extend(self._finish())
        return out

    def request_stop(self) -> Output:
        """Stop on the server's initiative (shutdown, session limit): same as a client `stop`."""
        return self._stop() if self.state is State.STREAMING else Output()

    def abort(self) -> list[p.NoteEvent]:
        """The connection is gone: end every sounding note now (for MIDI sinks); nothing more is committed."""
        if self.state in (State.AWAITING_START, State.DONE):
            return []
        self.state = State.DONE
        self._pending.clear()
        return self._stitcher.close(self.audio_seconds)

    # ---- internals ---------------------------------------------------------------------------------------------

    def _start(self, message: p.Start) -> Output:
        if self.state is not State.AWAITING_START:
            raise AlreadyStarted("`start` was already received for this session")
        if not p.MIN_SAMPLE_RATE <= message.sample_rate <= p.MAX_SAMPLE_RATE:
            raise UnsupportedFormat(
                f"sample rate {message.sample_rate} Hz is outside {p.MIN_SAMPLE_RATE}–{p.MAX_SAMPLE_RATE} Hz"
            )
        name = message.model or self._options.default_model
        spec = self._models.get(name)
        if spec is None:
            raise UnknownModel(f"model {name!r} is not loaded here; available: {', '.join(sorted(self._models))}")
        hop_s = message.hop or self._options.hop_s or spec.default_hop_s
        margin_s = spec.commit_margin_s if self._options.commit_margin_s is None else self._options.commit_margin_s
        if not spec.min_hop_s <= hop_s <= spec.window_s - margin_s:
            raise InvalidOption(
                f"hop {hop_s} s is outside {spec.min_hop_s}–{spec.window_s - margin_s:.3f} s for model {name}"
            )
        self._decoder = PcmDecoder(message.encoding, message.channels)
        self._resampler = StreamResampler(message.sample_rate, spec.sample_rate)
        self.hop = spec.hop_samples(hop_s)
        self.margin = round(margin_s * spec.sample_rate)
        # A silent lead makes the first window's commit region one hop long, like every other: the first notes
        # are committed as early as later ones instead of waiting for a whole window of audio.
        self._cutter = WindowCutter(
            spec.window_samples, self.hop, lead=max(0, spec.window_samples - self.margin - self.hop)
        )
        self._stitcher = Stitcher(spec.continuation_tolerance_s)
        self.model = spec
        self.start_message = message
        self.state = State.STREAMING
        ready = p.Ready(
            session=self.id,
            model=spec.name,
            sample_rate=spec.sample_rate,
            window=spec.window_s,
            hop=self.hop / spec.sample_rate,
        )
        return Output(messages=[ready])

    def _flush(self) -> Output:
        if self._cutter.total <= self._planned_until:
            return Output()
        return self._schedule([self._cutter.window_ending_now()], until=self._cutter.total)

    def _stop(self) -> Output:
        out = self._schedule(self._cutter.push(self._resampler.finish()))
        out.extend(self._schedule(self._cutter.tail_windows(self.margin), until=self._cutter.total))
        self.state = State.STOPPING
        if not self._pending:
            out.extend(self._finish())
        return out

    def _schedule(self, windows: Sequence[Window], until: int | None = None) -> Output:
        """Hand windows out. A regular window commits up to `margin` before its end; with `until` (end of
        stream, flush) the windows commit no further than it, and the last one exactly up to it."""
        out = Output()
        for i, window in enumerate(windows):
            commit_to = window.start + len(window.audio) - self.margin
            if until is not None:
                commit_to = until if i == len(windows) - 1 else min(commit_to, until)
            if commit_to <= self._planned_until:
                continue
            self._planned_until = commit_to
            request = WindowRequest(audio=window.audio, start=window.start, valid=window.valid)
            pending = PendingWindow(seq=self._seq, request=request, until=commit_to)
            self._pending[self._seq] = pending
            self._seq += 1
            out.windows.append(pending)
        return out

    def _apply(self, window: PendingWindow, notes: Sequence[WindowNote] | None) -> Output:
        if self.state is State.DONE:
            return Output()
        rate = self.model.sample_rate  # type: ignore[union-attr]
        if notes is None:
            self.windows_skipped += 1
            return self._lag_report(window)
        self.windows_done += 1
        events = self._stitcher.commit(window.request.start / rate, notes, window.until / rate)
        return _events_output(events)

    def _lag_report(self, window: PendingWindow) -> Output:
        now = window.request.start / self.model.sample_rate  # type: ignore[union-attr]
        if now - self._last_lag_report < LAG_REPORT_INTERVAL_S:
            return Output()
        self._last_lag_report = now
        behind = max(0.0, self.audio_seconds - now)
        message = p.Lagging(
            skipped_windows=self.windows_skipped,
            behind=round(behind, 3),
            message="the server is behind real time; queued windows were merged into newer ones",
        )
        return Output(messages=[message])

    def _finish(self) -> Output:
        out = _events_output(self._stitcher.close(self.audio_seconds))
        self.state = State.DONE
        out.messages.append(
            p.Done(
                notes=self._stitcher.notes_committed,
                duration=self.audio_seconds,
                windows=self.windows_done,
                skipped_windows=self.windows_skipped,
            )
        )
        out.finished = True
        return out


def _events_output(events: list[p.NoteEvent]) -> Output:
    if not events:
        return Output()
    return Output(messages=[p.Events(events=events)], events=events)


def error_message(error: StreamerError) -> p.Error:
    return p.Error(code=error.code, message=error.message, fatal=error.fatal)
