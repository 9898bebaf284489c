"""Decode interleaved PCM frames from the wire into mono float32."""

from __future__ import annotations

import numpy as np

from streamer.errors import BadAudio, UnsupportedFormat

ENCODINGS: dict[str, np.dtype] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
S16_SCALE = 1.0 / 32768.0


class PcmDecoder:
    """Turns binary frames of one fixed format into mono float32 samples in [-1, 1]."""

    def __init__(self, encoding: str, channels: int) -> None:
        if encoding not in ENCODINGS:
            raise UnsupportedFormat(f"encoding {encoding!r} is not supported; use one of {sorted(ENCODINGS)}")
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
        if self.dtype.kind == "f":
            if not np.isfinite(samples).all():
                raise BadAudio("float audio contains NaN or Inf")
            audio = samples.astype(np.float32)
        else:
            audio = samples.astype(np.float32) * np.float32(S16_SCALE)
        if self.channels == 2:
            audio = audio.reshape(-1, 2).mean(axis=1, dtype=np.float32)
        return audio

    def samples_in(self, data: bytes) -> int:
        """Number of (multi-channel) sample frames in a binary message."""
        return len(data) // self.frame_bytes
