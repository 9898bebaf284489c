"""Audio for the Transkun tests: a short piano phrase with sustain and soft pedal, rendered by FluidSynth at
44.1 kHz (the tests that need it skip without FluidSynth), and the phrase's notes."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import mido
import numpy as np
import pytest

from streamer.notes import SOFT_PEDAL, SUSTAIN_PEDAL, Note

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TICKS_PER_SECOND = 960  # 480 ticks per beat at 120 bpm

# An arpeggio held by the sustain pedal, then a falling phrase under the soft pedal, then a struck chord.
NOTES = [
    *(Note(0.5 + 0.25 * i, 0.7 + 0.25 * i, pitch, 80) for i, pitch in enumerate((48, 52, 55, 60, 64, 67))),
    *(Note(3.4 + 0.4 * i, 3.75 + 0.4 * i, pitch, 40 + 20 * i) for i, pitch in enumerate((72, 71, 69, 67))),
    *(Note(5.2, 5.9, pitch, 90) for pitch in (57, 60, 64)),
]
PEDALS = [(SUSTAIN_PEDAL, 0.3, 2.8), (SOFT_PEDAL, 3.2, 5.0)]
SECONDS = 6.5


def phrase_midi(path: Path) -> None:
    events: list[tuple[float, mido.Message]] = []
    for note in NOTES:
        events.append((note.onset, mido.Message("note_on", note=note.pitch, velocity=note.velocity)))
        events.append((note.offset, mido.Message("note_off", note=note.pitch)))
    for control, down, up in PEDALS:
        events.append((down, mido.Message("control_change", control=control, value=127)))
        events.append((up, mido.Message("control_change", control=control, value=0)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)])
    last = 0
    for seconds, message in sorted(events, key=lambda e: e[0]):
        tick = round(seconds * TICKS_PER_SECOND)
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(path))


def phrase_audio() -> np.ndarray:
    """The phrase at 44.1 kHz, SECONDS long; skips the test without FluidSynth."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.is_file():
        pytest.skip("needs fluidsynth and the FluidR3_GM SoundFont")
    from benchmarks.evalset import render_midi

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phrase.mid"
        phrase_midi(path)
        return render_midi(path, SECONDS)


def placed(audio: np.ndarray, size: int, at: int) -> np.ndarray:
    """`audio` at sample `at` of a silent window of `size` samples."""
    window = np.zeros(size, dtype=np.float32)
    part = audio[: max(0, size - at)]
    window[at : at + len(part)] = part
    return window
