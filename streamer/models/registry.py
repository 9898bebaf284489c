"""Model names → loaders. Heavy imports (torch for MT3) happen only when that model is loaded."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from streamer.errors import UnknownModel
from streamer.models.base import Model, ModelSpec


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    loader: str  # "module:function"; the function takes (options) or (name, options) when `named`
    named: bool
    # "module:function" giving the loaded model's ModelSpec from the same arguments, without loading weights or
    # importing torch: front ends whose models run in replicas elsewhere (streamer/replicas/) need only the spec.
    spec: str


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            "basic-pitch",
            "streamer.models.basic_pitch:build_model",
            named=False,
            spec="streamer.models.basic_pitch.factory:build_spec",
        ),
        ModelEntry(
            "mt3-pytorch",
            "streamer.models.mt3:build_model",
            named=True,
            spec="streamer.models.mt3.spec:model_spec",
        ),
        ModelEntry(
            "mr-mt3",
            "streamer.models.mt3:build_model",
            named=True,
            spec="streamer.models.mt3.spec:model_spec",
        ),
        ModelEntry(
            "transkun",
            "streamer.models.transkun:build_model",
            named=False,
            spec="streamer.models.transkun.spec:model_spec",
        ),
    )
}


def load_model(name: str, options: dict[str, Any]) -> Model:
    entry = _entry(name)
    build = _function(entry.loader)
    return build(name, options) if entry.named else build(options)  # type: ignore[no-any-return]


def model_spec(name: str, options: dict[str, Any]) -> ModelSpec:
    """What `load_model(name, options).spec` would be, cheaply: no weights read, no torch imported."""
    entry = _entry(name)
    describe = _function(entry.spec)
    return describe(name, options) if entry.named else describe(options)  # type: ignore[no-any-return]


def _entry(name: str) -> ModelEntry:
    entry = MODELS.get(name)
    if entry is None:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return entry


def _function(path: str) -> Any:
    module_name, function_name = path.split(":")
    return getattr(importlib.import_module(module_name), function_name)
