"""Commit policy across overlapping windows: each instant of the stream is decided by exactly one window.

Window k (start s, length W) is trusted on its commit region [h, s + W − margin), where h is the end of the region
committed before it (the horizon). Regions tile the stream, so every onset and offset is decided once: no
duplicates, nothing lost at boundaries. A note sounding at the horizon continues if the new window also sees it
sounding there; otherwise it ends at the horizon. Committed events are final, in time order, and every note_on
gets one note_off (at `close` at the latest). Pedals (window notes with a `control`) are stitched the same way and
committed as `control` events, pressed (127) then released (0). See docs/stitching.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from streamer.notes import Note, NoteKey, WindowNote
from streamer.protocol import Control, NoteEvent, NoteOff, NoteOn

NS_PER_S = 1_000_000_000
FAR_FUTURE = 1 << 62


PRESSED = 127
RELEASED = 0


@dataclass(slots=True)
class _Sounding:
    event: NoteOn | Control
    seen_as: WindowNote | None  # the current window's view of this note, once matched


@dataclass(frozen=True, slots=True)
class _Edge:
    time: int
    is_onset: bool
    note: WindowNote


class Stitcher:
    """Turns per-window notes into committed note events on the session clock (seconds)."""

    def __init__(self, continuation_tolerance: float = 0.0) -> None:
        # Frame models place the same onset a frame or two apart in different windows. Within this tolerance of
        # the horizon, a window's onset just after it continues a note already sounding there, and a new onset
        # just before it (that the previous window placed just after its region) still starts, at the horizon.
        self.tolerance = _ns(continuation_tolerance)
        # Times are compared as integer nanoseconds: two windows computing the same instant from different starts
        # must agree on which side of a region boundary it lies, which float sums do not guarantee.
        self._horizon = 0
        self._sounding: dict[NoteKey, _Sounding] = {}
        self._last_onset: dict[NoteKey, int] = {}
        self._next_id = 1
        self.notes_committed = 0

    def commit(self, window_start: float, notes: Sequence[WindowNote], until: float) -> list[NoteEvent]:
        """Commit what the window starting at `window_start` saw in [horizon, until)."""
        h, start, end = self._horizon, _ns(window_start), _ns(until)
        if end <= h:
            return []
        events: list[NoteEvent] = []
        edges: list[_Edge] = []
        claimed: set[int] = set()
        for key, sounding in list(self._sounding.items()):
            sounding.seen_as = self._find_continuation(key, notes, start, h, claimed)
            if sounding.seen_as is None:
                events.append(self._end(key, h))
        for i, note in enumerate(notes):
            onset, offset = _span(start, note)
            if i in claimed:
                if offset < end:
                    edges.append(_Edge(max(offset, h), False, note))
            elif h - self.tolerance <= onset < end and not self._already_started(note.key, onset):
                # An onset just before the horizon that the previous window placed just after its region end
                # (jitter) would otherwise fall between two regions: it starts at the horizon.
                t = max(onset, h)
                edges.append(_Edge(t, True, note))
                if offset < end:
                    edges.append(_Edge(max(offset, t), False, note))
        # Offsets before onsets at the same instant: a repeated note ends before it starts again.
        edges.sort(key=lambda e: (e.time, e.is_onset))
        for edge in edges:
            key = edge.note.key
            current = self._sounding.get(key)
            if edge.is_onset:
                if current is not None:
                    events.append(self._end(key, edge.time))
                events.append(self._begin(edge.note, edge.time))
            elif current is not None and current.seen_as is edge.note:
                events.append(self._end(key, edge.time))
        self._horizon = end
        return events

    def close(self, end: float) -> list[NoteEvent]:
        """End of stream: every sounding note ends at `end` (or at the horizon, if that is later)."""
        t = max(_ns(end), self._horizon)
        events = [self._end(key, t) for key in list(self._sounding)]
        self._horizon = t
        return events

    def _find_continuation(
        self, key: NoteKey, notes: Sequence[WindowNote], start: int, h: int, claimed: set[int]
    ) -> WindowNote | None:
        for i, note in enumerate(notes):
            if i in claimed or note.key != key:
                continue
            onset, offset = _span(start, note)
            # An onset exactly at the horizon is a new note (the old one ended there), not a continuation.
            if onset < h + self.tolerance and offset > h:
                claimed.add(i)
                return note
        return None

    def _already_started(self, key: NoteKey, onset: int) -> bool:
        """Whether this onset is one a previous window already committed (within the tolerance)."""
        last = self._last_onset.get(key)
        return last is not None and self.tolerance > 0 and abs(onset - last) <= self.tolerance

    def _begin(self, note: WindowNote, t: int) -> NoteOn | Control:
        self._last_onset[note.key] = t
        if note.control is not None:
            pedal = Control(time=t / NS_PER_S, control=note.control, value=PRESSED)
            self._sounding[note.key] = _Sounding(pedal, seen_as=note)
            return pedal
        event = NoteOn(
            id=self._next_id,
            time=t / NS_PER_S,
            pitch=note.pitch,
            velocity=note.velocity,
            program=note.program,
            is_drum=note.is_drum,
        )
        self._next_id += 1
        self._sounding[note.key] = _Sounding(event, seen_as=note)
        return event

    def _end(self, key: NoteKey, t: int) -> NoteOff | Control:
        sounding = self._sounding.pop(key)
        time = max(t / NS_PER_S, sounding.event.time)
        if isinstance(sounding.event, Control):
            return Control(time=time, control=sounding.event.control, value=RELEASED)
        self.notes_committed += 1
        return NoteOff(id=sounding.event.id, time=time)


def _ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


def _span(start: int, note: WindowNote) -> tuple[int, int]:
    """Absolute onset and offset of a window's note. An onset the window did not see (None) is placed at the
    window's start: before the horizon that means "already sounding"; at the very start of a stream (or after a
    gap) it is the earliest time we can give. An offset it did not see is in the far future."""
    onset = start if note.onset is None else start + _ns(note.onset)
    offset = FAR_FUTURE if note.offset is None else start + _ns(note.offset)
    return onset, offset


def events_to_notes(events: Sequence[NoteEvent]) -> list[Note]:
    """Pair note_on/note_off events into complete notes (unclosed notes and control events are left out)."""
    opened: dict[int, NoteOn] = {}
    notes: list[Note] = []
    for event in events:
        if isinstance(event, NoteOn):
            opened[event.id] = event
        elif isinstance(event, NoteOff):
            on = opened.pop(event.id, None)
            if on is not None:
                notes.append(Note(on.time, event.time, on.pitch, on.velocity, on.program, on.is_drum))
    notes.sort(key=lambda n: (n.onset, n.pitch, n.program))
    return notes


def events_to_pedals(events: Sequence[NoteEvent]) -> list[Note]:
    """Pair pressed/released control events into intervals, as `Note`s with `control` set and pitch 0."""
    pressed: dict[int, Control] = {}
    pedals: list[Note] = []
    for event in events:
        if not isinstance(event, Control):
            continue
        if event.value >= PRESSED // 2:
            pressed.setdefault(event.control, event)
        elif (down := pressed.pop(event.control, None)) is not None:
            pedals.append(Note(down.time, event.time, 0, down.value, control=event.control))
    return sorted(pedals, key=lambda n: (n.onset, n.control or 0))
