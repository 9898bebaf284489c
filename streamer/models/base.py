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

    def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing to release
        """Release resources (sessions, device memory)."""
