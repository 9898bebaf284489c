"""basic-pitch behind the Model interface: batched ONNX inference over 2 s windows at 22.05 kHz."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from streamer.audio.windows import Window
from streamer.errors import CheckpointError
from streamer.models.base import Model, ModelSpec
from streamer.models.basic_pitch.posteriors import NoteRules, window_notes
from streamer.notes import WindowNote

# basic-pitch's native unit (basic_pitch/constants.py): 2 s at 22050 Hz minus one FFT hop, 172 frames of 256.
SAMPLE_RATE = 22050
FFT_HOP = 256
WINDOW_SAMPLES = SAMPLE_RATE * 2 - FFT_HOP
FRAME_SECONDS = FFT_HOP / SAMPLE_RATE
MS_PER_S = 1000.0

ONNX_RELATIVE_PATH = Path("saved_models/icassp_2022/nmp.onnx")
INPUT_NAME = "serving_default_input_2:0"
FRAMES_OUTPUT = "StatefulPartitionedCall:1"
ONSETS_OUTPUT = "StatefulPartitionedCall:2"

SPEC = ModelSpec(
    name="basic-pitch",
    sample_rate=SAMPLE_RATE,
    window_samples=WINDOW_SAMPLES,
    hop_quantum=FFT_HOP,
    default_hop_s=0.5,
    min_hop_s=0.1,
    # basic-pitch itself discards 15 frames (0.17 s) at each window edge; a note's end needs 11 more frames
    # (0.13 s) of low energy to be final. 0.25 s keeps both inside the trusted part of every window.
    commit_margin_s=0.25,
    continuation_tolerance_s=3 * FRAME_SECONDS,
    description="Spotify basic-pitch (ICASSP 2022), polyphonic, one instrument; ONNX on the CPU",
)


def onnx_path() -> Path:
    """The nmp.onnx file inside the installed basic-pitch package (found without importing the package, whose
    __init__ probes for TensorFlow, CoreML and TFLite)."""
    found = importlib.util.find_spec("basic_pitch")
    if found is None or not found.submodule_search_locations:
        raise CheckpointError(
            "the basic-pitch package is not installed; install it without its dependencies: "
            "pip install --no-deps basic-pitch==0.4.0"
        )
    path = Path(next(iter(found.submodule_search_locations))) / ONNX_RELATIVE_PATH
    if not path.is_file():
        raise CheckpointError(f"basic-pitch is installed but {path} is missing; reinstall basic-pitch==0.4.0")
    return path


class BasicPitch(Model):
    spec = SPEC

    def __init__(self, rules: NoteRules | None = None, threads: int = 0) -> None:
        self.rules = rules or NoteRules()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # onnxruntime's CPU arena keeps the peak of every batch shape it has seen (batches of 1–8 windows): about
        # 120 MiB more resident memory and slow growth in long soaks, for no measurable speed gain (~25 ms/window
        # either way on the benchmark machine).
        options.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(str(onnx_path()), options, providers=["CPUExecutionProvider"])

    def posteriors(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch, WINDOW_SAMPLES) float32 → frame and onset posteriors, each (batch, 172, 88)."""
        frames, onsets = self._session.run([FRAMES_OUTPUT, ONSETS_OUTPUT], {INPUT_NAME: audio[:, :, None]})
        return frames, onsets

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        if not batch:
            return []
        audio = np.stack([req.audio for req in batch]).astype(np.float32, copy=False)
        frames, onsets = self.posteriors(audio)
        return [window_notes(frames[i], onsets[i], FRAME_SECONDS, self.rules) for i in range(len(batch))]
