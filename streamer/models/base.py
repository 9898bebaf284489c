"""The interface every model implements, and the spec object that owns its constants."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.audio.windows import Window
from streamer.notes import WindowNote

DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything the rest of the server needs to know about a model, in one place.

    Hops are whole multiples of `hop_quantum` samples (a model frame), between `min_hop_s` and the window length
    minus `commit_margin_s`. `commit_margin_s` is how close to a window's end the model's notes are still trusted:
    the stitcher commits each window's notes up to `window - margin` (see docs/stitching.md).
    """

    name: str
    sample_rate: int
    window_samples: int
    hop_quantum: int
    default_hop_s: float
    min_hop_s: float
    commit_margin_s: float
    # A window's note whose onset lies this close after the commit horizon continues a note already sounding there
    # (frame models place a held note's onset a frame or two apart in different windows); 0 for token models,
    # whose tie section says which notes continue.
    continuation_tolerance_s: float = 0.0
    description: str = ""
    # Streaming-native models (see StreamingModel) take blocks of `window_samples` (= hop) instead of overlapping
    # windows, and decide notes themselves; `lookahead_s` is how much audio after an instant they need to settle it.
    streaming: bool = False
    lookahead_s: float = 0.0
    # Offline transcription (`streamer transcribe`) has no latency to keep: a model whose windows are costly may
    # take a longer hop there, measured to keep its accuracy. None: the live default.
    offline_hop_s: float | None = None

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def max_hop_s(self) -> float:
        return self.window_s - self.commit_margin_s

    def hop_samples(self, hop_s: float) -> int:
        """Quantise a hop in seconds to whole model frames."""
        quanta = max(1, round(hop_s * self.sample_rate / self.hop_quantum))
        return quanta * self.hop_quantum


class WindowRequest(Window):
    """One window of model-rate audio from one session, as a model receives it.

    `start` is the index of the window's first sample on the session's model-rate clock (its time in seconds is
    start / sample_rate); samples from `valid` on are zero padding (end of stream). `audio` is assembled on first
    read (on the engine's thread) from the session's audio pieces; tests may give it directly.
    """

    __slots__ = ()

    def __init__(self, audio: np.ndarray, start: int, valid: int) -> None:
        super().__init__(start, len(audio), valid, ((start, np.asarray(audio, dtype=np.float32)),), origin=0)


@dataclass(frozen=True, slots=True)
class Block:
    """A streaming model's job: the next `audio` of one stream, starting at model-rate sample `start`.

    `final`: the last audio of the stream (it may be shorter than a block; the model then finishes the stream).
    `provisional`: also say what is believed beyond the settled part (interim notes). `gap`: samples of the stream
    just before `start` that were skipped (the engine merged them away while the stream lagged).
    """

    audio: np.ndarray
    start: int
    final: bool = False
    provisional: bool = False
    gap: int = 0


@dataclass(frozen=True, slots=True)
class NoteDecision:
    """A note start (with its velocity) or end that a streaming model has settled; `time` in seconds on the
    stream's clock (model-rate sample n is at n / sample_rate)."""

    time: float
    pitch: int
    start: bool
    velocity: int = 0


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one block settled: decisions in time order, the time before which no more note will start
    (`horizon`), and when asked, the notes believed started after it (`interim`, never final)."""

    decisions: list[NoteDecision]
    horizon: float
    interim: list[NoteDecision] | None = None


class Model(ABC):
    """A transcription model. All methods except `spec` run on the engine's worker thread, never on the event loop.

    The engine guarantees: at most one window per stream in a batch, and each stream's windows arrive in order of
    `start` (some may be skipped when a stream lags). Per-stream state (MR-MT3's memory of earlier windows) is
    created by `new_stream`, owned by the engine's stream handle, and passed beside each window; a model may
    update it in place, and nothing else touches it.
    """

    spec: ModelSpec
    # Windows per call when the configuration does not say (`[engine] max_batch = 0`).
    max_batch: int = DEFAULT_MAX_BATCH
    # When a batch fails, the engine runs each window alone so that only the bad one fails: safe for models whose
    # per-stream state changes only when a window succeeds.
    retry_alone: bool = True

    def new_stream(self) -> Any:
        """Per-session state a model carries between windows; None when stateless."""
        return None

    @abstractmethod
    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        """Run the model on a batch of windows (`states[i]` is window i's stream state) and turn each window's
        outputs into notes, window-relative."""

    def run_batch(self, payloads: Sequence[Any], states: Sequence[Any]) -> list[Any]:
        """What the engine calls: one result per payload."""
        return self.transcribe_windows(payloads, states)

    def after_gap(self, payload: Any, skipped: Sequence[Any]) -> Any:
        """The engine merged `skipped` (older queued jobs of the same stream) away before `payload`: windows are
        independent, so nothing changes; a streaming model is told about the gap."""
        return payload

    def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing to release
        """Release resources (sessions, device memory)."""


class StreamingModel(Model):
    """A model that keeps per-stream state and settles notes as audio arrives, block by block (spec.streaming).

    `run_batch` gets `Block`s (at most one per stream per batch, in order) with their streams' states and returns
    one `StepResult` each. One block failing must not fail the others: a streaming model isolates failures itself,
    as its per-stream state changes as it goes (`retry_alone` is False).
    """

    retry_alone = False

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        raise TypeError(f"{self.spec.name} is a streaming model: it takes blocks, not windows")

    @abstractmethod
    def run_batch(self, payloads: Sequence[Any], states: Sequence[Any]) -> list[Any]:
        """One `StepResult` (or a `Failed`) per `Block`."""

    def after_gap(self, block: Block, skipped: Sequence[Block]) -> Block:
        """The engine merged `skipped` (older queued blocks of the stream) away: the newest carries the gap."""
        return Block(block.audio, block.start, block.final, block.provisional,
                     block.gap + sum(len(b.audio) for b in skipped))  # fmt: skip
