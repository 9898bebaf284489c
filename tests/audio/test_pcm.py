from __future__ import annotations

import numpy as np
import pytest

from streamer.audio.pcm import PcmDecoder
from streamer.errors import BadAudio, UnsupportedFormat


def test_s16_stereo_is_scaled_and_downmixed() -> None:
    frames = np.array([[16384, -16384], [32767, 32767], [-32768, 0]], dtype="<i2")
    audio = PcmDecoder("s16le", 2).decode(frames.tobytes())
    np.testing.assert_allclose(audio, [0.0, 32767 / 32768, -0.5])
    assert audio.dtype == np.float32


def test_f32_mono_passes_through() -> None:
    x = np.linspace(-1, 1, 11, dtype="<f4")
    np.testing.assert_array_equal(PcmDecoder("f32le", 1).decode(x.tobytes()), x)


@pytest.mark.parametrize(
    "encoding,channels,size", [("s16le", 1, 3), ("s16le", 2, 6), ("f32le", 2, 12), ("f32le", 1, 2)]
)
def test_partial_samples_are_refused(encoding: str, channels: int, size: int) -> None:
    with pytest.raises(BadAudio, match="whole number"):
        PcmDecoder(encoding, channels).decode(b"\0" * size)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    with pytest.raises(BadAudio, match="NaN or Inf"):
        PcmDecoder("f32le", 1).decode(np.array([0.0, bad], dtype="<f4").tobytes())


@pytest.mark.parametrize("encoding,channels", [("u8", 1), ("s24le", 1), ("s16le", 3), ("f32le", 0)])
def test_unsupported_formats(encoding: str, channels: int) -> None:
    with pytest.raises(UnsupportedFormat):
        PcmDecoder(encoding, channels)
