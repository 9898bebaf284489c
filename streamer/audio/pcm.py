"""Decode interleaved PCM frames from the wire into mono float32 in [-1, 1]."""

from __future__ import annotations

import numpy as np

from streamer.errors import BadAudio, UnsupportedFormat

ENCODINGS: dict[str, np.dtype] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
S16_SCALE = 1.0 / 32768.0
# Float audio is nominally in [-1, 1]. Overshoots up to this much are clipped (a hot signal); anything beyond is not
# audio (garbage, or an attempt to overflow the model) and is refused.
MAX_FLOAT_AMPLITUDE = 16.0


class PcmDecoder:
    """Turns binary frames of one fixed format into mono float32 samples in [-1, 1]."""

    def __init__(self, encoding: str, channels: int) -> None:
        if encoding not in ENCODINGS:
            raise UnsupportedFormat(f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
        if channels not in (1, 2):
            raise UnsupportedFormat(f"{channels} channels are not supported; send 1 (mono) or 2 (stereo)")
        self.dtype = ENCODINGS[encoding]
        self.channels = channels
        self.frame_bytes = self.dtype.itemsize * channels

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) % self.frame_bytes:
            raise BadAudio(
                f"frame of {len(data)} bytes is not a whole number of {self.channels}-channel "
                f"{self.dtype.itemsize * 8}-bit samples ({self.frame_bytes} bytes each)"
            )
        samples = np.frombuffer(data, dtype=self.dtype)
        if self.dtype.kind != "f":
            audio = samples.astype(np.float32) * np.float32(S16_SCALE)
            return audio.reshape(-1, 2).mean(axis=1, dtype=np.float32) if self.channels == 2 else audio
        # Checked after the downmix and in float64: two huge finite channels must not sum to infinity unseen.
        with np.errstate(invalid="ignore", over="ignore"):  # NaN payloads from the wire are refused just below
            wide = samples.astype(np.float64)
            if self.channels == 2:
                wide = wide.reshape(-1, 2).mean(axis=1)
        if not np.isfinite(wide).all():
            raise BadAudio("float audio contains NaN or Inf")
        if len(wide) and np.abs(wide).max() > MAX_FLOAT_AMPLITUDE:
            raise BadAudio(f"float audio must lie in [-1, 1]; got a sample of {np.abs(wide).max():.3g}")
        return np.clip(wide, -1.0, 1.0).astype(np.float32)
