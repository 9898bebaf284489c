"""Spotify basic-pitch (ICASSP 2022), the embedded default model: ONNX weights from the basic-pitch wheel."""

from streamer.models.basic_pitch.model import BasicPitch, build_model

__all__ = ["BasicPitch", "build_model"]
