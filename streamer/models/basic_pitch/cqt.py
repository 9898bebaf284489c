"""basic-pitch's front end: an nnAudio-style constant-Q transform (CQT2010v2) and its log power.

The transform runs one set of 36 complex kernels (the top octave's, 256 taps) on nine versions of the audio: the
audio itself (level 0, 22,050 Hz) and eight successive halvings, each made by a 256-tap half-band low-pass filter
followed by keeping every other sample (level k runs at 22,050 / 2^k Hz). Level k's kernels therefore analyse the
octave k below the top one, and its hop is 256 / 2^k samples, so every level yields one frame per 256 audio samples.
Stacking the levels (lowest first) gives 9 × 36 bins; the lowest 15 are dropped, leaving 309 bins at 3 per
semitone from 27.5 Hz (bin 0 is A0, the reference's fmin).

Frame t of every level is centred on audio sample 256·t: kernel tap j multiplies level-k sample t·h_k + j − 128,
and low-pass tap j multiplies input sample 2m + j − 127 for output sample m. Everything here is float32.

Look-ahead: the taps after the centre read the future. `truncated_kernels` and `lowpass_taps` cut those future
taps (for the streaming network); gain compensation rescales what is kept so that a steady tone keeps its level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 22050
FRAME_SAMPLES = 256  # the hop at level 0: one frame per 256 samples at every level
BINS_PER_OCTAVE = 36
N_LEVELS = 9  # octaves computed; the lowest loses DROPPED_BINS
N_BINS = 309  # 103 semitones × 3 bins
DROPPED_BINS = N_LEVELS * BINS_PER_OCTAVE - N_BINS
KERNEL_TAPS = 256
KERNEL_CENTRE = 128  # kernel tap j reads sample (frame centre + j − KERNEL_CENTRE)
LOWPASS_TAPS = 256
LOWPASS_CENTRE = 127  # low-pass tap j reads input sample (2m + j − LOWPASS_CENTRE)
POWER_FLOOR = 1e-10  # NormalizedLog adds this to the power before taking dB
DECIMATE_CHUNK = 64  # output samples per row of the decimation matmul (see Decimator)


def level_hop(level: int) -> int:
    return FRAME_SAMPLES >> level


def level_bins(level: int) -> slice:
    """Which of the 309 output bins level `level` produces, and (as `kept`) which of its 36 survive."""
    top = N_BINS - BINS_PER_OCTAVE * level
    return slice(max(top - BINS_PER_OCTAVE, 0), top)


def kept_kernels(level: int) -> slice:
    """The level's kernels that reach the output (the lowest level loses its bottom DROPPED_BINS)."""
    return slice(DROPPED_BINS if level == N_LEVELS - 1 else 0, BINS_PER_OCTAVE)


class Decimator:
    """Low-pass filter then keep every other sample: out[m] = Σ_i taps[i]·x[2m + i] ("valid", no padding).

    Sliding-window patches of a long FIR would copy every input sample len(taps)/2 times. Instead each row of the
    matmul computes `chunk` consecutive outputs from one stretch of 2·chunk + len(taps) − 2 inputs against a
    banded (Toeplitz) matrix: about 1.5× the multiply-adds, a tiny copy, and one BLAS call for all rows.
    """

    def __init__(self, taps: np.ndarray, chunk: int) -> None:
        self.taps = taps  # its dtype is the dtype of the arithmetic
        self.chunk = chunk
        self.width = 2 * (chunk - 1) + len(self.taps)
        band = np.zeros((self.width, chunk), dtype=taps.dtype)
        for j in range(chunk):
            band[2 * j : 2 * j + len(self.taps), j] = self.taps
        self.band = band

    def outputs(self, n_inputs: int) -> int:
        return max((n_inputs - len(self.taps)) // 2 + 1, 0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (S, L) → (S, outputs(L))."""
        n_out = self.outputs(x.shape[1])
        rows = -(-n_out // self.chunk)
        need = 2 * self.chunk * (rows - 1) + self.width
        if x.shape[1] < need:
            x = np.concatenate([x, np.zeros((x.shape[0], need - x.shape[1]), x.dtype)], axis=1)
        step = 2 * self.chunk
        windows = np.lib.stride_tricks.sliding_window_view(x, self.width, axis=1)[:, : step * rows : step]
        out = np.ascontiguousarray(windows).reshape(-1, self.width) @ self.band
        return out.reshape(x.shape[0], rows * self.chunk)[:, :n_out]


@dataclass(frozen=True, slots=True)
class LevelKernels:
    """One level's CQT kernels as a matmul: frame t = level samples [t·hop + first, t·hop + first + taps) @ matrix."""

    first: int  # offset of the first tap from the frame centre (negative: the past)
    matrix: np.ndarray  # (taps, 2·kept): real parts of the kept bins, then imaginary parts

    @property
    def last(self) -> int:
        """Offset of the last tap from the frame centre: the look-ahead in level samples."""
        return self.first + self.matrix.shape[0] - 1


def truncated_kernels(kernels: np.ndarray, level: int, future: int | None, compensate: bool) -> LevelKernels:
    """The kernels of `level` (kept bins only) without taps more than `future` level samples after the centre
    (None: all taps); all-zero taps at either end are trimmed. `compensate`: scale each cut kernel by
    Σ|full| / Σ|kept| so its gain for a steady tone stays about the same."""
    kept = kept_kernels(level)
    real = kernels[:, :BINS_PER_OCTAVE][:, kept]
    imag = kernels[:, BINS_PER_OCTAVE:][:, kept]
    modulus = np.hypot(real, imag)
    offsets = np.arange(KERNEL_TAPS) - KERNEL_CENTRE
    keep = offsets <= (KERNEL_TAPS if future is None else future)
    kept_gain = modulus[keep].sum(axis=0)
    if not np.all(kept_gain > 0):
        raise ValueError(f"CQT level {level}: look-ahead {future} cuts whole kernels")
    gain = modulus.sum(axis=0) / kept_gain if compensate else np.ones(real.shape[1], dtype=np.float32)
    matrix = np.concatenate([real * gain, imag * gain], axis=1) * keep[:, None]
    used = np.flatnonzero(np.any(matrix != 0, axis=1))
    lo, hi = int(used[0]), int(used[-1]) + 1
    return LevelKernels(first=lo - KERNEL_CENTRE, matrix=np.ascontiguousarray(matrix[lo:hi], dtype=np.float32))


def lowpass_taps(lowpass: np.ndarray, future: int | None, compensate: bool) -> np.ndarray:
    """The low-pass filter without taps more than `future` input samples after the output's centre sample."""
    offsets = np.arange(LOWPASS_TAPS) - LOWPASS_CENTRE
    keep = offsets <= (LOWPASS_TAPS if future is None else future)
    taps = lowpass[keep]
    if compensate:
        taps = taps * (lowpass.sum() / taps.sum())
    return taps.astype(np.float32)


def frames(x: np.ndarray, kernels: LevelKernels, hop: int, start: int, count: int) -> np.ndarray:
    """CQT values of `count` frames of one level: x (S, L) holds level samples, frame i is centred on x[:, start +
    i·hop]. Returns (S, count, 2·kept) real parts then imaginary parts."""
    taps = kernels.matrix.shape[0]
    lo = start + kernels.first
    windows = np.lib.stride_tricks.sliding_window_view(x[:, lo : lo + (count - 1) * hop + taps], taps, axis=1)[:, ::hop]
    return (np.ascontiguousarray(windows).reshape(-1, taps) @ kernels.matrix).reshape(x.shape[0], count, -1)


def power(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(…, 2·n) real then imaginary CQT values → (…, n) power, with librosa's per-bin gain `scale`."""
    n = values.shape[-1] // 2
    return (np.square(values[..., :n]) + np.square(values[..., n:])) * np.square(scale)


def decibels(p: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(p + p.dtype.type(POWER_FLOOR))).astype(np.float32)


def window_cqt_power(audio: np.ndarray, kernels: np.ndarray, lowpass: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The windowed model's CQT power, exactly as the ONNX graph computes it: audio (B, L) → (B, L // 256 + 1, 309).

    Within a window, each decimation zero-pads its input by 127 samples at both ends and each level is reflected
    by 128 samples at both ends before its kernels run (nnAudio's "reflect" padding)."""
    full = [truncated_kernels(kernels, level, None, compensate=False) for level in range(N_LEVELS)]
    decimate = Decimator(lowpass, DECIMATE_CHUNK)
    n_frames = audio.shape[1] // FRAME_SAMPLES + 1
    x = audio.astype(np.float32)
    out = np.empty((audio.shape[0], n_frames, N_BINS), dtype=np.float32)
    for level in range(N_LEVELS):
        if level:
            pad = LOWPASS_CENTRE
            x = decimate(np.pad(x, ((0, 0), (pad, pad))))
        hop = level_hop(level)
        padded = np.pad(x, ((0, 0), (KERNEL_CENTRE, KERNEL_CENTRE)), mode="reflect")
        values = frames(padded, full[level], hop, KERNEL_CENTRE, n_frames)
        bins = level_bins(level)
        out[:, :, bins] = power(values, scale[bins])
    return out
