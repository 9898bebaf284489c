"""basic-pitch from its `[model]` options (configs/basic-pitch.toml): streaming (the default) or windowed (ONNX)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from streamer.config import convert_options
from streamer.models.base import Model, ModelSpec
from streamer.models.basic_pitch.incremental import StreamingConfig
from streamer.models.basic_pitch.model import FRAME_SECONDS, SPEC, BasicPitch
from streamer.models.basic_pitch.note_tracker import DEFAULT_CONFIRM_FRAMES, TrackerConfig
from streamer.models.basic_pitch.posteriors import NoteRules

MS_PER_S = 1000.0
Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Frames = Annotated[int, msgspec.Meta(ge=0)]


class BasicPitchOptions(msgspec.Struct, forbid_unknown_fields=True):
    """The `[model]` table of configs/basic-pitch.toml (docs/models.md); unknown keys are a config_error."""

    streaming: bool = True  # our numpy network, block by block; false: the shipped ONNX file on 2 s windows
    onset_threshold: Probability = 0.5
    frame_threshold: Probability = 0.3
    minimum_note_length_ms: Annotated[float, msgspec.Meta(ge=0.0)] = 127.70
    # Off: on the accuracy set it costs onset F1 (-1.3 streaming), and its notes are settled a note's length late.
    melodia_trick: bool = False
    infer_onsets: bool = True
    # Streaming only (docs/latency.md): frames of audio after a frame before it is final (197 ms), conv taps kept
    # ahead, low-pass taps kept ahead, the normalisation span, frames per block, and frames a note must have sounded
    # past its onset before it is committed.
    lookahead_frames: Annotated[int, msgspec.Meta(ge=1, le=64)] = 17
    conv_future: Annotated[int, msgspec.Meta(ge=0, le=3)] = 2
    filter_future: Annotated[int, msgspec.Meta(ge=0, le=128)] = 8
    norm_frames: Annotated[int, msgspec.Meta(ge=1)] = 86
    block_frames: Annotated[int, msgspec.Meta(ge=1, le=43)] = 2
    confirm_frames: Frames = DEFAULT_CONFIRM_FRAMES
    max_batch: Frames = 0  # streams per network call; 0: the model's default
    threads: Frames = 0  # windowed: onnxruntime intra-op threads; 0: its default


def build_spec(options: dict[str, Any]) -> ModelSpec:
    """The spec of the model `build_model(options)` builds, without loading weights (for front ends whose models
    run in replicas elsewhere)."""
    parsed = _parse(options)
    if not parsed.streaming:
        return SPEC
    from streamer.models.basic_pitch.streaming_model import streaming_spec

    return streaming_spec(_streaming_configs(parsed)[0])


def build_model(options: dict[str, Any]) -> Model:
    parsed = _parse(options)
    if not parsed.streaming:
        rules = NoteRules(
            onset_threshold=parsed.onset_threshold,
            frame_threshold=parsed.frame_threshold,
            min_note_frames=_min_note_frames(parsed),
            infer_onsets=parsed.infer_onsets,
            melodia_trick=parsed.melodia_trick,
        )
        return BasicPitch(rules, threads=parsed.threads)
    from streamer.models.basic_pitch.streaming_model import build_streaming

    network, tracker = _streaming_configs(parsed)
    return build_streaming(network, tracker, parsed.max_batch)


def _parse(options: dict[str, Any]) -> BasicPitchOptions:
    parsed: BasicPitchOptions = convert_options(options, BasicPitchOptions, "[model] options for basic-pitch")
    return parsed


def _min_note_frames(parsed: BasicPitchOptions) -> int:
    return round(parsed.minimum_note_length_ms / MS_PER_S / FRAME_SECONDS)


def _streaming_configs(parsed: BasicPitchOptions) -> tuple[StreamingConfig, TrackerConfig]:
    try:
        network = StreamingConfig(
            lookahead_frames=parsed.lookahead_frames,
            conv_future=parsed.conv_future,
            filter_future=parsed.filter_future,
            norm_frames=parsed.norm_frames,
            block_frames=parsed.block_frames,
        )
        tracker = TrackerConfig(
            onset_threshold=parsed.onset_threshold,
            frame_threshold=parsed.frame_threshold,
            min_note_frames=_min_note_frames(parsed),
            confirm_frames=parsed.confirm_frames,
            infer_onsets=parsed.infer_onsets,
            melodia_trick=parsed.melodia_trick,
        )
    except ValueError as e:
        from streamer.errors import ConfigError

        raise ConfigError(f"invalid [model] options for basic-pitch: {e}") from None
    return network, tracker
