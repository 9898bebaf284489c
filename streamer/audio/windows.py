"""Cut overlapping windows out of a stream of model-rate samples, with bounded memory and no window copies on the loop.

Regular window k covers samples [k·hop − lead, k·hop − lead + window): the stream is taken to be preceded by
`lead` samples of silence, so the first windows can be cut before a whole window of audio has arrived (a session
sets lead so that every window's commit region, including the first, is one hop long). A window is cut as soon as
its last sample has arrived.

Audio is kept as a list of immutable pieces (the resampler's output chunks). A window refers to the pieces it
covers and is only assembled into one array when its `audio` is first read, which the engine does on its own
thread: cutting a window on the event loop costs no copy, and overlapping windows share their samples. The cutter
keeps only what a future window can still need (from the next regular window's start, and the last `window`
samples for a flush window), so it holds at most `window + hop` samples; windows handed out but not yet run keep
their own pieces alive until they are.
"""

from __future__ import annotations

from collections import deque
from functools import cached_property

import numpy as np

Piece = tuple[int, np.ndarray]  # (internal index of the first sample, samples); never modified once stored


class Window:
    """Audio of one window on the stream clock; samples from `valid` on are zero padding (past the end)."""

    __slots__ = ("__dict__", "length", "pieces", "start", "valid")

    def __init__(self, start: int, length: int, valid: int, pieces: tuple[Piece, ...], origin: int = 0) -> None:
        self.start = start  # stream index of the first sample (negative inside the silent lead)
        self.length = length
        self.valid = valid
        # Pieces are indexed internally (lead included); `origin` is the internal index of stream sample 0.
        self.pieces = tuple((at - origin, samples) for at, samples in pieces)

    @cached_property
    def audio(self) -> np.ndarray:
        out = np.zeros(self.length, dtype=np.float32)
        end = self.start + self.valid
        for at, samples in self.pieces:
            lo, hi = max(at, self.start), min(at + len(samples), end)
            if lo < hi:
                out[lo - self.start : hi - self.start] = samples[lo - at : hi - at]
        return out


class WindowCutter:
    def __init__(self, window: int, hop: int, lead: int = 0) -> None:
        if not 0 < hop <= window:
            raise ValueError(f"hop {hop} must be in (0, window={window}]")
        if not 0 <= lead < window:
            raise ValueError(f"lead {lead} must be in [0, window={window})")
        self.window = window
        self.hop = hop
        self.lead = lead
        self._pieces: deque[Piece] = deque()  # internal indices: 0 is the first sample of the silent lead
        self._held = 0
        self._next = 0  # internal start of the next regular window
        self._total = lead  # internal index one past the newest sample (the lead's zeros count as received)

    @property
    def total(self) -> int:
        """Samples received."""
        return self._total - self.lead

    @property
    def held(self) -> int:
        """Samples the cutter keeps for future windows (the lead's silence is implicit)."""
        return self._held

    def push(self, samples: np.ndarray) -> list[Window]:
        if len(samples):
            piece = np.array(samples, dtype=np.float32)  # our own copy: nobody else may change it later
            piece.flags.writeable = False
            self._pieces.append((self._total, piece))
            self._held += len(piece)
            self._total += len(piece)
        windows = []
        while self._next + self.window <= self._total:
            windows.append(self._cut(self._next, self.window))
            self._next += self.hop
        self._compact()
        return windows

    def window_ending_now(self) -> Window:
        """A window whose last real sample is the newest one (zero-padded when the stream is shorter)."""
        start = max(self.lead, self._total - self.window)
        return self._cut(start, self._total - start)

    def tail_windows(self, margin: int) -> list[Window]:
        """End of stream: the remaining regular-grid windows, zero-padded, until a window's commit region
        (which ends `margin` samples before the window's end) reaches past the last sample."""
        windows: list[Window] = []
        reach = self._next - self.hop + self.window - margin if self._next else self.lead
        while reach < self._total and self._next < self._total:
            valid = min(self.window, self._total - self._next)
            windows.append(self._cut(self._next, valid))
            reach = self._next + self.window - margin
            self._next += self.hop
        return windows

    def _cut(self, start: int, valid: int) -> Window:
        end = start + valid
        first = self._pieces[0][0] if self._pieces else self._total
        if end > self._total or max(start, self.lead) < min(first, end):
            raise AssertionError(f"window [{start}, {end}) is no longer buffered")
        covering = tuple((at, s) for at, s in self._pieces if at < end and at + len(s) > start)
        return Window(start - self.lead, self.window, valid, covering, origin=self.lead)

    def _compact(self) -> None:
        keep_from = min(self._next, max(0, self._total - self.window))
        while self._pieces:
            at, samples = self._pieces[0]
            if at + len(samples) <= keep_from:
                self._pieces.popleft()
                self._held -= len(samples)
            elif at < keep_from:
                # Keep only the needed tail, as a copy: a view would keep the whole piece's memory alive.
                tail = np.array(samples[keep_from - at :])
                tail.flags.writeable = False
                self._pieces[0] = (keep_from, tail)
                self._held -= keep_from - at
                break
            else:
                break
