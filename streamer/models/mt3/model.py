"""MT3-PyTorch and MR-MT3 behind the server's `Model` interface.

One call: audio windows → front end → encoder (→ MR-MT3 memory) → batched cached greedy decoding → each
window's tokens decoded with a fresh codec state into window-relative notes. MR-MT3's memory is the token
row of the window that ended exactly where the current one starts (training used contiguous segments),
kept per stream in a small bounded history.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamer.audio.windows import Window
from streamer.errors import CheckpointError, ConfigError
from streamer.models import catalogue
from streamer.models.base import Model
from streamer.models.device_io import to_device
from streamer.models.mt3.checkpoints import infer_config, load_weights, read_state_dict, unwrap_state_dict
from streamer.models.mt3.codec import decode_window
from streamer.models.mt3.decoding import DecodeOptions, greedy_decode
from streamer.models.mt3.frontend import FRONTENDS, LogMelFrontend, zero_padding_frames
from streamer.models.mt3.spec import (
    DESCRIPTIONS,
    MAX_DECODE_TOKENS,
    MIN_HOP_S,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    mt3_spec,
)
from streamer.models.mt3.t5 import POSITIONAL_FORMULAS, MT3Transformer
from streamer.models.mt3.vocab import EOS_ID, MT3, PAD_ID, EventType
from streamer.notes import WindowNote

MODEL_NAMES = ("mt3-pytorch", "mr-mt3")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_MAX_BATCH = {"cpu": 8, "cuda": 64}
# MR-MT3's memory input: the previous window's tokens padded to the training target length (§5).
MEMORY_TOKENS = MAX_DECODE_TOKENS
# Enough rows to reach back one whole window at the smallest hop, plus the current one.
MEMORY_HISTORY = math.ceil(WINDOW_SAMPLES / (MIN_HOP_S * SAMPLE_RATE)) + 1


@dataclass(frozen=True, slots=True)
class MT3Options:
    """The `[model]` table of configs/mt3-pytorch.toml and configs/mr-mt3.toml (docs/models.md)."""

    checkpoint: str  # catalogue name, or a path to .pth / .pt / .ckpt / .safetensors
    frontend: str = "official"  # one of frontend.FRONTENDS
    mel_norm: bool = False
    positional: str = "official"  # "official" (10000^(-i/255)) or "ports" (10000^(-i/256))
    segmem_length: int = 0  # MR-MT3 memory positions; 0: no memory
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    dtype: str = "auto"  # "auto": float32 (CUDA too, until bf16/fp16 are measured on real weights), or a DTYPES name
    max_batch: int = 0  # windows per forward pass; 0: 8 on CPU, 64 on CUDA
    max_new_tokens: int = MAX_DECODE_TOKENS
    allow_pickle: bool = False  # let a user-supplied file with pickled objects load (catalogue files may)
    memory_start_token: bool = False  # True: MR-MT3 upstream inference's leading 0 in the memory row (§5)
    compile: bool = False  # torch.compile the encoder

    @classmethod
    def parse(cls, name: str, options: Mapping[str, object]) -> MT3Options:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown [model] option(s) for {name}: {', '.join(unknown)}")
        merged = {**MODEL_DEFAULTS[name], **options}
        parsed = cls(**merged)  # type: ignore[arg-type]
        parsed.validate()
        return parsed

    def validate(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ConfigError(f"frontend = {self.frontend!r}; expected one of {', '.join(FRONTENDS)}")
        if self.positional not in POSITIONAL_FORMULAS:
            raise ConfigError(f"positional = {self.positional!r}; expected one of {POSITIONAL_FORMULAS}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ConfigError(f"dtype = {self.dtype!r}; expected auto or one of {', '.join(DTYPES)}")
        if not 1 <= self.max_new_tokens <= MAX_DECODE_TOKENS:
            raise ConfigError(f"max_new_tokens must be within 1..{MAX_DECODE_TOKENS}")
        if self.segmem_length < 0 or self.max_batch < 0:
            raise ConfigError("segmem_length and max_batch must not be negative")


# Per model: what its usual checkpoint was trained with (docs/models.md explains each choice).
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "mt3-pytorch": {"checkpoint": "mt3-pytorch", "frontend": "official", "positional": "official"},
    # MR-MT3 as its own inference runs it: the current torch front end and the leading 0 in the memory row
    # (docs/models.md says why, and which options give the training-time variants).
    "mr-mt3": {
        "checkpoint": "mr-mt3",
        "frontend": "torch-v2",
        "mel_norm": True,
        "positional": "ports",
        "segmem_length": 64,
        "memory_start_token": True,
    },
}

class TokenHistory:
    """A stream's recent decoded token rows keyed by window end sample; bounded, oldest dropped first."""

    def __init__(self, capacity: int = MEMORY_HISTORY) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[int, np.ndarray] = OrderedDict()

    def remember(self, end_sample: int, tokens: Sequence[int]) -> None:
        self._rows[end_sample] = np.asarray(tokens, dtype=np.int16)
        self._rows.move_to_end(end_sample)
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)

    def ending_at(self, sample: int) -> np.ndarray | None:
        return self._rows.get(sample)

    def rows(self) -> list[tuple[int, np.ndarray]]:
        """(end sample, tokens), oldest first: remembering them in this order rebuilds the same history (model
        replicas receive a stream's history with each window, see streamer/replicas/memory.py)."""
        return list(self._rows.items())

    def __len__(self) -> int:
        return len(self._rows)


def memory_row(previous: np.ndarray | None, start_token: bool) -> list[int]:
    """The memory encoder's input: the previous window's tokens (EOS included) padded with PAD to 1024.

    Training fed the previous segment's targets without a leading decoder-start token, and [tie, EOS] when
    there was no previous segment (§5). `start_token` reproduces MR-MT3's inference, which prepends a 0.
    """
    if previous is None:
        row = [MT3.token(EventType.TIE), EOS_ID]
    else:
        row = ([PAD_ID] if start_token else []) + previous.tolist()
    row = row[:MEMORY_TOKENS]
    return row + [PAD_ID] * (MEMORY_TOKENS - len(row))


class MT3Model(Model):
    def __init__(self, name: str, network: MT3Transformer, options: MT3Options) -> None:
        self.spec = mt3_spec(name, DESCRIPTIONS.get(name, name))
        self.options = options
        self.device = _device(options.device)
        self.dtype = _dtype(options.dtype, self.device)
        self.max_batch = options.max_batch or DEFAULT_MAX_BATCH.get(self.device.type, 8)
        self.network = network.to(device=self.device, dtype=self.dtype).eval()
        self.frontend = LogMelFrontend(options.frontend, options.mel_norm).to(self.device)
        self.decode_options = DecodeOptions(max_new_tokens=options.max_new_tokens)
        self.uses_memory = network.config.segmem_length > 0
        self.invalid_tokens = 0  # running count of tokens the codec rejected, for logs and metrics
        # Off by default until measured on a GPU (docs/models.md): only the encoder, whose shapes are static.
        self._compiled_encode = torch.compile(self.network.encode, dynamic=True) if options.compile else None

    def new_stream(self) -> TokenHistory | None:
        return TokenHistory() if self.uses_memory else None

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        results: list[list[WindowNote]] = []
        for first in range(0, len(batch), self.max_batch):
            chunk = slice(first, first + self.max_batch)
            results.extend(self._transcribe(batch[chunk], states[chunk]))
        return results

    @torch.inference_mode()
    def _transcribe(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        audio = to_device(np.stack([_window_audio(r.audio) for r in batch]), self.device)
        features = zero_padding_frames(self.frontend(audio), [r.valid for r in batch])
        encoded = self._encode(features.to(self.dtype))
        histories = [state if isinstance(state, TokenHistory) else None for state in states]
        if self.uses_memory:
            rows = [self._memory_for(request, history) for request, history in zip(batch, histories, strict=True)]
            memory = self.network.encode_memory(to_device(np.asarray(rows, dtype=np.int64), self.device))
            encoded = torch.cat([encoded, memory], dim=1)
        token_rows = greedy_decode(self.network, encoded, self.decode_options)
        results = []
        for request, history, tokens in zip(batch, histories, token_rows, strict=True):
            notes, report = decode_window(tokens, request.start, WINDOW_SAMPLES, SAMPLE_RATE, MT3)
            self.invalid_tokens += report.invalid
            if self.uses_memory and history is not None:
                history.remember(request.start + WINDOW_SAMPLES, tokens)
            results.append(notes)
        return results

    def _encode(self, features: torch.Tensor) -> torch.Tensor:
        return (self._compiled_encode or self.network.encode)(features)

    def _memory_for(self, request: Window, history: TokenHistory | None) -> list[int]:
        previous = history.ending_at(request.start) if history is not None else None
        return memory_row(previous, self.options.memory_start_token)

    def close(self) -> None:
        del self.network
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def build_model(name: str, options: Mapping[str, object]) -> MT3Model:
    """Build "mt3-pytorch" or "mr-mt3" from its `[model]` options, loading the checkpoint they name."""
    _check_name(name)
    parsed = MT3Options.parse(name, options)
    path, implied, trusted = resolve_checkpoint(parsed.checkpoint)
    if implied:  # options a catalogue file implies, unless the user set them
        parsed = MT3Options.parse(name, {**implied, **options})
    stated = catalogue.memory_length_in_name(path.name)
    if name == "mr-mt3" and stated is not None and stated != parsed.segmem_length:
        raise ConfigError(
            f"{path.name} says its memory has {stated} positions but segmem_length = {parsed.segmem_length}; "
            f"set segmem_length = {stated}"
        )
    state = read_state_dict(path, allow_pickle=trusted or parsed.allow_pickle)
    return _assemble(name, state, parsed)


def build_model_from_state_dict(
    name: str, weights: Mapping[str, torch.Tensor] | torch.nn.Module, options: Mapping[str, object] | None = None
) -> MT3Model:
    """Same model from weights already in memory (a state dict in any supported layout, or a module)."""
    _check_name(name)
    parsed = MT3Options.parse(name, {"checkpoint": "<in memory>", **(options or {})})
    return _assemble(name, unwrap_state_dict(weights, "weights"), parsed)


def resolve_checkpoint(value: str) -> tuple[Path, dict[str, object], bool]:
    """(file, options it implies, whether it comes from the catalogue) for a catalogue name or a path."""
    if value in catalogue.CATALOGUE:
        item = catalogue.CATALOGUE[value]
        path = catalogue.installed_path(item)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {value!r} is not installed; {catalogue.how_to_get(item)}")
        return path, dict(item.options), True
    path = Path(value).expanduser()
    if not path.is_file():
        names = ", ".join(catalogue.CATALOGUE)
        raise CheckpointError(
            f"checkpoint {value!r} is neither a file nor a catalogue name ({names}); get one with "
            "`streamer models pull NAME`, or register yours with `streamer models pull NAME --from PATH`"
        )
    return path, {}, False


def _assemble(name: str, state: Mapping[str, torch.Tensor], options: MT3Options) -> MT3Model:
    if options.segmem_length == 0:
        # A memory checkpoint run without memory: its memory encoder is deliberately left out.
        state = {k: v for k, v in state.items() if not k.startswith("segmem_")}
    config = infer_config(state, options.positional, options.segmem_length)
    if config.vocab_size != MT3.embedding_rows:
        raise CheckpointError(f"vocabulary of {config.vocab_size} rows; the mt3 vocabulary has 1536")
    network = MT3Transformer(config)
    load_weights(network, state)
    return MT3Model(name, network, options)


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ConfigError(f"not an MT3-family model: {name!r} (expected one of {', '.join(MODEL_NAMES)})")


def _device(value: str) -> torch.device:
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {value!r} but CUDA is not available")
    return device


def _dtype(value: str, device: torch.device) -> torch.dtype:
    """float32 unless asked: bfloat16/float16 have not been measured equal on the real weights, and T5 without
    attention scaling can overflow float16 activations (no overflow guard here)."""
    return torch.float32 if value == "auto" else DTYPES[value]


def _window_audio(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if samples.size > WINDOW_SAMPLES:
        raise ValueError(f"window of {samples.size} samples; MT3 windows hold {WINDOW_SAMPLES}")
    return np.pad(samples, (0, WINDOW_SAMPLES - samples.size))
