"""The interface every model implements, and the spec object that owns its constants."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.notes import WindowNote


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


@dataclass(slots=True)
class WindowRequest:
    """One window of model-rate audio from one session.

    `start` is the index of the window's first sample on the session's model-rate clock (so its time in seconds is
    start / sample_rate); samples from `valid` on are zero padding (end of stream). `stream` is the session's
    per-stream model state from `Model.new_stream()` (None for stateless models).
    """

    audio: np.ndarray
    start: int
    valid: int
    stream: Any = None


class Model(ABC):
    """A transcription model. All methods except `spec` run on the engine's worker thread, never on the event loop.

    The engine guarantees: at most one window per stream in a batch, and each stream's windows arrive in order of
    `start` (some may be skipped when a stream lags).
    """

    spec: ModelSpec

    def new_stream(self) -> Any:
        """Per-session state a model carries between windows (MR-MT3's memory); None when stateless."""
        return None

    @abstractmethod
    def transcribe_windows(self, batch: Sequence[WindowRequest]) -> list[list[WindowNote]]:
        """Run the model on a batch of windows and turn each window's outputs into notes (window-relative)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most models hold nothing to release
        """Release resources (sessions, device memory)."""
