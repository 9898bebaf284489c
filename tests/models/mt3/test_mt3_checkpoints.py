"""Strict checkpoint loading: containers, prefixes, aliases, and errors that name every bad key."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamer.errors import CheckpointError
from streamer.models.mt3.checkpoints import (
    infer_config,
    load_weights,
    random_state_dict,
    read_state_dict,
    to_port_layout,
)
from streamer.models.mt3.t5 import MT3Transformer, T5Config

SMALL = T5Config(d_model=128, num_heads=2, d_ff=256, encoder_layers=2, decoder_layers=3)
SMALL_MEMORY = T5Config(d_model=128, num_heads=2, d_ff=256, encoder_layers=2, decoder_layers=2, segmem_length=4)


def test_the_ports_layout_has_193_keys_and_46m_parameters() -> None:
    config = T5Config()
    with torch.device("meta"):
        model = MT3Transformer(config)
        port = to_port_layout(model.state_dict(), config)
    assert len(port) == 193
    assert Counter(k.split(".")[0] for k in port) == Counter(
        {"encoder": 75, "decoder": 115, "proj": 1, "decoder_embed_tokens": 1, "lm_head": 1}
    )
    assert sum(p.numel() for p in model.parameters()) == 45_896_704


def built(config: T5Config, state: dict[str, torch.Tensor]) -> MT3Transformer:
    model = MT3Transformer(config)
    load_weights(model, state)
    return model


def test_pth_lightning_and_safetensors_load_the_same_weights(tmp_path: Path) -> None:
    state = random_state_dict(SMALL, seed=2)
    reference = built(SMALL, state)
    port_file, lightning_file, plain_file = tmp_path / "mt3.pth", tmp_path / "x.ckpt", tmp_path / "w.safetensors"
    torch.save(to_port_layout(state, SMALL), port_file)
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "global_step": 9}, lightning_file)
    save_file(state, plain_file)
    for path in (port_file, lightning_file, plain_file):
        loaded = read_state_dict(path)
        assert infer_config(loaded, "official", 0) == SMALL
        model = built(SMALL, loaded)
        for (name, ours), (_, theirs) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
            assert torch.equal(ours, theirs), (path, name)


def test_error_names_missing_unexpected_and_misshaped_keys() -> None:
    state = random_state_dict(SMALL, seed=2)
    del state["decoder.block.1.layer.1.EncDecAttention.k.weight"]
    state["decoder.block.9.layer.0.SelfAttention.q.weight"] = torch.zeros(256, 128)
    state["lm_head.weight"] = torch.zeros(1535, 128)
    with pytest.raises(CheckpointError) as caught:
        built(SMALL, state)
    message = str(caught.value)
    assert "missing: decoder.block.1.layer.1.EncDecAttention.k.weight" in message
    assert "unexpected: decoder.block.9.layer.0.SelfAttention.q.weight" in message
    assert "mis-shaped: lm_head.weight (1535, 128) (expected (1536, 128))" in message


def test_nothing_is_loaded_when_the_check_fails() -> None:
    model = MT3Transformer(SMALL)
    before = model.proj.weight.clone()
    state = random_state_dict(SMALL, seed=3)
    del state["lm_head.weight"]
    with pytest.raises(CheckpointError):
        load_weights(model, state)
    assert torch.equal(model.proj.weight, before)


def test_aliases_must_agree_with_their_primary() -> None:
    state = to_port_layout(random_state_dict(SMALL, seed=2), SMALL)
    state["encoder.embed_tokens.weight"] = state["proj.weight"].T.clone()  # the silent-transpose pitfall (§4.4)
    with pytest.raises(CheckpointError, match=r"encoder\.embed_tokens\.weight and proj\.weight"):
        built(SMALL, state)


def test_memory_encoder_detection() -> None:
    state = to_port_layout(random_state_dict(SMALL_MEMORY, seed=4), SMALL_MEMORY)
    assert "segmem_encoder.embed_tokens.weight" in state and "segmem_encoder.pos_emb.inv_freq" in state
    config = infer_config(state, "ports", 4)
    assert config == T5Config(**{**_fields(SMALL_MEMORY), "positional": "ports"})
    built(config, state)
    with pytest.raises(CheckpointError, match="set segmem_length"):
        infer_config(state, "ports", 0)
    with pytest.raises(CheckpointError, match="no memory encoder"):
        infer_config(random_state_dict(SMALL, seed=2), "ports", 64)


class NotATensor:
    pass


def test_pickled_objects_need_permission(tmp_path: Path) -> None:
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": random_state_dict(SMALL, seed=2), "hparams": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="allow_pickle"):
        read_state_dict(path)
    assert "proj.weight" in read_state_dict(path, allow_pickle=True)


def test_a_class_from_a_missing_module_is_a_checkpoint_error(tmp_path: Path) -> None:
    """A Lightning file can pickle its training code's classes; without that code it is a checkpoint_error."""
    path = tmp_path / "training.ckpt"
    torch.save({"state_dict": random_state_dict(SMALL, seed=2), "hparams": NotATensor()}, path)
    # Rewrite the pickled class's module to one that does not exist (what a file from another codebase holds).
    data = path.read_bytes().replace(b"test_mt3_checkpoints", b"gone_training_code__")
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        read_state_dict(path, allow_pickle=True)


def test_unreadable_files_are_checkpoint_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "broken.pth"
    garbage.write_bytes(b"\x80\x04not a zip")
    with pytest.raises(CheckpointError):
        read_state_dict(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(listing)


def _fields(config: T5Config) -> dict[str, object]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
