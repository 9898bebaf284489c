"""Model names → loaders. Heavy imports (torch for MT3) happen only when that model is loaded."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from streamer.errors import UnknownModel
from streamer.models.base import Model


@dataclass(frozen=True, slots=True)
class ModelEntry:
    name: str
    loader: str  # "module:function"; the function takes (options) or (name, options) when `named`
    named: bool


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            "basic-pitch",
            "streamer.models.basic_pitch:build_model",
            named=False,
        ),
        ModelEntry(
            "mt3-pytorch",
            "streamer.models.mt3:build_model",
            named=True,
        ),
        ModelEntry(
            "mr-mt3",
            "streamer.models.mt3:build_model",
            named=True,
        ),
        ModelEntry(
            "transkun",
            "streamer.models.transkun:build_model",
            named=False,
        ),
    )
}


def load_model(name: str, options: dict[str, Any]) -> Model:
    entry = MODELS.get(name)
    if entry is None:
        raise UnknownModel(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    module_name, function_name = entry.loader.split(":")
    build = getattr(importlib.import_module(module_name), function_name)
    return build(name, options) if entry.named else build(options)
