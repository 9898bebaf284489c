"""MT3 front ends against TensorFlow's own STFT and mel matrix (tools/mt3_frontend_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.models.mt3.frontend import LogMelFrontend, mel_linear_filterbank, zero_padding_frames
from streamer.models.mt3.spec import FRAMES_PER_WINDOW, MEL_BANDS, WINDOW_SAMPLES

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "mt3" / "frontend_tf.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tf_ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def tf_matrix(ref: dict[str, np.ndarray]) -> np.ndarray:
    matrix = np.zeros((1025, MEL_BANDS), dtype=np.float32)
    matrix[ref["mel_rows"], ref["mel_cols"]] = ref["mel_values"]
    return matrix


def log_mel(audio: np.ndarray, frontend: LogMelFrontend | None = None) -> np.ndarray:
    frontend = frontend or LogMelFrontend()
    return frontend(torch.from_numpy(audio)[None])[0].numpy()


def test_filterbank_matches_tf(tf_ref: dict[str, np.ndarray]) -> None:
    ours = mel_linear_filterbank()
    assert np.abs(ours - tf_matrix(tf_ref)).max() < TOLERANCE
    assert not ours[0].any()  # DC row
    assert not ours[:, 1].any() and not ours[:, 10].any()  # the two empty low bands (§2.1 step 4)


def test_stft_magnitude_and_log_match_tf_given_tf_matrix(tf_ref: dict[str, np.ndarray]) -> None:
    """Our STFT, magnitude, framing, padding and safe_log, with TF's float32 mel matrix: within 1e-4."""
    frontend = LogMelFrontend()
    frontend.filterbank = torch.from_numpy(tf_matrix(tf_ref))
    full = log_mel(tf_ref["full_audio"], frontend)
    assert full.shape == (int(tf_ref["full_frames"]), MEL_BANDS)
    assert np.abs(full[tf_ref["full_rows"]] - tf_ref["full_logmel"]).max() < TOLERANCE
    short = log_mel(tf_ref["short_audio"], frontend)
    assert short.shape == tf_ref["short_logmel"].shape == (40, MEL_BANDS)  # ceil(5000 / 128): pad_end
    assert np.abs(short - tf_ref["short_logmel"]).max() < TOLERANCE


def test_end_to_end_matches_tf(tf_ref: dict[str, np.ndarray]) -> None:
    """With our float64-derived matrix the only difference left is TF's float32 rounding of the weights."""
    full = log_mel(tf_ref["full_audio"])[tf_ref["full_rows"]]
    error = np.abs(full - tf_ref["full_logmel"])
    assert error.mean() < 5e-5
    assert error.max() < 6e-4
    short = log_mel(tf_ref["short_audio"])
    assert np.abs(short - tf_ref["short_logmel"]).max() < 6e-4


def test_batched_rows_equal_single_rows(tf_ref: dict[str, np.ndarray]) -> None:
    full = tf_ref["full_audio"]
    short = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    short[:5000] = tf_ref["short_audio"]
    batch = LogMelFrontend()(torch.from_numpy(np.stack([full, short]))).numpy()
    assert batch.shape == (2, FRAMES_PER_WINDOW, MEL_BANDS)
    np.testing.assert_allclose(batch[0], log_mel(full), atol=1e-5)
    # A zero-padded window equals the short signal's own pad_end STFT on the frames both have.
    np.testing.assert_allclose(batch[1, :40], log_mel(tf_ref["short_audio"]), atol=1e-5)


def test_zero_padding_frames_keeps_valid_hops_plus_one() -> None:
    features = torch.ones(3, FRAMES_PER_WINDOW, 4)
    out = zero_padding_frames(features, [WINDOW_SAMPLES, 5000, 1024])
    assert out[0].all()
    # 5000 samples: the official path pads to 5120 = 40 hops (39 + the started one) -> 40 frames kept.
    assert out[1, :40].all() and not out[1, 40:].any()
    # 1024 samples (whole hops): the official path still appends one full hop -> 9 frames.
    assert out[2, :9].all() and not out[2, 9:].any()


def test_torch_v2_is_close_to_official(tf_ref: dict[str, np.ndarray]) -> None:
    official = log_mel(tf_ref["full_audio"])
    v2 = log_mel(tf_ref["full_audio"], LogMelFrontend("torch-v2"))
    difference = np.abs(official - v2)
    assert difference.mean() < 1e-3  # reference §2.4: 3.5e-4 nats
    assert difference.max() < 1e-2


def test_torch_v1_with_mel_norm_is_centred_and_normalised(tf_ref: dict[str, np.ndarray]) -> None:
    audio = tf_ref["full_audio"]
    v1 = log_mel(audio, LogMelFrontend("torch-v1", mel_norm=True))
    assert v1.shape == (FRAMES_PER_WINDOW, MEL_BANDS)
    assert v1.min() >= 0.0 and v1.max() <= 1.0
    # Centred frames: an impulse at sample 128·j is at the middle of frame j, so frame j is the loudest there.
    impulse = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    impulse[128 * 100] = 1.0
    raw = log_mel(impulse, LogMelFrontend("torch-v1"))
    assert int(raw.sum(axis=1).argmax()) in range(92, 109)
    assert raw[0].max() == pytest.approx(np.log(1e-6), abs=1e-3)
