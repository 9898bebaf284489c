"""Transkun v2 behind the server's `Model` interface.

One call: a batch of windows → front end and network on the model's device → interval scores → the best
intervals of every track of every window (on the device) → velocity and sub-frame refinement of those intervals
(on the device) → window-relative notes and pedals on the host. Stateless: each window is decoded on its own and
the stitcher joins notes and pedals across windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamer.audio.windows import Window
from streamer.errors import ConfigError
from streamer.models.base import Model
from streamer.models.device_io import to_device, to_host
from streamer.models.transkun.checkpoints import (
    conf_path,
    load_weights,
    package_checkpoint,
    read_conf,
    read_state_dict,
)
from streamer.models.transkun.decoding import Interval, best_intervals, refinement, trace, window_notes
from streamer.models.transkun.frontend import frame_count
from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import transkun_spec, window_samples_for
from streamer.notes import WindowNote

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# A 16 s window needs about 0.4 GB on top of the weights on the CPU (measured peak: 0.74 GB resident; the interval
# products alone are 90 × 691² floats, 172 MB); batching windows does not make the CPU faster.
DEFAULT_MAX_BATCH = {"cpu": 1, "cuda": 16}


@dataclass(frozen=True, slots=True)
class TranskunOptions:
    """The `[model]` table of configs/transkun.toml (docs/models.md)."""

    checkpoint: str = ""  # a Transkun .pt with its .conf beside it; "": the transkun wheel's pretrained/2.0.pt
    window: float = 0.0  # seconds; 0: the training segment, 16 s, the only length measured to be accurate
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:N"
    dtype: str = "float32"  # of the network after the front end: float32, bfloat16, float16
    threads: int = 0  # torch intra-op threads (process-wide); 0: torch's default (one per core)
    max_batch: int = 0  # windows per forward pass; 0: 1 on CPU, 16 on CUDA
    quantize: bool = False  # dynamic int8 linear layers (CPU only)

    @classmethod
    def parse(cls, options: Mapping[str, object]) -> TranskunOptions:
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown [model] option(s) for transkun: {', '.join(unknown)}")
        parsed = cls(**options)  # type: ignore[arg-type]
        parsed.validate()
        return parsed

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype = {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        if self.threads < 0 or self.max_batch < 0 or self.window < 0:
            raise ConfigError("window, threads and max_batch must not be negative")

    @property
    def window_samples(self) -> int:
        return window_samples_for(self.window)


class TranskunModel(Model):
    """The model takes `network` over: it is moved, cast and (with `quantize`) quantised in place."""

    def __init__(self, network: TranskunNetwork, options: TranskunOptions | None = None) -> None:
        self.options = options or TranskunOptions()
        self.spec = transkun_spec(self.options.window_samples)
        if self.spec.window_s < self.spec.commit_margin_s + self.spec.min_hop_s:
            raise ConfigError(f"window = {self.spec.window_s:.2f} s leaves no room for a commit region")
        self.device = _device(self.options.device)
        self.dtype = DTYPES[self.options.dtype]
        self.max_batch = self.options.max_batch or DEFAULT_MAX_BATCH.get(self.device.type, 1)
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        network = network.eval().requires_grad_(False)
        network.to(self.device)
        # The front end stays float32 (FFT, log); the rest runs in the chosen dtype.
        for part in (network.backbone, network.scorer, network.velocity, network.refine):
            part.to(self.dtype)
        if self.options.quantize:
            network = _quantized(network, self.device)
        self.network = network
        self.last_frame = frame_count(self.spec.window_samples) - 1

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        results: list[list[WindowNote]] = []
        for first in range(0, len(batch), self.max_batch):
            results.extend(self._transcribe(batch[first : first + self.max_batch]))
        return results

    @torch.inference_mode()
    def _transcribe(self, batch: Sequence[Window]) -> list[list[WindowNote]]:
        audio = to_device(np.stack([self._window_audio(r.audio) for r in batch]), self.device)
        context = self.network(audio)  # (windows, tracks, frames, size)
        windows, tracks, frames, _ = context.shape
        products, single = self.network.scorer(context)
        # Chains are (window, track) pairs, searched in float32 whatever the network's dtype.
        choice, taken = best_intervals(
            products.flatten(0, 1).float(), single.flatten(0, 1).float(), self.network.scorer.scale
        )
        del products
        found = [
            Interval(chain // tracks, chain % tracks, begin, end)
            for chain in range(windows * tracks)
            for begin, end in trace(choice, taken, chain)
        ]
        if not found:
            return [[] for _ in batch]
        velocity, shift, present = self._attributes(context, found)
        per_window: list[list[int]] = [[] for _ in batch]
        for i, it in enumerate(found):
            per_window[it.window].append(i)
        return [
            window_notes([found[i] for i in rows], velocity[rows], shift[rows], present[rows], frames - 1)
            for rows in per_window
        ]

    def _attributes(self, context: torch.Tensor, found: Sequence[Interval]) -> tuple[np.ndarray, ...]:
        index = torch.tensor([(it.window, it.track, it.begin, it.end) for it in found], device=self.device)
        window, track = index[:, 0], index[:, 1]
        velocity_logits, refine_logits = self.network.attributes(
            context[window, track, index[:, 2]], context[window, track, index[:, 3]]
        )
        shift, present = refinement(refine_logits.float())
        velocity = velocity_logits.argmax(dim=-1)
        return tuple(to_host(t).numpy() for t in (velocity, shift, present))

    def _window_audio(self, audio: np.ndarray) -> np.ndarray:
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        size = self.spec.window_samples
        if samples.size > size:
            raise ValueError(f"window of {samples.size} samples; this model's windows hold {size}")
        return np.pad(samples, (0, size - samples.size))

    def close(self) -> None:
        del self.network
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def build_model(options: Mapping[str, object]) -> TranskunModel:
    """Build `transkun` from its `[model]` options, loading the wheel's checkpoint (or the one they name)."""
    parsed = TranskunOptions.parse(options)
    return TranskunModel(load_network(Path(parsed.checkpoint) if parsed.checkpoint else None), parsed)


def load_network(checkpoint: Path | None = None) -> TranskunNetwork:
    """The network with a checkpoint's weights, strictly checked (default: the transkun wheel's 2.0.pt)."""
    path = (checkpoint or package_checkpoint()).expanduser()
    config = read_conf(conf_path(path))
    network = TranskunNetwork(config)
    load_weights(network, read_state_dict(path))
    return network


def _quantized(network: TranskunNetwork, device: torch.device) -> TranskunNetwork:
    """Dynamic int8 for the transformer layers' linear maps (most of the compute). Quantising the position
    embeddings, the scorer or the heads as well loses almost every note (measured)."""
    if device.type != "cpu":
        raise ConfigError("quantize = true is for the CPU (dynamic int8); on CUDA use dtype = bfloat16")
    layers = network.backbone.layers
    network.backbone.layers = torch.ao.quantization.quantize_dynamic(layers, {torch.nn.Linear}, dtype=torch.qint8)
    return network


def _device(value: str) -> torch.device:
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(value)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {value!r} but CUDA is not available")
    return device
