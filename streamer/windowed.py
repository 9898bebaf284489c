"""The windowed path of a session: audio → overlapping windows → the model's notes per window → stitched events.

Used for models that see the stream through whole windows (basic-pitch's ONNX file, MT3, MR-MT3, Transkun). Each
window commits its notes up to `until` (model-rate samples): `margin` before its end for a regular window, the newest
sample for a flush or the last windows at `stop`. Pure: no threads, no clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamer.audio.windows import Window, WindowCutter
from streamer.models.base import ModelSpec
from streamer.notes import WindowNote
from streamer.protocol import NoteEvent, Progress, ServerMessage
from streamer.stitch import Stitcher


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    window: Window
    until: int  # the window's notes commit the stream up to this sample (model rate)

    @property
    def payload(self) -> Window:
        return self.window

    @property
    def start(self) -> int:
        return self.window.start


class WindowedTrack:
    def __init__(self, spec: ModelSpec, hop: int, margin: int, progress: bool = False) -> None:
        self.spec = spec
        self.progress = progress
        self.hop = hop
        self.margin = margin
        # A silent lead makes the first window's commit region one hop long, like every other: the first notes
        # are committed as early as later ones instead of waiting for a whole window of audio.
        self._cutter = WindowCutter(spec.window_samples, hop, lead=max(0, spec.window_samples - margin - hop))
        self._stitcher = Stitcher(spec.continuation_tolerance_s)
        self._planned_until = 0  # furthest commit point of any window handed out

    @property
    def notes_committed(self) -> int:
        return self._stitcher.notes_committed

    def push(self, samples: np.ndarray) -> list[PlannedWindow]:
        return self._plan(self._cutter.push(samples))

    def flush(self) -> list[PlannedWindow]:
        """A window ending at the newest sample, committing up to it (nothing if that is already planned)."""
        if self._cutter.total <= self._planned_until:
            return []
        return self._plan([self._cutter.window_ending_now()], until=self._cutter.total)

    def finish(self, tail: np.ndarray) -> list[PlannedWindow]:
        """End of stream: the resampler's `tail`, then windows until the commit regions reach the last sample."""
        planned = self._plan(self._cutter.push(tail))
        return planned + self._plan(self._cutter.tail_windows(self.margin), until=self._cutter.total)

    def apply(self, planned: PlannedWindow, notes: Sequence[WindowNote]) -> tuple[list[NoteEvent], list[ServerMessage]]:
        rate = self.spec.sample_rate
        events = self._stitcher.commit(planned.window.start / rate, notes, planned.until / rate)
        return events, [Progress(time=planned.until / rate)] if self.progress else []

    def close(self, end_s: float) -> list[NoteEvent]:
        return self._stitcher.close(end_s)

    def _plan(self, windows: Sequence[Window], until: int | None = None) -> list[PlannedWindow]:
        """A regular window commits up to `margin` before its end; with `until` (end of stream, flush) the windows
        commit no further than it, and the last one exactly up to it. Windows that would commit nothing new are
        dropped."""
        planned = []
        for i, window in enumerate(windows):
            commit_to = window.start + window.length - self.margin
            if until is not None:
                commit_to = until if i == len(windows) - 1 else min(commit_to, until)
            if commit_to <= self._planned_until:
                continue
            self._planned_until = commit_to
            planned.append(PlannedWindow(window, commit_to))
        return planned
