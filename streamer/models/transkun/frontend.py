"""Transkun's front end in torch, batched, on the model's device (no torchaudio).

Per window: frames of 4096 samples every 1024, the first centred on the window's first sample (half a frame of
zeros before it); the whole window's frames normalised to zero mean and unit variance (a gain-invariant input);
six power spectra per frame, one through a Hann window and five through learned Gaussian windows; 229 HTK mel
bands from 30 Hz to 8 kHz; log(mel + 1e-5) rescaled so that silence is 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from streamer.models.transkun.spec import (
    FFT_SIZE,
    FRAME_HOP,
    GAUSSIAN_WINDOWS,
    LOG_FLOOR,
    MEL_BANDS,
    MEL_HI_HZ,
    MEL_LO_HZ,
    SAMPLE_RATE,
)

FFT_BINS = FFT_SIZE // 2 + 1
GAIN_EPS = 1e-8  # added to the standard deviation: a silent window stays all zeros instead of dividing by 0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    bins: int = FFT_BINS,
    bands: int = MEL_BANDS,
    lo_hz: float = MEL_LO_HZ,
    hi_hz: float = MEL_HI_HZ,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """(bins, bands) triangles, linear in Hz between mel-spaced edges, peak 1, no area normalisation.

    The filterbank torchaudio's `melscale_fbanks(..., norm=None, mel_scale="htk")` describes, computed in float64
    and rounded once; the checkpoint stores the float32 one it was trained with, and loading checks they agree.
    """
    bin_hz = np.linspace(0.0, sample_rate / 2, bins)[:, None]
    edges = mel_to_hz(np.linspace(hz_to_mel(lo_hz), hz_to_mel(hi_hz), bands + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def frame_count(samples: int) -> int:
    """Frames of a window: one per started hop, plus the one centred on the window's end."""
    return math.ceil(samples / FRAME_HOP) + 1


def frames(audio: Tensor) -> Tensor:
    """(batch, samples) → (batch, frames, FFT_SIZE); frame k is centred on sample k·FRAME_HOP, zeros outside."""
    count = frame_count(audio.shape[-1])
    left = FFT_SIZE // 2
    right = (count - 1) * FRAME_HOP + FFT_SIZE // 2 - audio.shape[-1]
    return nn.functional.pad(audio, (left, right)).unfold(-1, FFT_SIZE, FRAME_HOP)


class TranskunFrontend(nn.Module):
    """(batch, samples) float32 audio at 44.1 kHz → (batch, frames, 229 bands, 6 spectra) log-mel features."""

    def __init__(self) -> None:
        super().__init__()
        # The learned Gaussian windows' widths and centres (as logits of fractions of the frame): checkpoint weights.
        self.register_buffer("gauss_sigma", torch.zeros(GAUSSIAN_WINDOWS))
        self.register_buffer("gauss_centre", torch.zeros(GAUSSIAN_WINDOWS))
        # Derived from the spec, not loaded (the checkpoint's copies are only compared with them).
        self.register_buffer("hann", torch.hann_window(FFT_SIZE, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank()), persistent=False)

    def analysis_windows(self) -> Tensor:
        """(6, FFT_SIZE): the Hann window, then each Gaussian exp(-½((n - c·N) / (σ·N/2))²), n = 0..N-1."""
        n = torch.arange(FFT_SIZE, device=self.hann.device, dtype=self.hann.dtype)[:, None]
        centre = torch.sigmoid(self.gauss_centre) * FFT_SIZE
        width = torch.sigmoid(self.gauss_sigma) * FFT_SIZE / 2
        gaussians = torch.exp(-0.5 * ((n - centre) / width) ** 2)
        return torch.cat([self.hann[None, :], gaussians.T], dim=0)

    def forward(self, audio: Tensor) -> Tensor:
        framed = frames(audio)
        # Statistics over the frames as cut (padding and overlaps included), as the network was trained.
        mean = framed.mean(dim=(1, 2), keepdim=True)
        std = framed.std(dim=(1, 2), keepdim=True)
        framed = (framed - mean) / (std + GAIN_EPS)
        spectra = torch.fft.rfft(framed[:, :, None, :] * self.analysis_windows(), norm="ortho")
        power = spectra.real.square() + spectra.imag.square()
        mel = power @ self.mel  # (batch, frames, 6, bands)
        log_mel = (torch.log(mel + LOG_FLOOR) - math.log(LOG_FLOOR)) / -math.log(LOG_FLOOR)
        return log_mel.transpose(-1, -2)
