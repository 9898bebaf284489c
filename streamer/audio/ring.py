"""Cut overlapping windows out of a stream of model-rate samples, with bounded memory.

Regular window k covers samples [k·hop − lead, k·hop − lead + window): the stream is taken to be preceded by
`lead` samples of silence, so the first windows can be cut before a whole window of audio has arrived (a session
sets lead so that every window's commit region, including the first, is one hop long). A window is cut as soon as
its last sample has arrived. The buffer keeps only what a future window can still need: samples from the next regular
window's start, and the last `window` samples (a flush window ends at the newest sample). So memory is at most
`window + hop` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Window:
    """Audio of one window; samples from `valid` on are zero padding (past the end of the stream)."""

    start: int
    audio: np.ndarray
    valid: int


class WindowCutter:
    def __init__(self, window: int, hop: int, lead: int = 0) -> None:
        if not 0 < hop <= window:
            raise ValueError(f"hop {hop} must be in (0, window={window}]")
        if not 0 <= lead < window:
            raise ValueError(f"lead {lead} must be in [0, window={window})")
        self.window = window
        self.hop = hop
        self.lead = lead
        # Internally, index 0 is the first sample of the silent lead; windows report stream indices (minus lead).
        self._buf = np.zeros(2 * window + hop, dtype=np.float32)
        self._buf_start = 0  # internal index of _buf[0]
        self._fill = lead  # samples held in _buf (the lead's zeros are already there)
        self._next = 0  # internal start of the next regular window
        self._total = lead  # internal index one past the newest sample

    @property
    def total(self) -> int:
        """Samples received."""
        return self._total - self.lead

    @property
    def next_start(self) -> int:
        """Stream index of the next regular window's first sample."""
        return self._next - self.lead

    @property
    def held(self) -> int:
        return self._fill

    def push(self, samples: np.ndarray) -> list[Window]:
        windows: list[Window] = []
        pos = 0
        while pos < len(samples):
            self._compact()
            room = len(self._buf) - self._fill
            take = min(room, len(samples) - pos)
            self._buf[self._fill : self._fill + take] = samples[pos : pos + take]
            self._fill += take
            self._total += take
            pos += take
            while self._next + self.window <= self._total:
                windows.append(self._cut(self._next, self.window))
                self._next += self.hop
        self._compact()
        return windows

    def window_ending_now(self) -> Window:
        """A window whose last real sample is the newest one (zero-padded when the stream is shorter)."""
        start = max(0, self._total - self.window)
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
        lo = start - self._buf_start
        if lo < 0 or lo + valid > self._fill:
            raise AssertionError(f"window [{start}, {start + valid}) is no longer buffered")
        audio = np.zeros(self.window, dtype=np.float32)
        audio[:valid] = self._buf[lo : lo + valid]
        return Window(start=start - self.lead, audio=audio, valid=valid)

    def _compact(self) -> None:
        keep_from = min(self._next, max(0, self._total - self.window))
        drop = keep_from - self._buf_start
        if drop <= 0:
            return
        remaining = self._fill - drop
        self._buf[:remaining] = self._buf[drop : self._fill]
        self._buf_start = keep_from
        self._fill = remaining
