"""Streaming resampling keeps the clock: chunked output equals whole-signal output, sample k at k / rate."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio.resample import StreamResampler, resample


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 96000, 192000])
def test_chunked_equals_whole_and_stays_aligned(rate: int) -> None:
    rng = np.random.default_rng(rate)
    t = np.arange(rate * 2) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stream = StreamResampler(rate, 16000)
    pieces, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 5000))
        pieces.append(stream.process(x[pos : pos + n]))
        pos += n
    pieces.append(stream.finish())
    y = np.concatenate(pieces)
    whole = resample(x, rate, 16000)
    assert len(y) == len(whole) == round(len(x) * 16000 / rate)
    np.testing.assert_allclose(y, whole, atol=1e-6)
    # No delay: the 440 Hz sine lands on the model-rate clock with its phase intact (away from the edges).
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / 16000)
    assert np.abs(y[800:-800] - ref[800:-800]).max() < 1e-3


def test_same_rate_is_identity() -> None:
    x = np.arange(10, dtype=np.float32)
    stream = StreamResampler(22050, 22050)
    assert stream.process(x) is x
    assert len(stream.finish()) == 0
