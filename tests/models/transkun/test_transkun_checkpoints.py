"""Strict loading of Transkun's checkpoint and conf: every key accounted for, errors that name what is wrong."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from streamer.errors import CheckpointError
from streamer.models.transkun import load_network
from streamer.models.transkun.checkpoints import (
    HANN_KEY,
    MEL_KEY,
    checkpoint_key,
    conf_path,
    load_weights,
    package_checkpoint,
    read_conf,
    read_state_dict,
)
from streamer.models.transkun.network import TranskunConfig, TranskunNetwork


@pytest.fixture(scope="module")
def state(network: TranskunNetwork) -> dict[str, torch.Tensor]:
    return read_state_dict(package_checkpoint())


def test_every_parameter_maps_to_one_checkpoint_key(state: dict[str, torch.Tensor]) -> None:
    ours = list(TranskunNetwork(TranskunConfig()).state_dict())
    mapped = [checkpoint_key(name) for name in ours]
    assert len(set(mapped)) == len(ours)
    assert set(mapped) | {MEL_KEY, HANN_KEY} == set(state)
    assert len(state) == 184


def test_the_wheels_conf_is_the_default_config() -> None:
    assert read_conf(conf_path(package_checkpoint())) == TranskunConfig()


def test_loaded_weights_are_the_checkpoints(network: TranskunNetwork, state: dict[str, torch.Tensor]) -> None:
    query = network.backbone.layers[2].time_attention.module.query.weight
    assert torch.equal(query, state["backbone.encoderLayers.2.mhaBlockT.module.q_proj_weight"].T)
    assert torch.equal(network.scorer.project.bias, state["scorer.map.0.bias"])
    assert torch.equal(network.backbone.patch[3].norm.weight, state["backbone.downConv.14.weight"])


def test_missing_unexpected_and_misshaped_keys_are_named(state: dict[str, torch.Tensor]) -> None:
    broken = dict(state)
    del broken["backbone.encoderLayers.5.fnnBlockT.scale"]
    broken["backbone.encoderLayers.6.fnnBlockT.scale"] = torch.ones(256)
    broken["velocityPredictor.3.weight"] = torch.zeros(127, 512)
    broken["backbone.encoderLayers.0.mhaBlockF.module.k_proj_weight"] = torch.zeros(128, 256)
    with pytest.raises(CheckpointError) as error:
        load_weights(TranskunNetwork(TranskunConfig()), broken)
    message = str(error.value)
    assert "missing: backbone.encoderLayers.5.fnnBlockT.scale" in message
    assert "unexpected: backbone.encoderLayers.6.fnnBlockT.scale" in message
    assert "velocityPredictor.3.weight (127, 512) (expected (128, 512))" in message
    assert "k_proj_weight (128, 256) (expected (256, 256))" in message


def test_a_checkpoint_for_another_front_end_is_refused(state: dict[str, torch.Tensor]) -> None:
    other = dict(state)
    other[MEL_KEY] = state[MEL_KEY] * 1.01
    with pytest.raises(CheckpointError, match="freq2mels differs"):
        load_weights(TranskunNetwork(TranskunConfig()), other)
    del other[MEL_KEY]
    with pytest.raises(CheckpointError, match=r"missing: framewiseFeatureExtractor\.freq2mels"):
        load_weights(TranskunNetwork(TranskunConfig()), other)


class Pickled:
    """Stands in for a training object a checkpoint might pickle."""


def test_a_class_from_a_missing_module_is_a_checkpoint_error(tmp_path: Path) -> None:
    module_name = "transkun_test_gone_module"
    module = type(sys)(module_name)
    Pickled.__module__ = module_name
    module.Pickled = Pickled  # type: ignore[attr-defined]
    sys.modules[module_name] = module
    path = tmp_path / "with_object.pt"
    try:
        torch.save({"state_dict": {"w": torch.zeros(1)}, "trainer": Pickled()}, path)
    finally:
        del sys.modules[module_name]
        Pickled.__module__ = __name__
    assert importlib.util.find_spec(module_name) is None
    with pytest.raises(CheckpointError, match=module_name):
        read_state_dict(path)


def test_corrupt_and_foreign_files_are_checkpoint_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(garbage)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="not a Transkun checkpoint"):
        read_state_dict(listed)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")


def test_best_state_dict_is_preferred_and_bare_dicts_load(tmp_path: Path) -> None:
    best, last = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    torch.save({"state_dict": last, "best_state_dict": best}, tmp_path / "both.pt")
    torch.save(best, tmp_path / "bare.pt")
    assert torch.equal(read_state_dict(tmp_path / "both.pt")["w"], best["w"])
    assert torch.equal(read_state_dict(tmp_path / "bare.pt")["w"], best["w"])


def write_conf(path: Path, **changes: object) -> Path:
    document = json.loads(conf_path(package_checkpoint()).read_text())
    for key, value in changes.items():
        if key == "module":
            document["Model"]["module"] = value
        elif value is None:
            del document["Model"]["config"][key]
        else:
            document["Model"]["config"][key] = value
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fs": 16000}, "fs = 16000 (expected 44100)"),
        ({"n_mels": 128}, "n_mels = 128 (expected 229)"),
        ({"enabledAttn": ["F", "T", "All0"]}, "enabledAttn"),
        ({"module": "transkun.Model_ablation"}, "only transkun.ModelTransformer"),
        ({"newSetting": 1}, "unknown settings newSetting"),
        ({"nLayers": None}, "missing settings nLayers"),
    ],
)
def test_conf_is_checked(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_conf(write_conf(tmp_path / "x.conf", **changes))


def test_sizes_come_from_the_conf(tmp_path: Path) -> None:
    config = read_conf(write_conf(tmp_path / "x.conf", nLayers=2, baseSize=32, nHead=4))
    assert (config.layers, config.base_size, config.heads, config.width) == (2, 32, 4, 128)


def test_a_missing_package_or_conf_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="conf not found"):
        load_network(tmp_path / "2.0.pt")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="pip install --no-deps transkun"):
        package_checkpoint()
