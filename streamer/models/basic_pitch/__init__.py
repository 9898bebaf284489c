"""Spotify basic-pitch (ICASSP 2022), the embedded default model: weights from the basic-pitch wheel's ONNX file,
run as our own streaming numpy network (or, with `streaming = false`, the ONNX file itself on 2 s windows)."""

from streamer.models.basic_pitch.factory import BasicPitchOptions, build_model
from streamer.models.basic_pitch.model import BasicPitch

__all__ = ["BasicPitch", "BasicPitchOptions", "build_model"]
