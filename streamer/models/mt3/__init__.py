"""MT3-PyTorch and MR-MT3 (reference: ../shared/reference/mt3-family.md).

Stages, one file each: spec (constants) → frontend (log-mel) → t5 (network) → decoding (batched greedy with a
KV cache) → codec/vocab (tokens ↔ notes); checkpoints loads weights; model puts them behind `Model`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.models.mt3.model import MT3Model, MT3Options, build_model, build_model_from_state_dict

__all__ = ["MT3Model", "MT3Options", "build_model", "build_model_from_state_dict"]


def __getattr__(name: str) -> Any:
    """The model module (and torch) load on first use, so that importing `streamer.models.mt3.spec` stays cheap: a
    front end whose models run in replicas elsewhere reads only the spec (streamer/replicas/)."""
    if name in __all__:
        return getattr(importlib.import_module("streamer.models.mt3.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
