"""Transkun's front end: our filterbank against the checkpoint's, framing, gain invariance, and the features
against the transkun wheel's own front end."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from streamer.models.transkun.checkpoints import MEL_KEY, package_checkpoint, read_state_dict
from streamer.models.transkun.frontend import (
    FFT_BINS,
    frame_count,
    frames,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import FFT_SIZE, FRAME_HOP, MEL_BANDS


def test_mel_filterbank_agrees_with_the_one_the_checkpoint_stores(network: TranskunNetwork) -> None:
    stored = read_state_dict(package_checkpoint())[MEL_KEY].numpy()
    ours = mel_filterbank()
    assert ours.shape == stored.shape == (FFT_BINS, MEL_BANDS)
    # torchaudio rounds the band edges to float32; ours are float64: the largest gap is near 8 kHz.
    assert np.abs(ours - stored).max() < 1e-4
    assert np.abs(ours - stored).mean() < 1e-7
    assert np.array_equal(network.frontend.mel.numpy(), stored)  # the model runs what it was trained on


def test_mel_filterbank_is_htk_triangles() -> None:
    hz = np.array([0.0, 30.0, 440.0, 8000.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    assert hz_to_mel(700.0) == pytest.approx(2595.0 * np.log10(2.0))
    bank = mel_filterbank(bins=9, bands=2, lo_hz=0.0, hi_hz=4000.0, sample_rate=16000)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(4000.0), 4))  # band i rises from edge i, peaks at i+1, falls to i+2
    bin_hz = np.linspace(0.0, 8000.0, 9)
    expected = np.maximum(
        0.0,
        np.minimum(
            (bin_hz[:, None] - edges[None, :2]) / (edges[1:3] - edges[:2]),
            (edges[None, 2:] - bin_hz[:, None]) / (edges[2:] - edges[1:3]),
        ),
    )
    assert np.allclose(bank, expected, atol=1e-7)
    assert bank[bin_hz > 4000.0].max() == 0.0


def test_frames_are_centred_on_every_hop() -> None:
    samples = 10 * FRAME_HOP + 5
    assert frame_count(samples) == 12
    impulse = torch.zeros(1, samples)
    impulse[0, 5 * FRAME_HOP] = 1.0
    framed = frames(impulse)
    assert framed.shape == (1, 12, FFT_SIZE)
    assert framed[0, 5, FFT_SIZE // 2] == 1.0  # frame k is centred on sample k * hop
    assert framed[0, 4, FFT_SIZE // 2 + FRAME_HOP] == 1.0
    assert framed.sum() == 4  # 4096 / 1024: every sample lies in four frames


def test_features_are_gain_invariant_and_silence_is_zero(network: TranskunNetwork) -> None:
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((1, 3 * FRAME_HOP * 10)).astype(np.float32))
    with torch.inference_mode():
        loud, quiet = network.frontend(audio), network.frontend(0.01 * audio)
        silent = network.frontend(torch.zeros_like(audio))
    assert loud.shape == (1, frame_count(audio.shape[1]), MEL_BANDS, 6)
    assert torch.allclose(loud, quiet, atol=1e-4)
    assert torch.count_nonzero(silent) == 0


def test_analysis_windows_are_hann_and_the_learned_gaussians(network: TranskunNetwork) -> None:
    windows = network.frontend.analysis_windows()
    assert windows.shape == (6, FFT_SIZE)
    assert torch.equal(windows[0], torch.hann_window(FFT_SIZE))
    centres = torch.sigmoid(network.frontend.gauss_centre) * FFT_SIZE
    peaks = windows[1:].argmax(dim=1).float()
    assert torch.allclose(peaks, centres, atol=1.0)


def test_features_match_the_wheels_front_end(network: TranskunNetwork, reference: Any, phrase: np.ndarray) -> None:
    from transkun.Util import makeFrame

    audio = torch.from_numpy(phrase[: 3 * 44100])
    with torch.inference_mode():
        ours = network.frontend(audio[None])
        framed = makeFrame(audio[None, None], reference.hopSize, reference.windowSize)
        # Its processFramesBatch normalises the gain over the frames before its front end.
        framed = (framed - framed.mean()) / (framed.std() + 1e-8)
        theirs = reference.framewiseFeatureExtractor(framed)[:, 0]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-5
