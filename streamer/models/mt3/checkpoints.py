"""Loading MT3-family weights: kunato `mt3.pth`, MR-MT3 Lightning `.ckpt`, plain `.pt`, safetensors.

Whatever the container, the weights go through one strict check against our network: every missing,
unexpected or mis-shaped key is named in a CheckpointError. A half-loaded model is never returned (the
mt3-infer MR-MT3 adapter's `strict=False` silently kept random weights for Lightning files, reference §8 #8).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from streamer.errors import CheckpointError
from streamer.models.mt3.t5 import HEAD_DIM, MT3Transformer, T5Config

LIGHTNING_PREFIX = "model."  # MR-MT3's LightningModule keeps the network in `self.model`
# The ports store some tensors twice under a second name (the same module reached two ways, §4.4).
ALIASES = {
    "encoder.embed_tokens.weight": "proj.weight",
    "decoder.embed_tokens.weight": "decoder_embed_tokens.weight",
    "segmem_encoder.embed_tokens.weight": "segmem_proj.weight",
}
# Sinusoid frequencies stored by the ports. We compute the table from the configured formula instead.
IGNORED_BUFFER = re.compile(r"^(encoder|decoder|segmem_encoder)\.pos_emb\.inv_freq$")
LISTED_KEYS = 8  # keys named per category in an error message


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """Read a file's tensors (any supported container), not yet checked against a model."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as error:  # safetensors raises its own SafetensorError and OSError
            raise CheckpointError(f"cannot read safetensors file {path}: {error}") from error
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # Lightning checkpoints can pickle optimizer and config objects that weights_only refuses.
        if not allow_pickle:
            raise CheckpointError(
                f"{path} holds Python objects besides tensors; loading it runs pickled code. It is allowed for "
                "files from the catalogue (`streamer models pull`); for another file set "
                "`allow_pickle = true` in the model's config if you trust it"
            ) from error
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except (ImportError, AttributeError) as missing:
            # A pickled object whose class lives in a module that is not installed (a training codebase).
            raise CheckpointError(f"{path} pickles Python objects this install cannot rebuild: {missing}") from None
    except (RuntimeError, OSError, EOFError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    return unwrap_state_dict(loaded, str(path))


def unwrap_state_dict(loaded: object, origin: str = "checkpoint") -> dict[str, Tensor]:
    """A bare state dict, a Lightning checkpoint (`state_dict`, keys prefixed `model.`) or an nn.Module."""
    if isinstance(loaded, torch.nn.Module):
        loaded = loaded.state_dict()
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"{origin} is not a state dict of tensors")
    state = {str(k): v for k, v in loaded.items()}
    if state and all(k.startswith(LIGHTNING_PREFIX) for k in state):
        state = {k[len(LIGHTNING_PREFIX) :]: v for k, v in state.items()}
    return state


def canonical_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Fold aliases into their primary key (they must hold the same tensor) and drop ignored buffers."""
    result: dict[str, Tensor] = {}
    for key, value in state.items():
        if IGNORED_BUFFER.match(key) or key in ALIASES:
            continue
        result[key] = value
    for alias, primary in ALIASES.items():
        if alias not in state:
            continue
        if primary not in result:
            result[primary] = state[alias]
        elif result[primary].shape != state[alias].shape or not torch.equal(result[primary], state[alias]):
            raise CheckpointError(f"{alias} and {primary} should be one tensor but differ")
    return result


def infer_config(state: Mapping[str, Tensor], positional: str, segmem_length: int) -> T5Config:
    """Sizes from the tensors themselves; the options only say what the weights cannot (§4.1)."""
    state = canonical_state_dict(state)
    for required in ("proj.weight", "decoder_embed_tokens.weight"):
        if required not in state:
            raise CheckpointError(f"not an MT3 checkpoint: no {required} (keys: {_sample(state)})")
    has_memory = any(k.startswith("segmem_") for k in state)
    if has_memory and segmem_length <= 0:
        raise CheckpointError("checkpoint has an MR-MT3 memory encoder: set segmem_length (32 or 64)")
    if segmem_length > 0 and not has_memory:
        raise CheckpointError(f"segmem_length = {segmem_length} but the checkpoint has no memory encoder")
    vocab, d_model = state["decoder_embed_tokens.weight"].shape
    inner = state.get("encoder.block.0.layer.0.SelfAttention.q.weight")
    feed_forward = state.get("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
    if inner is None or feed_forward is None:
        raise CheckpointError(f"not an MT3 checkpoint: no encoder block 0 (keys: {_sample(state)})")
    return T5Config(
        vocab_size=vocab,
        input_dim=state["proj.weight"].shape[1],
        d_model=d_model,
        num_heads=inner.shape[0] // HEAD_DIM,
        d_ff=feed_forward.shape[0],
        encoder_layers=_count_blocks(state, "encoder"),
        decoder_layers=_count_blocks(state, "decoder"),
        positional=positional,
        segmem_length=segmem_length if has_memory else 0,
        segmem_layers=_count_blocks(state, "segmem_encoder") if has_memory else 1,
    )


def load_weights(model: MT3Transformer, state: Mapping[str, Tensor]) -> None:
    """Copy `state` into `model` after checking every key and shape; raise naming each problem."""
    given = canonical_state_dict(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in set(given) & set(expected)
        if given[k].shape != expected[k].shape
    )
    problems = [
        f"{label}: {_sample(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if problems:
        raise CheckpointError("checkpoint does not match the MT3 network; " + "; ".join(problems))
    model.load_state_dict(given, strict=True)


def random_state_dict(config: T5Config, seed: int) -> dict[str, Tensor]:
    """Seeded stand-in weights with T5's init scales (so activations stay in range): tests and benchmarks.

    Drawn key by key in sorted order from one generator, so the same torch version gives the same tensors
    in any process (the parity fixtures rely on it).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # shapes only, nothing allocated
        shapes = {k: v.shape for k, v in MT3Transformer(config).state_dict().items()}
    state = {}
    for key in sorted(shapes):
        noise = torch.randn(shapes[key], generator=generator)
        state[key] = _init_scale(key, config) * noise + (1.0 if key.endswith("layer_norm.weight") else 0.0)
    return state


def to_port_layout(state: Mapping[str, Tensor], config: T5Config) -> dict[str, Tensor]:
    """Our state dict in the ports' layout (aliases and inv_freq buffers added): 193 keys for MT3."""
    result = dict(state)
    for alias, primary in ALIASES.items():
        if primary in state:
            result[alias] = state[primary]
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, config.d_model, 2).float() / config.d_model))
    stacks = ["encoder", "decoder"] + (["segmem_encoder"] if config.segmem_length else [])
    for stack in stacks:
        result[f"{stack}.pos_emb.inv_freq"] = inv_freq.clone()
    return result


def _init_scale(key: str, config: T5Config) -> float:
    if key.endswith("layer_norm.weight"):
        return 0.1  # around 1.0, so the norms are exercised
    if key == "decoder_embed_tokens.weight":
        return 1.0
    if key.endswith(".q.weight"):
        return (config.d_model * config.d_kv) ** -0.5  # T5 folds the attention scale into q's init
    if key.endswith(".o.weight"):
        return config.inner_dim**-0.5
    if key.endswith(".wo.weight"):
        return config.d_ff**-0.5
    if key == "proj.weight":
        return config.input_dim**-0.5
    return config.d_model**-0.5


def _count_blocks(state: Mapping[str, Tensor], stack: str) -> int:
    pattern = re.compile(rf"^{stack}\.block\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _sample(keys: Iterable[str]) -> str:
    items = sorted(keys)
    shown = ", ".join(items[:LISTED_KEYS])
    return shown + (f" … ({len(items)} in all)" if len(items) > LISTED_KEYS else "")
