"""The recent frame posteriors of one stream: frames [start, end), older ones dropped as decisions no longer need them.

Appends copy into a preallocated array (doubling when full, compacting when the dropped prefix is large), so a
stream of any length holds only the frames its undecided notes can still read.
"""

from __future__ import annotations

import numpy as np

INITIAL_CAPACITY = 64


class FrameHistory:
    __slots__ = ("_data", "_offset", "end", "start")

    def __init__(self, n_pitches: int) -> None:
        self._data = np.zeros((INITIAL_CAPACITY, n_pitches), dtype=np.float32)
        self._offset = 0  # row of `start` in _data
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, frames: np.ndarray) -> None:
        n = len(self)
        need = n + len(frames)
        if self._offset + need > len(self._data):
            capacity = len(self._data)
            while need > capacity // 2:  # keep room to append without compacting at every call
                capacity *= 2
            data = np.empty((capacity, self._data.shape[1]), dtype=np.float32)
            data[:n] = self._data[self._offset : self._offset + n]
            self._data = data
            self._offset = 0
        self._data[self._offset + n : self._offset + need] = frames
        self.end += len(frames)

    def drop_before(self, frame: int) -> None:
        frame = min(max(frame, self.start), self.end)
        self._offset += frame - self.start
        self.start = frame

    def column(self, pitch: int, lo: int, hi: int) -> np.ndarray:
        """Posteriors of frames [lo, hi) at one pitch bin (a view)."""
        if lo < self.start or hi > self.end:
            raise IndexError(f"frames [{lo}, {hi}) not held (holding [{self.start}, {self.end}))")
        return self._data[self._offset + lo - self.start : self._offset + hi - self.start, pitch]

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Posteriors of frames [lo, hi) (a view)."""
        if lo < self.start or hi > self.end:
            raise IndexError(f"frames [{lo}, {hi}) not held (holding [{self.start}, {self.end}))")
        return self._data[self._offset + lo - self.start : self._offset + hi - self.start]

    def row(self, frame: int) -> np.ndarray:
        if not self.start <= frame < self.end:
            raise IndexError(f"frame {frame} not held (holding [{self.start}, {self.end}))")
        return self._data[self._offset + frame - self.start]
