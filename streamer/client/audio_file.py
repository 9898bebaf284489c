"""Read audio files for streaming (WAV, FLAC, OGG: whatever libsndfile reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 in [-1, 1] and the sample rate."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def encode_pcm(data: np.ndarray, encoding: str) -> bytes:
    """Interleave (frames, channels) float32 into the wire encoding."""
    if encoding == "f32le":
        return np.ascontiguousarray(data, dtype="<f4").tobytes()
    clipped = np.clip(data, -1.0, 32767 / 32768)
    return np.round(clipped * 32768).astype("<i2").tobytes()
