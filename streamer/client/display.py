"""Committed events as one line of text each, for the command line and the example clients."""

from __future__ import annotations

from streamer import protocol as p

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PEDALS = {64: "sustain", 67: "soft"}


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def format_event(event: p.NoteEvent) -> str:
    if isinstance(event, p.NoteOn):
        kind = "drum" if event.is_drum else f"prog {event.program}"
        return (
            f"{event.time:9.3f}s  note_on  #{event.id:<5d} {note_name(event.pitch):>4} ({event.pitch:3d})"
            f"  vel {event.velocity:3d}  {kind}"
        )
    if isinstance(event, p.Control):
        pedal = PEDALS.get(event.control, f"cc{event.control}")
        return f"{event.time:9.3f}s  {pedal} pedal {'down' if event.value else 'up'}"
    return f"{event.time:9.3f}s  note_off #{event.id}"
