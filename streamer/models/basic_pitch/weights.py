"""basic-pitch's trained tensors, read from the initializers of the wheel's nmp.onnx into our own layout.

The ONNX file is a TensorFlow export: its initializers carry TensorFlow's scope names (or `const_fold_opt__N` where
the converter folded constants), BatchNorm is already folded into every conv except the one right after the log-CQT
(a scalar affine that we fold into the normalisation), and a few scalars of the log formula are stored as tensors.
The mapping below names every float initializer of the file. Loading is strict: a missing, unexpected or mis-shaped
tensor, or a formula constant with another value, means a different model, and raises CheckpointError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.errors import CheckpointError

# Conv weights in ONNX are (out channels, in channels, time taps, frequency taps); ours are (time, frequency, in,
# out), the order our im2col patches are laid out in.
ONNX_CONV_AXES = (2, 3, 1, 0)

_BN = "model_1/batch_normalization/FusedBatchNormV3"
_CQT = "model_1/cq_t2010v2_1"
_LOG = "model_1/normalized_log_1"

# Our name → (initializer name, shape). Conv biases with BatchNorm folded in keep TensorFlow's fused scope names.
TENSORS: dict[str, tuple[str, tuple[int, ...]]] = {
    "cqt_real": ("const_fold_opt__655", (36, 1, 1, 256)),
    "cqt_imag": ("const_fold_opt__664", (36, 1, 1, 256)),
    "cqt_bias": (f"{_CQT}/conv1d_25;{_CQT}/conv1d_25", (36,)),
    "cqt_scale": (f"{_CQT}/Sqrt;{_CQT}/Sqrt", (309, 1, 1)),
    "lowpass": ("const_fold_opt__734", (1, 1, 1, 256)),
    "lowpass_bias": ("model_1/conv2d_5/Conv2D;model_1/conv2d_5/Conv2D", (1,)),
    "log_floor": (f"{_LOG}/add/y;{_LOG}/add/y", ()),
    "log10_e": (f"{_LOG}/truediv;{_LOG}/truediv;{_LOG}/Log_1;{_LOG}/Log_1", ()),
    "db_per_bel": (f"{_LOG}/Const;{_LOG}/Const", ()),
    "div_no_nan_zero": (f"{_LOG}/div_no_nan;{_LOG}/div_no_nan", ()),
    "input_scale": (f"{_BN};{_BN}", (1,)),
    "input_offset": (f"{_BN};{_BN}1", (1,)),
    "contour_w": ("const_fold_opt__727", (8, 8, 3, 39)),
    "contour_b": (
        "model_1/re_lu_1/Relu;model_1/re_lu_1/Relu;model_1/batch_normalization_2/FusedBatchNormV3;"
        "model_1/batch_normalization_2/FusedBatchNormV3;model_1/conv2d_1/BiasAdd/ReadVariableOp;"
        "model_1/conv2d_1/BiasAdd/ReadVariableOp;model_1/conv2d_1/BiasAdd;model_1/conv2d_1/BiasAdd;"
        "model_1/conv2d_1/Conv2D;model_1/conv2d_1/Conv2D",
        (8,),
    ),
    "contour_out_w": ("const_fold_opt__710", (1, 8, 5, 5)),
    "contour_out_b": (
        "model_1/contours-reduced/BiasAdd/ReadVariableOp;model_1/contours-reduced/BiasAdd/ReadVariableOp",
        (1,),
    ),
    "note_hidden_w": ("const_fold_opt__738", (32, 1, 7, 7)),
    "note_hidden_b": ("model_1/conv2d_2/BiasAdd/ReadVariableOp;model_1/conv2d_2/BiasAdd/ReadVariableOp", (32,)),
    "note_out_w": ("const_fold_opt__702", (1, 32, 7, 3)),
    "note_out_b": ("model_1/conv2d_3/BiasAdd/ReadVariableOp;model_1/conv2d_3/BiasAdd/ReadVariableOp", (1,)),
    "onset_hidden_w": ("const_fold_opt__707", (32, 8, 5, 5)),
    "onset_hidden_b": (
        "model_1/re_lu_3/Relu;model_1/re_lu_3/Relu;model_1/batch_normalization_3/FusedBatchNormV3;"
        "model_1/batch_normalization_3/FusedBatchNormV3;model_1/conv2d_4/BiasAdd/ReadVariableOp;"
        "model_1/conv2d_4/BiasAdd/ReadVariableOp;model_1/conv2d_4/BiasAdd;model_1/conv2d_4/BiasAdd;"
        "model_1/conv2d_2/Conv2D;model_1/conv2d_2/Conv2D;model_1/conv2d_4/Conv2D;model_1/conv2d_4/Conv2D",
        (32,),
    ),
    "onset_out_w": ("const_fold_opt__680", (1, 33, 3, 3)),
    "onset_out_b": ("model_1/conv2d_5/BiasAdd/ReadVariableOp;model_1/conv2d_5/BiasAdd/ReadVariableOp", (1,)),
}

# Tensors that are formulas, not training: NormalizedLog's dB conversion 10·log10(power + 1e-10) and divide-no-nan,
# and the CQT's and low-pass filter's biases, which nnAudio leaves at zero (so that silence stays silence).
CONSTANTS: dict[str, float] = {
    "log_floor": 1e-10,
    "log10_e": float(np.log10(np.e)),
    "db_per_bel": 10.0,
    "div_no_nan_zero": 0.0,
}
ZERO = ("cqt_bias", "lowpass_bias")


@dataclass(frozen=True, slots=True)
class Conv:
    weight: np.ndarray  # (time taps, frequency taps, in channels, out channels), float32
    bias: np.ndarray  # (out channels,)


@dataclass(frozen=True, slots=True)
class Weights:
    """Everything the numpy network needs, float32, in our layout."""

    cqt_kernels: np.ndarray  # (256 taps, 72): the top octave's 36 complex kernels, real parts then imaginary parts
    cqt_scale: np.ndarray  # (309,): per-bin gain sqrt(kernel length) (librosa's normalisation)
    lowpass: np.ndarray  # (256,) taps of the half-band filter applied before each decimation by 2
    input_scale: float  # BatchNorm after the normalised log-CQT (one channel: a scalar affine)
    input_offset: float
    contour: Conv  # 3×39 on the harmonic stack, BatchNorm folded, ReLU
    contour_out: Conv  # 5×5 → 1, sigmoid: the contour posteriors
    note_hidden: Conv  # 7×7, frequency stride 3, ReLU
    note_out: Conv  # 7×3 → 1, sigmoid: the note posteriors
    onset_hidden: Conv  # 5×5 on the harmonic stack, frequency stride 3, BatchNorm folded, ReLU
    onset_out: Conv  # 3×3 on [note posteriors, onset_hidden], sigmoid: the onset posteriors


def weights_from_initializers(tensors: Mapping[str, np.ndarray]) -> Weights:
    """Map an ONNX file's float initializers (name → array) to Weights; raises CheckpointError on any mismatch."""
    floats = {name: a for name, a in tensors.items() if np.issubdtype(a.dtype, np.floating)}
    expected = {onnx_name for onnx_name, _ in TENSORS.values()}
    missing = sorted(ours for ours, (onnx_name, _) in TENSORS.items() if onnx_name not in floats)
    if missing:
        raise CheckpointError(f"basic-pitch weights: missing tensor(s) {', '.join(missing)}")
    unexpected = sorted(set(floats) - expected)
    if unexpected:
        raise CheckpointError(f"basic-pitch weights: unexpected tensor(s) {', '.join(unexpected)}")
    t: dict[str, np.ndarray] = {}
    for ours, (onnx_name, shape) in TENSORS.items():
        array = np.asarray(floats[onnx_name], dtype=np.float32)
        if array.shape != shape:
            raise CheckpointError(f"basic-pitch weights: {ours} ({onnx_name}) has shape {array.shape}, not {shape}")
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"basic-pitch weights: {ours} ({onnx_name}) is not finite")
        t[ours] = array
    for ours, value in CONSTANTS.items():
        if not np.isclose(float(t[ours]), value, rtol=1e-6, atol=0.0):
            raise CheckpointError(f"basic-pitch weights: {ours} is {float(t[ours])}, expected {value}")
    for ours in ZERO:
        if np.any(t[ours] != 0):
            raise CheckpointError(f"basic-pitch weights: {ours} is not zero")

    def conv(name: str) -> Conv:
        weight = np.ascontiguousarray(t[f"{name}_w"].transpose(ONNX_CONV_AXES))
        return Conv(weight, t[f"{name}_b"].copy())

    kernels = np.concatenate([t["cqt_real"][:, 0, 0, :].T, t["cqt_imag"][:, 0, 0, :].T], axis=1)
    return Weights(
        cqt_kernels=np.ascontiguousarray(kernels),
        cqt_scale=t["cqt_scale"].reshape(-1).copy(),
        lowpass=t["lowpass"].reshape(-1).copy(),
        input_scale=float(t["input_scale"][0]),
        input_offset=float(t["input_offset"][0]),
        contour=conv("contour"),
        contour_out=conv("contour_out"),
        note_hidden=conv("note_hidden"),
        note_out=conv("note_out"),
        onset_hidden=conv("onset_hidden"),
        onset_out=conv("onset_out"),
    )


def read_initializers(path: Path) -> dict[str, np.ndarray]:
    """Every initializer of an ONNX file as numpy arrays; CheckpointError when the file cannot be read as ONNX."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path), load_external_data=False)
        return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    except Exception as e:  # onnx raises DecodeError, ValueError, OSError … for a damaged file
        raise CheckpointError(f"cannot read basic-pitch weights from {path}: {e}") from e


def load_weights(path: Path | None = None) -> Weights:
    """The weights of `path`, by default the installed basic-pitch wheel's nmp.onnx."""
    if path is None:
        from streamer.models.basic_pitch.model import onnx_path

        path = onnx_path()
    return weights_from_initializers(read_initializers(path))
