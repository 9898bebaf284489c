"""MT3's constants in their own units, and the window spec the server sees.

Every other MT3 module takes its numbers from here (reference §2.1, §3, §4.1, §6.1).
"""

from __future__ import annotations

from collections.abc import Mapping

from streamer.models.base import ModelSpec

SAMPLE_RATE = 16_000  # Hz
HOP_SAMPLES = 128  # one spectrogram frame = 8 ms
FFT_SIZE = 2048  # samples (128 ms STFT frame)
MEL_BANDS = 512
MEL_LO_HZ = 20.0
MEL_HI_HZ = 7600.0  # DDSP compute_logmel's default, which MT3 relies on
FRAMES_PER_WINDOW = 256  # one MT3 segment
WINDOW_SAMPLES = FRAMES_PER_WINDOW * HOP_SAMPLES  # 32768 samples = 2.048 s

MAX_DECODE_TOKENS = 1024  # the training target length

# Windowing for the stitcher (docs/models.md explains the choice).
# Notes in a window's last frames are the least reliable: STFT frames 241..255 partly read the zero
# padding past the window end, and an onset there has almost no audio after it. A 256 ms margin keeps every
# committed note at least 32 frames away from the end; the hop of 512 ms then commits the band
# [1.28 s, 1.792 s) of each window, well after the tie section and a second of context. Four windows per
# 2.048 s also make every fourth window contiguous with the current one, which MR-MT3's memory needs (it
# was trained on contiguous segments).
DEFAULT_HOP_S = 0.512
MIN_HOP_S = 0.256  # each window costs a full autoregressive decode; below this the cost per stream explodes
COMMIT_MARGIN_S = 0.256


DESCRIPTIONS = {
    "mt3-pytorch": "MT3 (Gardner et al. 2022), official weights via kunato/mt3-pytorch; multi-instrument",
    "mr-mt3": "MR-MT3 (Tan et al. 2024): MT3 with a memory of the previous segment's tokens",
}


def model_spec(name: str, options: Mapping[str, object]) -> ModelSpec:
    """The spec of "mt3-pytorch" or "mr-mt3" without loading either (no option changes it): what a front end
    whose models run elsewhere needs."""
    return mt3_spec(name, DESCRIPTIONS.get(name, name))


def mt3_spec(name: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        sample_rate=SAMPLE_RATE,
        window_samples=WINDOW_SAMPLES,
        hop_quantum=HOP_SAMPLES,
        default_hop_s=DEFAULT_HOP_S,
        min_hop_s=MIN_HOP_S,
        commit_margin_s=COMMIT_MARGIN_S,
        description=description,
    )
