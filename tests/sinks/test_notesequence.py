"""NoteSequence export without note-seq's heavy dependencies: transcribe --format notesequence and session files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import soundfile as sf

from streamer.audio.test_signals import melody
from streamer.protocol import Control, NoteOff, NoteOn
from streamer.sinks.notesequence import NoteSequenceFileSink, events_to_notesequence, music_pb2
from tests.piano import PIANO_RATE, piano

ROOT = Path(__file__).resolve().parents[2]


def test_events_become_notes_programs_drums_and_pedals() -> None:
    events = [
        NoteOn(1, 0.5, 60, 80, 0, False),
        NoteOn(2, 0.5, 36, 100, 0, True),
        Control(0.6, 64, 127),
        NoteOff(2, 0.51),
        NoteOn(3, 0.75, 43, 70, 33, False),
        NoteOff(1, 1.0),
        Control(1.2, 64, 0),
    ]
    sequence = events_to_notesequence(events, end_time=2.0)
    notes = sorted((n.pitch, n.start_time, n.end_time, n.velocity, n.program, n.is_drum) for n in sequence.notes)
    assert notes == [(36, 0.5, 0.51, 100, 0, True), (43, 0.75, 2.0, 70, 33, False), (60, 0.5, 1.0, 80, 0, False)]
    assert [(c.time, c.control_number, c.control_value) for c in sequence.control_changes] == [
        (0.6, 64, 127),
        (1.2, 64, 0),
    ]
    assert sequence.total_time == 2.0 and sequence.tempos[0].qpm == 120
    again = music_pb2().NoteSequence.FromString(sequence.SerializeToString())
    assert again == sequence


def test_session_file_sink_writes_a_notesequence(tmp_path: Path) -> None:
    sink = NoteSequenceFileSink("abc", tmp_path)
    sink.send([NoteOn(1, 0.1, 60, 90, 0, False)])
    sink.send([NoteOff(1, 0.4)])
    sink.close(1.0)
    assert sink.path == tmp_path / "abc.notesequence"
    sequence = music_pb2().NoteSequence.FromString(sink.path.read_bytes())
    assert [(round(n.pitch), round(n.start_time, 6), round(n.end_time, 6)) for n in sequence.notes] == [(60, 0.1, 0.4)]


def test_transcribe_writes_a_notesequence(tmp_path: Path) -> None:
    truth = melody()
    wav = tmp_path / "melody.wav"
    sf.write(wav, piano(truth, truth[-1].offset + 1.0), PIANO_RATE, subtype="PCM_16")
    out = tmp_path / "melody.notesequence"
    command = [sys.executable, "-m", "streamer.cli", "transcribe", str(wav), "-o", str(out), "-q",
               "--format", "notesequence"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    sequence = music_pb2().NoteSequence.FromString(out.read_bytes())
    assert {n.pitch for n in truth} <= {n.pitch for n in sequence.notes}
    assert f"{len(sequence.notes)} notes" in run.stderr
