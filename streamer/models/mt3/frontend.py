"""Log-mel front ends in torch, batched, on the model's device (reference §2).

Three variants, chosen per checkpoint:
- "official": MT3's DDSP log-mel (§2.1), what the `mt3.pth` weights were trained on. No centring,
  pad_end, periodic Hann, magnitude, 512 HTK bands 20–7600 Hz with triangles linear in mel, DC row
  zeroed, safe_log 1e-5.
- "torch-v1": MR-MT3's first torch front end (§2.4): centred frames with reflect padding, magnitude,
  20–8000 Hz with triangles linear in Hz, ln(S + 1e-6); of the 257 frames per window the first 256 are kept.
- "torch-v2": MR-MT3's current one: like "official" but with triangles linear in Hz
  (mel = 2595·log10(1 + f/700)).
`mel_norm` (MR-MT3-trained checkpoints) clips to [-12, 5] and rescales to [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from streamer.models.mt3.spec import FFT_SIZE, HOP_SAMPLES, MEL_BANDS, MEL_HI_HZ, MEL_LO_HZ, SAMPLE_RATE

FRONTENDS = ("official", "torch-v1", "torch-v2")

SAFE_LOG_FLOOR = 1e-5  # DDSP safe_log: values <= 0 are replaced by this before the log
V1_LOG_EPS = 1e-6  # MR-MT3 torch v1 adds this inside the log
MEL_NORM_RANGE = (-12.0, 5.0)  # MR-MT3 mel_norm clip range, then rescaled to [0, 1]
NYQUIST_HZ = SAMPLE_RATE / 2


def _hz_to_mel_ln(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def _hz_to_mel_log10(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_log10_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_linear_filterbank(lo_hz: float = MEL_LO_HZ, hi_hz: float = MEL_HI_HZ) -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix: (FFT bins, bands), triangles linear in mel, DC row zero.

    Computed in float64, then rounded. TF computes in float32 with its own log, so its weights carry up to
    7e-5 of rounding that cannot be reproduced exactly outside TF (tests/models/mt3/test_mt3_frontend.py).
    """
    bins = FFT_SIZE // 2 + 1
    bin_mel = _hz_to_mel_ln(np.linspace(0.0, NYQUIST_HZ, bins)[1:])[:, None]
    edges = np.linspace(_hz_to_mel_ln(np.array(lo_hz)), _hz_to_mel_ln(np.array(hi_hz)), MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.concatenate([np.zeros((1, MEL_BANDS)), weights]).astype(np.float32)


def hz_linear_filterbank(lo_hz: float, hi_hz: float) -> np.ndarray:
    """torchaudio's HTK filterbank (norm None): mel-spaced edges, triangles linear in Hz; (bins, bands)."""
    bin_hz = np.linspace(0.0, NYQUIST_HZ, FFT_SIZE // 2 + 1)[:, None]
    edges = _mel_log10_to_hz(np.linspace(_hz_to_mel_log10(lo_hz), _hz_to_mel_log10(hi_hz), MEL_BANDS + 2))
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_hz - lower) / (center - lower)
    falling = (upper - bin_hz) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def frame_count(samples: int) -> int:
    """Frames of a pad_end STFT (TF semantics): one per started hop."""
    return math.ceil(samples / HOP_SAMPLES)


class LogMelFrontend(nn.Module):
    """(batch, samples) float32 audio at 16 kHz → (batch, ceil(samples / 128), 512) log-mel."""

    def __init__(self, variant: str = "official", mel_norm: bool = False) -> None:
        super().__init__()
        if variant not in FRONTENDS:
            raise ValueError(f"unknown front end {variant!r}; expected one of {', '.join(FRONTENDS)}")
        self.variant = variant
        self.mel_norm = mel_norm
        if variant == "official":
            bank = mel_linear_filterbank()
        elif variant == "torch-v1":
            bank = hz_linear_filterbank(MEL_LO_HZ, NYQUIST_HZ)
        else:
            bank = hz_linear_filterbank(MEL_LO_HZ, MEL_HI_HZ)
        self.register_buffer("filterbank", torch.from_numpy(bank), persistent=False)
        self.register_buffer("window", torch.hann_window(FFT_SIZE, periodic=True), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        audio = audio.to(torch.float32)
        frames = frame_count(audio.shape[-1])
        if self.variant == "torch-v1":
            # Centred frames: frame j is centred on sample 128j; reflect padding as torchaudio does. The extra
            # final frame (257 for a full window) is dropped, as MR-MT3's dataset did.
            spectrum = torch.stft(
                audio,
                FFT_SIZE,
                HOP_SAMPLES,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )[..., :frames]
        else:
            pad = FFT_SIZE + HOP_SAMPLES * (frames - 1) - audio.shape[-1]
            padded = nn.functional.pad(audio, (0, pad))
            spectrum = torch.stft(padded, FFT_SIZE, HOP_SAMPLES, window=self.window, center=False, return_complex=True)
        magnitude = spectrum.abs().transpose(-1, -2)  # (batch, frames, bins)
        mel = magnitude @ self.filterbank
        if self.variant == "torch-v1":
            log_mel = torch.log(mel.clamp_min(0.0) + V1_LOG_EPS)
        else:
            log_mel = torch.log(torch.where(mel <= 0.0, torch.full_like(mel, SAFE_LOG_FLOOR), mel))
        if self.mel_norm:
            lo, hi = MEL_NORM_RANGE
            log_mel = (log_mel.clamp(lo, hi) - lo) / (hi - lo)
        return log_mel


def zero_padding_frames(features: Tensor, valid_samples: Sequence[int]) -> Tensor:
    """Set the frames past each window's audio to 0.0, as MT3's feature converter pads a short last segment.

    The official path pads a segment's audio to whole hops with at least one extra hop (§3 step 2), so a
    window with `valid` real samples keeps valid // 128 + 1 frames. The rows are 0.0 in log space (not
    log-silence) and stay unmasked in the encoder (§3.4–5); this happens after mel_norm, as in MR-MT3.
    """
    frames = features.shape[1]
    keep = torch.tensor(
        [min(frames, v // HOP_SAMPLES + 1) if v < frames * HOP_SAMPLES else frames for v in valid_samples],
        device=features.device,
    )
    mask = torch.arange(frames, device=features.device)[None, :] < keep[:, None]
    return features * mask[..., None].to(features.dtype)
