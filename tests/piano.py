"""Test audio as musicians send it: notes rendered with a General MIDI piano by FluidSynth (installed by the test
command), rather than sine tones, whose soft attacks give a model little onset to see."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.evalset import RATE, render_midi
from streamer.notes import Note
from streamer.sinks.midi_file import notes_to_midi

PIANO_RATE = RATE  # 44.1 kHz


def piano(notes: Sequence[Note], seconds: float) -> np.ndarray:
    """Mono float32 audio at PIANO_RATE of `notes` played on FluidSynth's General MIDI piano."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.mid"
        notes_to_midi(notes).save(str(path))
        return render_midi(path, seconds)
