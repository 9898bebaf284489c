"""Whole-file basic-pitch posteriors from the shipped ONNX model, for benchmarks of note creation.

The ONNX graph accepts only 2 s windows (43,844 samples, 172 frames of 256 samples). Like basic-pitch's own
`run_inference`, we run overlapping windows and keep each window's central frames, dropping EDGE_FRAMES at both
ends where the network lacks context. Unlike it, windows start on whole frames (hop = KEPT_FRAMES × 256 samples),
so kept frame j of window k is file frame k·KEPT_FRAMES + j − EDGE_FRAMES with no drift to correct: file frame i is
at i·256/22050 s. The audio is padded with EDGE_FRAMES of silence in front so the first window's first kept frame is
file frame 0. Results are cached per audio file (keyed by its path, size and modification time).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from streamer.audio.resample import resample
from streamer.models.basic_pitch.model import FFT_HOP, SAMPLE_RATE, WINDOW_SAMPLES, BasicPitch

WINDOW_FRAMES = 172
EDGE_FRAMES = 15  # basic-pitch's run_inference drops half of its 30 overlapping frames at each window edge
KEPT_FRAMES = WINDOW_FRAMES - 2 * EDGE_FRAMES
BATCH = 8


def whole_file_posteriors(model: BasicPitch, audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame and onset posteriors (n_frames, 88) of mono audio at `rate`; n_frames = ceil(samples / 256)."""
    audio = resample(np.asarray(audio, dtype=np.float32), rate, SAMPLE_RATE)
    n_frames = -(-len(audio) // FFT_HOP)
    n_windows = -(-n_frames // KEPT_FRAMES)
    padded = np.zeros(n_windows * KEPT_FRAMES * FFT_HOP + WINDOW_SAMPLES, dtype=np.float32)
    front = EDGE_FRAMES * FFT_HOP
    padded[front : front + len(audio)] = audio
    starts = [k * KEPT_FRAMES * FFT_HOP for k in range(n_windows)]
    frames, onsets = [], []
    for b in range(0, n_windows, BATCH):
        batch = np.stack([padded[s : s + WINDOW_SAMPLES] for s in starts[b : b + BATCH]])
        f, o = model.posteriors(batch)
        frames.append(f[:, EDGE_FRAMES : EDGE_FRAMES + KEPT_FRAMES].reshape(-1, f.shape[-1]))
        onsets.append(o[:, EDGE_FRAMES : EDGE_FRAMES + KEPT_FRAMES].reshape(-1, o.shape[-1]))
    return np.concatenate(frames)[:n_frames], np.concatenate(onsets)[:n_frames]


def cached_posteriors(
    model: BasicPitch, audio_path: Path, audio: np.ndarray, rate: int, cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    stat = audio_path.stat()
    key = hashlib.sha256(f"{audio_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache / f"{audio_path.stem}.{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return data["frames"], data["onsets"]
    frames, onsets = whole_file_posteriors(model, audio, rate)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, frames=frames, onsets=onsets)
    return frames, onsets
