"""Strict loading of basic-pitch's weights from nmp.onnx: anything but the expected tensors is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamer.errors import CheckpointError
from streamer.models.basic_pitch.model import onnx_path
from streamer.models.basic_pitch.weights import TENSORS, load_weights, read_initializers, weights_from_initializers


@pytest.fixture(scope="module")
def tensors() -> dict[str, np.ndarray]:
    return read_initializers(onnx_path())


def test_the_shipped_file_loads_in_our_layout(tensors: dict[str, np.ndarray]) -> None:
    w = weights_from_initializers(tensors)
    assert w.cqt_kernels.shape == (256, 72) and w.lowpass.shape == (256,) and w.cqt_scale.shape == (309,)
    assert w.contour.weight.shape == (3, 39, 8, 8) and w.onset_out.weight.shape == (3, 3, 33, 1)
    assert all(a.dtype == np.float32 for a in (w.cqt_kernels, w.contour.weight, w.note_out.bias))


def test_a_missing_tensor(tensors: dict[str, np.ndarray]) -> None:
    broken = dict(tensors)
    del broken[TENSORS["note_out_w"][0]]
    with pytest.raises(CheckpointError, match=r"missing tensor.*note_out_w"):
        weights_from_initializers(broken)


def test_an_unexpected_tensor(tensors: dict[str, np.ndarray]) -> None:
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*extra"):
        weights_from_initializers({**tensors, "extra": np.zeros(3, np.float32)})


def test_a_mis_shaped_tensor(tensors: dict[str, np.ndarray]) -> None:
    name = TENSORS["contour_w"][0]
    with pytest.raises(CheckpointError, match=r"contour_w .* has shape \(8, 8, 3, 38\)"):
        weights_from_initializers({**tensors, name: tensors[name][..., :38]})


def test_a_changed_formula_constant_or_nonzero_bias(tensors: dict[str, np.ndarray]) -> None:
    floor = TENSORS["log_floor"][0]
    with pytest.raises(CheckpointError, match="log_floor"):
        weights_from_initializers({**tensors, floor: np.array(1e-8, np.float32)})
    bias = TENSORS["cqt_bias"][0]
    with pytest.raises(CheckpointError, match="cqt_bias is not zero"):
        weights_from_initializers({**tensors, bias: np.ones(36, np.float32)})


def test_non_finite_weights(tensors: dict[str, np.ndarray]) -> None:
    name = TENSORS["onset_hidden_w"][0]
    bad = tensors[name].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(CheckpointError, match="not finite"):
        weights_from_initializers({**tensors, name: bad})


def test_a_corrupted_file(tmp_path: Path) -> None:
    damaged = tmp_path / "nmp.onnx"
    damaged.write_bytes(onnx_path().read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_weights(damaged)
