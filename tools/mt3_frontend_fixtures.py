"""Write MT3 front-end reference values computed by TensorFlow itself (reference §2.1), once.

Run with a Python that has tensorflow (not the project's venv):
    /work/refvenv/bin/python tools/mt3_frontend_fixtures.py
Writes tests/fixtures/mt3/frontend_tf.npz: the input signals and the log-mel rows TF gives for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16_000
FFT_SIZE = 2048
HOP = 128
MEL_BANDS = 512
LO_HZ, HI_HZ = 20.0, 7600.0
SAFE_LOG_FLOOR = 1e-5
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mt3" / "frontend_tf.npz"
# Full-window rows kept: the start, and the tail whose STFT frames read pad_end zeros (241..255).
FULL_ROWS = np.r_[0:8, 120:124, 236:256]


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    t = np.arange(32768) / SAMPLE_RATE
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 659.25, 2093.0))
    full = (chord + 0.05 * rng.standard_normal(t.size)) * np.minimum(1.0, t / 0.5)
    short = 0.3 * np.sin(2 * np.pi * 261.63 * t[:5000]) + 0.01 * rng.standard_normal(5000)
    return {"full": full.astype(np.float32), "short": short.astype(np.float32)}


def tf_mel_matrix() -> tf.Tensor:
    return tf.signal.linear_to_mel_weight_matrix(MEL_BANDS, FFT_SIZE // 2 + 1, SAMPLE_RATE, LO_HZ, HI_HZ)


def tf_log_mel(x: np.ndarray) -> np.ndarray:
    stft = tf.signal.stft(
        tf.constant(x[None]), frame_length=FFT_SIZE, frame_step=HOP, fft_length=FFT_SIZE, pad_end=True
    )
    mel_matrix = tf_mel_matrix()
    mel = tf.tensordot(tf.abs(stft), mel_matrix, 1)
    safe = tf.where(mel <= 0.0, SAFE_LOG_FLOOR * tf.ones_like(mel), mel)
    return tf.math.log(safe).numpy()[0]


def main() -> None:
    sigs = signals()
    full = tf_log_mel(sigs["full"])
    short = tf_log_mel(sigs["short"])
    # The mel matrix is mostly zeros: keep its nonzero entries only.
    matrix = tf_mel_matrix().numpy()
    rows, cols = np.nonzero(matrix)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        full_audio=sigs["full"],
        full_rows=FULL_ROWS,
        full_logmel=full[FULL_ROWS],
        full_frames=np.array(full.shape[0]),
        short_audio=sigs["short"],
        short_logmel=short,
        mel_rows=rows.astype(np.int16),
        mel_cols=cols.astype(np.int16),
        mel_values=matrix[rows, cols],
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): full {full.shape}, short {short.shape}")


if __name__ == "__main__":
    main()
