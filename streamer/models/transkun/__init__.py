"""Transkun v2 (Yan & Duan, ISMIR 2024), the piano model: notes with velocity, sustain and soft pedal.

Stages, one file each: spec (constants, windowing) → frontend (normalised multi-window log-mel) → network
(axial transformer, interval scores, attribute heads) → decoding (semi-CRF best intervals → notes and pedals);
checkpoints loads the `transkun` wheel's weights strictly; model puts them behind `Model`.
"""

from streamer.models.transkun.model import TranskunModel, TranskunOptions, build_model, load_network

__all__ = ["TranskunModel", "TranskunOptions", "build_model", "load_network"]
