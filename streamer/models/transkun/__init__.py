"""Transkun v2 (Yan & Duan, ISMIR 2024), the piano model: notes with velocity, sustain and soft pedal.

Stages, one file each: spec (constants, windowing) → frontend (normalised multi-window log-mel) → network
(axial transformer, interval scores, attribute heads) → decoding (semi-CRF best intervals → notes and pedals);
checkpoints loads the `transkun` wheel's weights strictly; model puts them behind `Model`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.models.transkun.model import TranskunModel, TranskunOptions, build_model, load_network

__all__ = ["TranskunModel", "TranskunOptions", "build_model", "load_network"]


def __getattr__(name: str) -> Any:
    """The model module (and torch) load on first use, so that importing `streamer.models.transkun.spec` stays cheap: a
    front end whose models run in replicas elsewhere reads only the spec (streamer/replicas/)."""
    if name in __all__:
        return getattr(importlib.import_module("streamer.models.transkun.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
