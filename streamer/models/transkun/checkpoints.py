"""Loading Transkun's released weights: `pretrained/2.0.pt` and `2.0.conf` inside the `transkun` wheel.

The wheel is only a carrier for the two files: nothing of it is imported (its modules import torchaudio). The
conf (JSON) gives the network's sizes and is checked against the front end we implement; the checkpoint's
tensors go through one strict check against our network, under their names in the file: every missing,
unexpected or mis-shaped key is named in a CheckpointError. The filterbank and Hann window the checkpoint
stores are compared with ours, so a checkpoint trained on another front end is refused; the stored filterbank
(torchaudio's float32 rounding of the same triangles, within 2.2e-5 of ours) is then used, as trained.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from streamer.errors import CheckpointError
from streamer.models.transkun.network import TranskunConfig, TranskunNetwork
from streamer.models.transkun.spec import (
    FFT_SIZE,
    FRAME_HOP,
    GAUSSIAN_WINDOWS,
    MEL_BANDS,
    MEL_HI_HZ,
    MEL_LO_HZ,
    SAMPLE_RATE,
)

PACKAGE = "transkun"
PACKAGE_CHECKPOINT = Path("pretrained/2.0.pt")
INSTALL_HINT = "pip install --no-deps transkun==2.0.1 (its weights are all we use; --no-deps keeps torchaudio out)"
MODULE = "transkun.ModelTransformer"  # the architecture the conf must name
LISTED_KEYS = 8  # keys named per category in an error message

# conf keys → the value our front end and network are built for.
FIXED_CONF = {
    "fs": SAMPLE_RATE,
    "hopSize": FRAME_HOP,
    "windowSize": FFT_SIZE,
    "n_mels": MEL_BANDS,
    "f_min": MEL_LO_HZ,
    "f_max": MEL_HI_HZ,
    "nExtraWins": GAUSSIAN_WINDOWS,
    "downsampleF": True,
    "enabledAttn": ["F", "T"],
    "useInnerProductScorer": True,
}
# conf keys → TranskunConfig fields.
SIZES = {
    "baseSize": "base_size",
    "nHead": "heads",
    "nLayers": "layers",
    "hiddenFactor": "mlp_factor",
    "hiddenFactorAttn": "attention_factor",
    "scoringExpansionFactor": "score_expansion",
    "velocityPredictorHiddenSize": "velocity_hidden",
    "refinedOFPredictorHiddenSize": "refine_hidden",
}
# Training-only settings (dropout, initialisation), an unused kernel-attention size, and its own segmenting.
IGNORED_CONF = {
    "posEmbedInitGamma",
    "fourierSize",
    "scoreDropoutProb",
    "contextDropoutProb",
    "velocityDropoutProb",
    "refinedOFDropoutProb",
    "segmentSizeInSecond",
    "segmentHopSizeInSecond",
}

# Our parameter names → the checkpoint's, rewritten in order.
Rename = tuple[str, str | Callable[[re.Match[str]], str]]
RENAMES: tuple[Rename, ...] = (
    (r"^frontend\.gauss_sigma$", "framewiseFeatureExtractor.spectrogramExtractor.winGen.sigma"),
    (r"^frontend\.gauss_centre$", "framewiseFeatureExtractor.spectrogramExtractor.winGen.center"),
    (r"^backbone\.band_embedding\.", "backbone.posEmbedBuilder."),
    (r"^backbone\.grid_embedding\.", "backbone.posEmbedBuilderAttnTF."),
    (r"^backbone\.track_embedding\.", "backbone.posEmbedBuilderAttnTE."),
    (r"^backbone\.input_conv\.", "backbone.inputConv."),
    # The patch convolutions sat in one Sequential with pads, norms, activations and dropouts: 1, 5, 9, 13.
    (r"^backbone\.patch\.(\d)\.conv\.", lambda m: f"backbone.downConv.{4 * int(m[1]) + 1}."),
    (r"^backbone\.patch\.(\d)\.norm\.", lambda m: f"backbone.downConv.{4 * int(m[1]) + 2}."),
    (r"^backbone\.upsample\.", "backbone.upConv1dSkip."),
    (r"^backbone\.layers\.(\d+)\.freq_attention\.", r"backbone.encoderLayers.\1.mhaBlockF."),
    (r"^backbone\.layers\.(\d+)\.freq_mlp\.", r"backbone.encoderLayers.\1.fnnBlockF."),
    (r"^backbone\.layers\.(\d+)\.time_attention\.", r"backbone.encoderLayers.\1.mhaBlockT."),
    (r"^backbone\.layers\.(\d+)\.time_mlp\.", r"backbone.encoderLayers.\1.fnnBlockT."),
    (r"\.module\.(q|k|v)[a-z]*\.weight$", r".module.\1_proj_weight"),
    (r"\.module\.out\.", ".module.out_proj."),
    (r"^scorer\.project\.", "scorer.map.0."),
    (r"^velocity\.", "velocityPredictor."),
    (r"^refine\.", "refinedOFPredictor."),
    # MLPs were Sequential(Linear, GELU, Dropout, Linear).
    (r"\.expand\.", ".0."),
    (r"\.contract\.", ".3."),
)
# Attention projections were stored as (in, out) matrices applied as x @ W; ours are nn.Linear, (out, in).
TRANSPOSED = re.compile(r"\.module\.(query|key|value)\.weight$")
# Checkpoint buffers derived from the spec: compared with ours, then used (the model was trained on them).
MEL_KEY = "framewiseFeatureExtractor.freq2mels"
HANN_KEY = "framewiseFeatureExtractor.spectrogramExtractor.win"
# torchaudio computes the filterbank's edges in float32: up to 2.2e-5 from ours (computed in float64) near 8 kHz.
DERIVED_TOLERANCE = 1e-4


def package_checkpoint() -> Path:
    """`pretrained/2.0.pt` inside the installed transkun package (found without importing it)."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(f"the transkun package (Transkun's weights) is not installed; {INSTALL_HINT}")
    path = Path(next(iter(found.submodule_search_locations))) / PACKAGE_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"transkun is installed but {path} is missing; reinstall it: {INSTALL_HINT}")
    return path


def conf_path(checkpoint: Path) -> Path:
    """The conf beside a checkpoint: `2.0.pt` → `2.0.conf`."""
    return checkpoint.with_suffix(".conf")


def read_conf(path: Path) -> TranskunConfig:
    """Network sizes from a Transkun conf, after checking it describes the model we implement."""
    try:
        document = json.loads(path.read_text())
        model = document["Model"]
        values = dict(model["config"])
    except FileNotFoundError as error:
        raise CheckpointError(f"Transkun conf not found: {path}") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is not a Transkun conf ({error!r})") from error
    if model.get("module") != MODULE:
        raise CheckpointError(f"{path}: module {model.get('module')!r}; only {MODULE} is implemented")
    unknown = sorted(set(values) - set(FIXED_CONF) - set(SIZES) - IGNORED_CONF)
    if unknown:
        raise CheckpointError(f"{path}: unknown settings {', '.join(unknown)}")
    wrong = [f"{k} = {values.get(k)!r} (expected {v!r})" for k, v in FIXED_CONF.items() if values.get(k) != v]
    if wrong:
        raise CheckpointError(f"{path} describes another front end or architecture: {'; '.join(wrong)}")
    missing = sorted(set(SIZES) - set(values))
    if missing:
        raise CheckpointError(f"{path}: missing settings {', '.join(missing)}")
    return TranskunConfig(**{field: values[key] for key, field in SIZES.items()})


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The checkpoint's tensors. Only tensors are unpickled: a file naming any Python class is refused."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a page long; the line naming the refused class or opcode is what a user needs.
        reason = next((line for line in str(error).splitlines() if "Unsupported" in line), str(error).splitlines()[0])
        raise CheckpointError(
            f"cannot read checkpoint {path}: corrupt, or holds Python objects besides tensors (never unpickled): "
            f"{reason.strip()}"
        ) from error
    # Other failures of a corrupt or foreign file (truncated zip, a class whose module is missing).
    except (RuntimeError, OSError, EOFError, ImportError, AttributeError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error!r}") from error
    return unwrap_state_dict(loaded, str(path))


def unwrap_state_dict(loaded: object, origin: str = "checkpoint") -> dict[str, Tensor]:
    """A training checkpoint (`best_state_dict` preferred over `state_dict`, as Transkun's own CLI does) or a bare
    state dict."""
    if isinstance(loaded, Mapping):
        for container in ("best_state_dict", "state_dict"):
            if isinstance(loaded.get(container), Mapping):
                loaded = loaded[container]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"{origin} is not a Transkun checkpoint (no state dict of tensors)")
    return {str(k): v for k, v in loaded.items()}


def checkpoint_key(name: str) -> str:
    """Our parameter name → the checkpoint's."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def load_weights(network: TranskunNetwork, state: Mapping[str, Tensor]) -> None:
    """Copy `state` (checkpoint names) into `network` after checking every key and shape."""
    ours = network.state_dict()
    expected = {checkpoint_key(name): name for name in ours}
    derived = {MEL_KEY: network.frontend.mel, HANN_KEY: network.frontend.hann}
    missing = sorted(set(expected) - set(state))
    missing += sorted(k for k in derived if k not in state)
    unexpected = sorted(set(state) - set(expected) - set(derived))
    misshaped = []
    for key in sorted(set(state) & set(expected)):
        want = _stored_shape(expected[key], ours[expected[key]])
        if tuple(state[key].shape) != want:
            misshaped.append(f"{key} {tuple(state[key].shape)} (expected {want})")
    for key in sorted(set(state) & set(derived)):
        if tuple(state[key].shape) != tuple(derived[key].shape):
            misshaped.append(f"{key} {tuple(state[key].shape)} (expected {tuple(derived[key].shape)})")
    problems = [
        f"{label}: {_sample(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]
    if problems:
        raise CheckpointError("checkpoint does not match the Transkun network; " + "; ".join(problems))
    for key, value in derived.items():
        difference = float((state[key].float() - value.float().cpu()).abs().max())
        if difference > DERIVED_TOLERANCE:
            raise CheckpointError(f"{key} differs from our front end's by {difference:.3g}: another front end")
    converted = {}
    for key, name in expected.items():
        tensor = state[key]
        converted[name] = tensor.T if TRANSPOSED.search(name) else tensor
    network.load_state_dict(converted, strict=True)
    with torch.no_grad():
        for key, value in derived.items():
            value.copy_(state[key])
    network.backbone.clear_cache()


def _stored_shape(name: str, tensor: Tensor) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
    return shape[::-1] if TRANSPOSED.search(name) else shape


def _sample(keys: Iterable[str]) -> str:
    items = sorted(keys)
    shown = ", ".join(items[:LISTED_KEYS])
    return shown + (f" … ({len(items)} in all)" if len(items) > LISTED_KEYS else "")
