"""Transkun v2's constants in their own units, and the window spec the server sees.

The signal constants are those of the released checkpoint's `2.0.conf` (checked against it on load); the windowing
constants are ours, chosen by measurement (docs/models.md, benchmarks/transkun_bench.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from streamer.models.base import ModelSpec
from streamer.notes import SOFT_PEDAL, SUSTAIN_PEDAL

SAMPLE_RATE = 44_100  # Hz
FRAME_HOP = 1024  # samples between frames: 23.2 ms
FFT_SIZE = 4096  # samples per frame (93 ms); frame k is centred on sample k * FRAME_HOP
MEL_BANDS = 229
MEL_LO_HZ = 30.0
MEL_HI_HZ = 8000.0
GAUSSIAN_WINDOWS = 5  # learned Gaussian analysis windows, next to the Hann window: 6 spectra per frame
LOG_FLOOR = 1e-5  # log-mel = log(mel + floor), rescaled so that silence is 0 and 1 is 1/floor
FRAME_S = FRAME_HOP / SAMPLE_RATE

# The output tracks, in the network's order. Each is queried by a code: the MIDI pitch of a key, minus the control
# number of a pedal (the checkpoint's position embedding was trained on these numbers).
PEDALS = (SUSTAIN_PEDAL, SOFT_PEDAL)
LOWEST_KEY, HIGHEST_KEY = 21, 108  # A0 .. C8
TRACK_CODES = tuple(-control for control in PEDALS) + tuple(range(LOWEST_KEY, HIGHEST_KEY + 1))

# Windowing for the stitcher, measured with benchmarks/transkun_bench.py on the rendered piano set (docs/models.md).
# The window is the training segment, 16 s = 705,600 samples (691 frames), exactly: the network is only reliable
# there. Windows a frame longer or shorter already lose notes anywhere in them, and its own 8 s segments lose most of
# its accuracy. Hops are whole frames, so every window's frames sit on one grid of the stream.
WINDOW_SAMPLES = 16 * SAMPLE_RATE
# Onset F1 stays within 0.2 points of Transkun's own whole-file transcription for every hop from 0.5 s to 15.5 s
# and margins down to 5 frames (0.12 s), clean and noisy; 2 frames (0.05 s) lose 0.6 points. Latency is margin to
# margin + hop, plus compute: 0.12–0.63 s at the default hop (a GPU's pace; a 2-core CPU needs ~3.4 s per window).
DEFAULT_HOP_S = 0.5
# Offline, one window per 15 s: onset F1 0.999 on the rendered piano set, as at 0.5 s, at 1/30 of the compute
# (benchmarks/transkun_bench.py, docs/models.md).
OFFLINE_HOP_S = 15.0
MIN_HOP_S = 0.25
COMMIT_MARGIN_S = 5 * FRAME_S
# Overlapping windows place one onset at most 16 ms apart (p99 6 ms, over 126k pairs); a frame (23 ms) absorbs it.
CONTINUATION_TOLERANCE_S = FRAME_S

DESCRIPTION = "Transkun v2 (Yan & Duan, ISMIR 2024): piano notes with velocity, sustain and soft pedal"


def window_samples_for(window_s: float) -> int:
    """The `window` option (seconds; 0: the training segment) in samples."""
    return round(window_s * SAMPLE_RATE) if window_s else WINDOW_SAMPLES


def model_spec(options: Mapping[str, object]) -> ModelSpec:
    """The spec of the model the `[model]` options build, without loading it (only `window` changes it): what a
    front end whose models run in replicas elsewhere needs."""
    window = options.get("window", 0.0)
    return transkun_spec(window_samples_for(float(window) if isinstance(window, int | float) else 0.0))


def transkun_spec(window_samples: int = WINDOW_SAMPLES, name: str = "transkun") -> ModelSpec:
    return ModelSpec(
        name=name,
        sample_rate=SAMPLE_RATE,
        window_samples=window_samples,
        hop_quantum=FRAME_HOP,
        default_hop_s=DEFAULT_HOP_S,
        min_hop_s=MIN_HOP_S,
        commit_margin_s=COMMIT_MARGIN_S,
        offline_hop_s=OFFLINE_HOP_S,
        continuation_tolerance_s=CONTINUATION_TOLERANCE_S,
        description=DESCRIPTION,
    )
