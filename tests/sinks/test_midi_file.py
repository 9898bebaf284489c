"""Session MIDI files: events → file → parsed back with mido, times exact to the tick over hours."""

from __future__ import annotations

import io
import random

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.notes import Note
from streamer.protocol import NoteOff, NoteOn
from streamer.sinks.midi_file import (
    TICKS_PER_BEAT,
    TICKS_PER_SECOND,
    MidiFileSink,
    events_to_midi,
    midi_bytes,
    notes_to_events,
    notes_to_midi,
    read_notes,
)

HALF_TICK = 0.5 / TICKS_PER_SECOND + 1e-9

MELODY = [
    NoteOn(0, 0.0, 60, 90, 0, False),
    NoteOn(1, 0.0, 36, 100, 0, True),
    NoteOff(1, 0.1),
    NoteOn(2, 0.25, 43, 80, 33, False),
    NoteOff(0, 0.5),
    NoteOn(3, 0.5, 62, 70, 0, False),
    NoteOff(2, 0.75),
    NoteOff(3, 1.0),
]


def assert_same_notes(got: list[Note], want: list[Note]) -> None:
    assert len(got) == len(want)

    def key(note: Note) -> tuple:
        # On the tick grid, so notes a fraction of a tick apart sort alike before and after the file.
        return (round(note.onset * TICKS_PER_SECOND), note.pitch, note.program, note.is_drum, note.velocity)

    for g, w in zip(sorted(got, key=key), sorted(want, key=key), strict=True):
        assert (g.pitch, g.velocity, g.program, g.is_drum) == (w.pitch, w.velocity, w.program, w.is_drum)
        assert abs(g.onset - w.onset) <= HALF_TICK
        assert abs(g.offset - w.offset) <= HALF_TICK


def test_melody_file_has_a_track_per_instrument_and_reads_back():
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes(events_to_midi(MELODY))))
    assert (midi.type, midi.ticks_per_beat) == (1, TICKS_PER_BEAT)
    names = [track.name for track in midi.tracks]
    assert names == ["", "Piano (program 0)", "Bass (program 33)", "Drums"]
    piano = [m for m in midi.tracks[1] if not m.is_meta]
    assert piano == [
        mido.Message("program_change", channel=0, program=0, time=0),
        mido.Message("note_on", channel=0, note=60, velocity=90, time=0),
        mido.Message("note_off", channel=0, note=60, time=960),
        mido.Message("note_on", channel=0, note=62, velocity=70, time=0),
        mido.Message("note_off", channel=0, note=62, time=960),
    ]
    assert [m.channel for m in midi.tracks[3] if not m.is_meta] == [9, 9]
    assert_same_notes(
        read_notes(midi),
        [
            Note(0.0, 0.5, 60, 90, 0),
            Note(0.0, 0.1, 36, 100, 0, is_drum=True),
            Note(0.25, 0.75, 43, 80, 33),
            Note(0.5, 1.0, 62, 70, 0),
        ],
    )


def test_hours_of_events_come_back_within_half_a_tick():
    rng = random.Random(5)
    notes, t = [], 0.0
    while t < 3 * 3600:
        t += rng.uniform(0.05, 1.8)  # awkward float times that no tick grid divides
        program = rng.choice([0, 25, 33, 48])
        notes.append(Note(t, t + rng.uniform(0.01, 2.0), rng.randint(40, 90), rng.randint(1, 127), program))
        if rng.random() < 0.3:
            notes.append(Note(t, t + 0.05, rng.choice([36, 38, 42]), 100, 0, is_drum=True))
    # Same-key overlaps are retriggered on the wire; keep the reference free of them so times compare 1:1.
    kept, busy_until = [], {}
    for note in notes:
        if busy_until.get(note.key, -1.0) <= note.onset:
            kept.append(note)
            busy_until[note.key] = note.offset
    data = midi_bytes(notes_to_midi(kept))
    back = read_notes(data)
    assert_same_notes(back, kept)
    assert mido.MidiFile(file=io.BytesIO(data)).length == pytest.approx(max(n.offset for n in kept), abs=HALF_TICK)


@st.composite
def note_lists(draw: st.DrawFn) -> list[Note]:
    notes: list[Note] = []
    for _ in range(draw(st.integers(0, 40))):
        onset = draw(st.floats(0, 36_000, allow_nan=False))
        duration = draw(st.sampled_from([0.0, 1 / TICKS_PER_SECOND, 0.1]) | st.floats(0, 30))
        drum = draw(st.booleans())
        note = Note(
            onset,
            onset + duration,
            draw(st.integers(0, 127)),
            draw(st.integers(1, 127)),
            0 if drum else draw(st.integers(0, 127)),
            drum,
        )
        # Notes on one key of one instrument must not overlap (those are retriggered, see test_midi_render).
        if all(other.key != note.key or other.offset < onset or note.offset < other.onset for other in notes):
            notes.append(note)
    return notes


@settings(max_examples=150, deadline=None)
@given(note_lists())
def test_any_notes_round_trip(notes):
    programs = {n.program for n in notes if not n.is_drum}
    if len(programs) > 15:
        return  # more instruments than channels share channels over time; covered in test_midi_render
    assert_same_notes(read_notes(midi_bytes(notes_to_midi(notes))), notes)


def test_notes_to_events_ends_a_repeated_key_before_it_starts_again():
    events = notes_to_events([Note(1.0, 2.0, 60), Note(0.0, 1.0, 60), Note(1.0, 1.0, 64)])
    assert [(type(e).__name__, e.id, e.time) for e in events] == [
        ("NoteOn", 0, 0.0),
        ("NoteOff", 0, 1.0),
        ("NoteOn", 1, 1.0),
        ("NoteOn", 2, 1.0),
        ("NoteOff", 1, 1.0),
        ("NoteOff", 2, 2.0),
    ]


def test_sink_writes_the_session_file_and_returns_the_same_bytes(tmp_path):
    sink = MidiFileSink("3f2a-session", tmp_path / "midi")
    sink.send(MELODY[:4])
    sink.send(MELODY[4:])
    with pytest.raises(RuntimeError):
        sink.to_bytes()
    sink.close()
    sink.close()
    assert sink.path == tmp_path / "midi" / "3f2a-session.mid"
    assert sink.path.read_bytes() == sink.to_bytes()
    assert [n.pitch for n in read_notes(sink.path)] == [36, 60, 43, 62]
    assert list((tmp_path / "midi").iterdir()) == [sink.path]


def test_abrupt_end_closes_sounding_notes_at_the_session_end(tmp_path):
    sink = MidiFileSink("s", None)
    sink.send([NoteOn(0, 1.0, 60, 100, 0, False), NoteOn(1, 2.0, 64, 100, 0, False), NoteOff(0, 3.0)])
    sink.close(end_time=10.0)
    assert sink.path is None
    assert read_notes(sink.to_bytes()) == [Note(1.0, 3.0, 60), Note(2.0, 10.0, 64)]
    assert mido.MidiFile(file=io.BytesIO(sink.to_bytes())).length == pytest.approx(10.0)


def test_a_session_id_cannot_escape_the_folder(tmp_path):
    sink = MidiFileSink("../../etc/evil", tmp_path)
    sink.close()
    assert sink.path is not None and sink.path.parent == tmp_path
