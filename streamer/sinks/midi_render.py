"""Committed note events → MIDI channel messages: the pure core under the live port and the MIDI file.

The discipline a DAW expects: one channel per instrument with a program change before its first note, drums
on channel 10, each key sounding at most once per channel, every note-on matched by a note-off, pedals (control
changes) on the session's piano channel, and at the end note-offs for what still sounds, pedals released, then All
Notes Off on the channels that were used. No I/O, no clock: events
in, `mido.Message`s out, in the order they must be played.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import mido

from streamer.notes import DRUM_CHANNEL
from streamer.protocol import Control, NoteEvent, NoteOn

MELODIC_CHANNELS = tuple(ch for ch in range(16) if ch != DRUM_CHANNEL)
ALL_NOTES_OFF = 123  # controller number (MIDI 1.0 channel mode message)

Key = tuple[int, int]  # (channel, pitch)


@dataclass
class _Channel:
    program: int | None = None  # last program sent on this channel, None before any
    users: set[str] = field(default_factory=set)  # owners (sessions) that have played on it
    last_used: int = 0


class ChannelState:
    """What one MIDI output carries: each channel's program and users, and which keys sound.

    Every renderer playing onto the same output shares one state, so sessions on a shared port get channels of
    their own while any are free, and one session never cuts or silences another's notes.
    """

    def __init__(self) -> None:
        self._channels = [_Channel() for _ in range(16)]
        self.sounding: dict[Key, tuple[str, int]] = {}  # key → (owner, event id) that holds it
        self._clock = 0

    def acquire(self, owner: str, program: int, is_drum: bool) -> tuple[int, bool]:
        """The channel `owner` plays `program` on, and whether a program change must precede the note."""
        self._clock += 1
        channel = DRUM_CHANNEL if is_drum else self._pick(owner, program)
        state = self._channels[channel]
        # A program change on each session's first use of a channel, even one already set to the program: a
        # DAW that began recording after an earlier session's program change would miss the instrument.
        first_use = owner not in state.users
        state.users.add(owner)
        state.last_used = self._clock
        if is_drum or (state.program == program and not first_use):
            return channel, False
        state.program = program
        return channel, True

    def _pick(self, owner: str, program: int) -> int:
        # Preference order: the owner's own channel for this program; the lowest free channel; the owner's
        # least recently used channel, re-programmed; a channel another owner plays this program on; and, with
        # all 15 taken, the least recently used channel.
        channels = [(ch, self._channels[ch]) for ch in MELODIC_CHANNELS]
        own = [(s.last_used, ch) for ch, s in channels if owner in s.users and s.program == program]
        if own:
            return max(own)[1]
        free = [ch for ch, s in channels if not s.users]
        if free:
            return free[0]
        exclusive = [(s.last_used, ch) for ch, s in channels if s.users == {owner}]
        if exclusive:
            return min(exclusive)[1]
        same = [(s.last_used, ch) for ch, s in channels if s.program == program]
        if same:
            return min(same)[1]
        return min((s.last_used, ch) for ch, s in channels)[1]

    def release(self, owner: str) -> list[int]:
        """Forget `owner`; return the channels it used that no other owner uses (safe to silence)."""
        silent = []
        for channel, state in enumerate(self._channels):
            if owner in state.users:
                state.users.discard(owner)
                if not state.users:
                    silent.append(channel)
        return silent


class MidiRenderer:
    """Turns one session's committed events into MIDI messages on a (possibly shared) `ChannelState`."""

    def __init__(self, state: ChannelState | None = None, owner: str = "") -> None:
        self._state = state if state is not None else ChannelState()
        self._owner = owner
        self._keys: dict[int, Key] = {}  # event id → key of this session's notes still sounding
        self._held: dict[tuple[int, int], int] = {}  # (channel, control) → value, for pedals still pressed
        self.closed = False

    def render(self, events: Iterable[NoteEvent]) -> list[mido.Message]:
        if self.closed:
            raise RuntimeError("renderer is closed")
        out: list[mido.Message] = []
        for event in events:
            if isinstance(event, NoteOn):
                self._note_on(event, out)
            elif isinstance(event, Control):
                self._control(event, out)
            else:
                self._note_off(event.id, out)
        return out

    def _control(self, event: Control, out: list[mido.Message]) -> None:
        # Pedals belong to the piano: the channel this session plays program 0 on.
        channel, program_change = self._state.acquire(self._owner, 0, False)
        if program_change:
            out.append(mido.Message("program_change", channel=channel, program=0))
        value = min(max(event.value, 0), 127)
        if value:
            self._held[(channel, event.control)] = value
        else:
            self._held.pop((channel, event.control), None)
        out.append(mido.Message("control_change", channel=channel, control=event.control, value=value))

    def _note_on(self, event: NoteOn, out: list[mido.Message]) -> None:
        if event.id in self._keys:
            return  # a duplicated note_on: playing it twice would leave one note-on unmatched
        channel, program_change = self._state.acquire(self._owner, event.program, event.is_drum)
        if program_change:
            out.append(mido.Message("program_change", channel=channel, program=event.program))
        key = (channel, event.pitch)
        if key in self._state.sounding:
            # The key already sounds (an overlapping note, maybe another session's): end it first so the
            # stream never has two note-ons for one key; the earlier note's note_off then has nothing to end.
            out.append(mido.Message("note_off", channel=channel, note=event.pitch))
        self._state.sounding[key] = (self._owner, event.id)
        self._keys[event.id] = key
        # Velocity 0 would mean note-off on the wire; a committed note is at least audible.
        velocity = min(max(event.velocity, 1), 127)
        out.append(mido.Message("note_on", channel=channel, note=event.pitch, velocity=velocity))

    def _note_off(self, event_id: int, out: list[mido.Message]) -> None:
        key = self._keys.pop(event_id, None)
        if key is None or self._state.sounding.get(key) != (self._owner, event_id):
            return  # unknown, or already ended by a retrigger on the same key
        del self._state.sounding[key]
        out.append(mido.Message("note_off", channel=key[0], note=key[1]))

    def close(self, all_notes_off: bool = True) -> list[mido.Message]:
        """End the session: note-offs for its sounding notes, then All Notes Off on channels only it used."""
        if self.closed:
            return []
        out: list[mido.Message] = []
        for event_id in list(self._keys):
            self._note_off(event_id, out)
        for channel, control in list(self._held):
            out.append(mido.Message("control_change", channel=channel, control=control, value=0))
        self._held.clear()
        self.closed = True
        for channel in self._state.release(self._owner):
            if all_notes_off:
                out.append(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0))
        return out
