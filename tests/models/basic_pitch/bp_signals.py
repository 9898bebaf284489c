"""Audio for the basic-pitch network tests, at the model's 22,050 Hz: synthesized notes with noise, and a piano
rendered by FluidSynth when it is installed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from streamer.audio.resample import resample
from streamer.audio.test_signals import melody, random_piece, render
from streamer.models.basic_pitch.cqt import SAMPLE_RATE

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def synth(seconds: float, seed: int, noise_db: float = -40.0) -> np.ndarray:
    """Three random voices of sine notes plus white noise `noise_db` below full scale."""
    audio = render(random_piece(seconds, seed=seed, polyphony=3), SAMPLE_RATE, seconds)
    rng = np.random.default_rng(seed)
    return (audio + 10 ** (noise_db / 20) * rng.standard_normal(len(audio))).astype(np.float32)


def piano(seconds: float) -> np.ndarray:
    """The test melody played by FluidSynth's General MIDI piano; skips the test without FluidSynth."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        pytest.skip("needs fluidsynth and the FluidR3_GM SoundFont")
    from benchmarks.evalset import RATE, render_midi
    from streamer.sinks.midi_file import notes_to_midi

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "melody.mid"
        notes_to_midi(melody()).save(str(path))
        audio = render_midi(path, seconds)
    return resample(audio, RATE, SAMPLE_RATE)
