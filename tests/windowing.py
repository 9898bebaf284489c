"""Test helpers: what a perfect model would report for a window, and invariants of an event stream."""

from __future__ import annotations

from collections.abc import Sequence

from streamer.notes import Note, WindowNote
from streamer.protocol import Control, NoteEvent, NoteOff, NoteOn


def perfect_view(truth: Sequence[Note], start: float, length: float) -> list[WindowNote]:
    """The notes of `truth` as a flawless model sees them in the window [start, start + length)."""
    end = start + length
    seen = []
    for n in truth:
        if n.offset <= start or n.onset >= end:
            continue
        seen.append(
            WindowNote(
                pitch=n.pitch,
                onset=n.onset - start if n.onset >= start else None,
                offset=n.offset - start if n.offset < end else None,
                velocity=n.velocity,
                program=n.program,
                is_drum=n.is_drum,
                control=n.control,
            )
        )
    return seen


def assert_event_invariants(events: Sequence[NoteEvent]) -> None:
    """Times never go backwards; ids are unique; every note_on has exactly one later note_off; every pedal
    pressed is released once, and never pressed twice in a row."""
    last = float("-inf")
    open_ids: dict[int, float] = {}
    closed: set[int] = set()
    pressed: set[int] = set()
    for e in events:
        assert e.time >= last, f"time went backwards at {e}"
        last = e.time
        if isinstance(e, Control):
            if e.value:
                assert e.control not in pressed, f"pedal pressed twice: {e}"
                pressed.add(e.control)
            else:
                assert e.control in pressed, f"pedal released without being pressed: {e}"
                pressed.discard(e.control)
        elif isinstance(e, NoteOn):
            assert e.id not in open_ids and e.id not in closed, f"duplicate id {e.id}"
            open_ids[e.id] = e.time
        else:
            assert isinstance(e, NoteOff)
            assert e.id in open_ids, f"note_off without note_on: {e}"
            assert e.time >= open_ids.pop(e.id)
            closed.add(e.id)
    assert not open_ids, f"note_on without note_off: {sorted(open_ids)}"
    assert not pressed, f"pedals never released: {sorted(pressed)}"


ONSET_TOLERANCE = 0.05


def match(truth: Sequence[Note], got: Sequence[Note]) -> list[tuple[Note, Note | None]]:
    """Pair each true note with a detected note of the same pitch whose onset is within 50 ms (each used once)."""
    free = list(got)
    pairs: list[tuple[Note, Note | None]] = []
    for note in truth:
        hit = next((g for g in free if g.pitch == note.pitch and abs(g.onset - note.onset) <= ONSET_TOLERANCE), None)
        if hit is not None:
            free.remove(hit)
        pairs.append((note, hit))
    return pairs
