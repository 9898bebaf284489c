"""Streaming resampling to the model rate (soxr).

soxr's stream output is delay-compensated: chunked output concatenates to exactly the whole-signal resampling, and
output sample k sits at time k / out_rate. That keeps the session clock exact: model-rate sample n is at
n / model_rate seconds of client audio.
"""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"
_EMPTY = np.zeros(0, dtype=np.float32)


class StreamResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=QUALITY)
        )

    def process(self, audio: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return audio
        return self._stream.resample_chunk(audio, last=False)

    def finish(self) -> np.ndarray:
        """Drain the filter's tail at end of stream."""
        if self._stream is None:
            return _EMPTY
        return self._stream.resample_chunk(_EMPTY, last=True)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal resampling with the same filter as the streaming path."""
    if in_rate == out_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, in_rate, out_rate, quality=QUALITY).astype(np.float32, copy=False)
