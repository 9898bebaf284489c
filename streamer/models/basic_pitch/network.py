"""basic-pitch's network in numpy: log-CQT → normalisation → harmonic stack → conv stacks → posteriors.

The graph is the one the shipped ONNX file computes (models.py builds a 5×5 contour conv whose output it then
discards; the export has no trace of it):

    harmonic stack H (T, 264, 8)
    contour:      relu(conv 3×39 (H))              (T, 264, 8)
    contour_out:  sigmoid(conv 5×5 (contour))       (T, 264, 1)  the contour posteriors
    note_hidden:  relu(conv 7×7 /3 (contour_out))   (T, 88, 32)  frequency stride 3
    note_out:     sigmoid(conv 7×3 (note_hidden))   (T, 88, 1)   the note posteriors
    onset_hidden: relu(conv 5×5 /3 (H))             (T, 88, 32)
    onset_out:    sigmoid(conv 3×3 ([note_out, onset_hidden]))   the onset posteriors

Every conv is "same"-padded with zeros in both axes. `Conv2d` runs one of them "valid" in time with only some of
its future time taps (the streaming network's look-ahead); the windowed model pads time itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamer.models.basic_pitch import cqt
from streamer.models.basic_pitch.weights import Conv, Weights

N_PITCHES = 88
SPECTRAL_MIN_TAPS = 16  # frequency taps from which a stride-1 layer runs in the FFT domain
CONTOUR_BINS = 264  # 88 semitones × 3
HARMONICS = (0.5, 1, 2, 3, 4, 5, 6, 7)
WINDOW_SAMPLES = 2 * cqt.SAMPLE_RATE - cqt.FRAME_SAMPLES  # the ONNX graph's fixed input length
WINDOW_FRAMES = WINDOW_SAMPLES // cqt.FRAME_SAMPLES + 1


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    return np.reciprocal(x, out=x)


def fft_size(n: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ n: sizes the FFT handles fastest."""
    size = n
    while True:
        m = size
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return size
        size += 1


def harmonic_shifts() -> np.ndarray:
    """Bins to shift the log-CQT for each harmonic: round(36·log2 h)."""
    return np.round(cqt.BINS_PER_OCTAVE * np.log2(np.array(HARMONICS, dtype=np.float64))).astype(int)


def harmonic_index() -> np.ndarray:
    """(264, 8) index into the 309 bins plus one zero column (index 309) for bins shifted out of range."""
    source = np.arange(CONTOUR_BINS)[:, None] + harmonic_shifts()[None, :]
    return np.where((source >= 0) & (source < cqt.N_BINS), source, cqt.N_BINS)


def harmonic_stack(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(…, 309) normalised log-CQT → (…, 264, 8)."""
    padded = np.concatenate([x, np.zeros((*x.shape[:-1], 1), dtype=x.dtype)], axis=-1)
    return padded[..., index]


@dataclass(frozen=True, slots=True)
class Shape:
    """A conv's frequency geometry as TensorFlow's "same" padding lays it out."""

    stride: int
    pad_left: int
    out_bins: int


class Conv2d:
    """One conv layer over (S, T, F, C) frames, "valid" in time, with time taps [−past, +future].

    Three ways to run it:
    - spectral (wide kernels, frequency stride 1: the 3×39 contour conv): a circular convolution along frequency
      in the FFT domain, zero-padded so nothing wraps; per frequency of the FFT one small complex matmul over
      (time taps × channels). About 2× faster than patches for that layer, float32 rounding ~1e-6.
    - patches (the other many-channel layers, 5×5 and 7×7 with frequency stride 3): im2col, one patch of (time
      taps × frequency taps × channels) per output bin, one matmul.
    - products (one output channel): multiply each input frame by every (time tap, frequency tap) weight at once,
      then add the shifted products; no patches at all.
    """

    def __init__(self, conv: Conv, shape: Shape, future: int, activation: Callable, fold: bool = False) -> None:
        kt, kf, cin, cout = conv.weight.shape
        self.past = (kt - 1) // 2
        if not 0 <= future <= self.past:
            raise ValueError(f"future taps must be in 0..{self.past}, not {future}")
        self.future = future
        self.taps = self.past + future + 1
        self.kf, self.cin, self.cout = kf, cin, cout
        self.shape = shape
        self.activation = activation
        self.bias = conv.bias.astype(np.float32)
        weight = conv.weight[: self.taps].copy()
        if fold:
            # Cut future taps read the newest kept frame instead: as if the input held still from there on.
            weight[-1] += conv.weight[self.taps :].sum(axis=0)
        self.n_fft = 0
        if cout > 1 and shape.stride == 1 and kf >= SPECTRAL_MIN_TAPS:
            self.n_fft = fft_size(shape.out_bins + kf - 1)
            # out[f] = Σ_d x[f + d − pad_left]·w[d] is a circular convolution with k[j] = w[pad_left − j].
            kernel = np.zeros((self.taps, self.n_fft, cin, cout))
            for d in range(kf):
                kernel[:, (shape.pad_left - d) % self.n_fft] = weight[:, d]
            spectrum = np.fft.rfft(kernel, axis=1)  # (taps, bins, cin, cout)
            self.spectrum = np.ascontiguousarray(
                spectrum.transpose(1, 0, 2, 3).reshape(-1, self.taps * cin, cout).astype(np.complex64)
            )
            return
        if cout == 1:
            # (cin, taps·kf): products[f] for every (tap, frequency tap) pair.
            self.products = np.ascontiguousarray(weight[..., 0].transpose(2, 0, 1).reshape(cin, self.taps * kf))
            return
        self.matrix = np.ascontiguousarray(weight.reshape(-1, cout))  # rows in patch order (tap, frequency, in)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (S, T, F, cin) → (S, T − past − future, out_bins, cout), activation applied."""
        if self.n_fft:
            return self._spectral(x)
        if self.cout == 1:
            return self._products(x)
        return self._patches(x)

    def _padded(self, x: np.ndarray, width: int) -> np.ndarray:
        out = np.zeros((x.shape[0], x.shape[1], width, x.shape[3]), dtype=np.float32)
        end = min(x.shape[2], width - self.shape.pad_left)
        out[:, :, self.shape.pad_left : self.shape.pad_left + end] = x[:, :, :end]
        return out

    def _patches(self, x: np.ndarray) -> np.ndarray:
        s, t_in = x.shape[:2]
        t_out = t_in - self.taps + 1
        stride, bins = self.shape.stride, self.shape.out_bins
        xp = self._padded(x, (bins - 1) * stride + self.kf)
        # (S, t_out, F', cin, taps, kf) → every `stride`-th bin, then (taps, kf, cin) per patch.
        view = np.lib.stride_tricks.sliding_window_view(xp, (self.taps, self.kf), axis=(1, 2))[:, :, ::stride]
        patches = np.ascontiguousarray(view.transpose(0, 1, 2, 4, 5, 3)).reshape(-1, self.matrix.shape[0])
        out = patches @ self.matrix
        out += self.bias
        return self.activation(out.reshape(s, t_out, bins, self.cout))

    def _spectral(self, x: np.ndarray) -> np.ndarray:
        s, t_in, bins = x.shape[:3]
        t_out = t_in - self.taps + 1
        padded = np.zeros((s, t_in, self.n_fft, self.cin), dtype=np.float32)
        padded[:, :, :bins] = x
        spectra = np.fft.rfft(padded, axis=2)  # (S, t_in, n_fft/2 + 1, cin)
        patches = np.stack([spectra[:, tap : tap + t_out] for tap in range(self.taps)], axis=3)
        n_freq = spectra.shape[2]
        patches = np.ascontiguousarray(patches.transpose(2, 0, 1, 3, 4)).reshape(n_freq, s * t_out, -1)
        out = (patches @ self.spectrum).reshape(n_freq, s, t_out, self.cout).transpose(1, 2, 0, 3)
        out = np.fft.irfft(out, n=self.n_fft, axis=2)[:, :, : self.shape.out_bins]
        return self.activation(np.ascontiguousarray(out + self.bias, dtype=np.float32))

    def _products(self, x: np.ndarray) -> np.ndarray:
        s, t_in = x.shape[:2]
        t_out = t_in - self.taps + 1
        width = self.shape.out_bins + self.kf - 1  # stride 1 only (true of every one-channel layer here)
        xp = self._padded(x, width)
        prod = (xp.reshape(-1, self.cin) @ self.products).reshape(s, t_in, width, self.taps, self.kf)
        out = np.full((s, t_out, self.shape.out_bins), self.bias[0], dtype=np.float32)
        for tap in range(self.taps):
            for i in range(self.kf):
                out += prod[:, tap : tap + t_out, i : i + self.shape.out_bins, tap, i]
        return self.activation(out)[..., None]


# Frequency geometry of each layer ("same" padding: TensorFlow puts the odd pad bin, if any, on the right).
SHAPES = {
    "contour": Shape(1, 19, CONTOUR_BINS),
    "contour_out": Shape(1, 2, CONTOUR_BINS),
    "note_hidden": Shape(3, 2, N_PITCHES),
    "note_out": Shape(1, 1, N_PITCHES),
    "onset_hidden": Shape(3, 1, N_PITCHES),
    "onset_out": Shape(1, 1, N_PITCHES),
}
ACTIVATIONS = {
    "contour": relu,
    "contour_out": sigmoid,
    "note_hidden": relu,
    "note_out": sigmoid,
    "onset_hidden": relu,
    "onset_out": sigmoid,
}
LAYERS = tuple(SHAPES)


@dataclass(frozen=True, slots=True)
class Layers:
    contour: Conv2d
    contour_out: Conv2d
    note_hidden: Conv2d
    note_out: Conv2d
    onset_hidden: Conv2d
    onset_out: Conv2d


def build_layers(weights: Weights, future: dict[str, int] | None = None, fold: bool = False) -> Layers:
    """The six conv layers; `future[name]` limits a layer's future time taps (default: all of them); `fold`: the
    cut taps' weights are added to the last kept tap."""
    made = {}
    for name in LAYERS:
        conv: Conv = getattr(weights, name)
        past = (conv.weight.shape[0] - 1) // 2
        taps = past if future is None else future[name]
        made[name] = Conv2d(conv, SHAPES[name], taps, ACTIVATIONS[name], fold)
    return Layers(**made)


def normalise(db: np.ndarray, low: np.ndarray, high: np.ndarray, weights: Weights) -> np.ndarray:
    """NormalizedLog's (dB − min) / (max − min) (0 where max = min) followed by the input BatchNorm, folded into
    one affine per frame. db (…, 309); low, high broadcast against db[..., :1]."""
    span = high - low
    scale = np.divide(weights.input_scale, span, out=np.zeros_like(span), where=span != 0)
    return (db - low) * scale + np.float32(weights.input_offset)


class WindowNetwork:
    """The windowed model exactly as the ONNX graph computes it, on whole 2 s windows."""

    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.layers = build_layers(weights)
        self.index = harmonic_index()

    def posteriors(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """audio (B, 43844) float32 → contour (B, 172, 264), note (B, 172, 88), onset (B, 172, 88)."""
        w = self.weights
        db = cqt.decibels(cqt.window_cqt_power(audio, w.cqt_kernels, w.lowpass, w.cqt_scale))
        low = db.min(axis=(1, 2), keepdims=True)
        high = db.max(axis=(1, 2), keepdims=True)
        stacked = harmonic_stack(normalise(db, low, high, w), self.index)
        layers = self.layers

        def same(x: np.ndarray, layer: Conv2d) -> np.ndarray:
            return layer(np.pad(x, ((0, 0), (layer.past, layer.future), (0, 0), (0, 0))))

        contour = same(same(stacked, layers.contour), layers.contour_out)
        note = same(same(contour, layers.note_hidden), layers.note_out)
        onset_hidden = same(stacked, layers.onset_hidden)
        onset = same(np.concatenate([note, onset_hidden], axis=-1), layers.onset_out)
        return contour[..., 0], note[..., 0], onset[..., 0]
