"""Session MIDI files: committed events (or finished notes) → a standard MIDI file, and back to notes.

Times are exact: each event's absolute time in seconds becomes an absolute tick at one fixed tempo and
resolution, and only then are the differences taken, so rounding never accumulates; every time comes back
within half a tick (about 0.26 ms) however long the session.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterable, Sequence

import mido

from streamer.notes import DRUM_CHANNEL, Note
from streamer.protocol import NoteEvent, NoteOff, NoteOn
from streamer.sinks.midi_render import MidiRenderer
from streamer.sinks.session_file import SessionFile

TICKS_PER_BEAT = 960
TEMPO = 500_000  # microseconds per beat: 120 bpm
TICKS_PER_SECOND = TICKS_PER_BEAT * 1_000_000 / TEMPO  # 1920
MIDI_FILE_SUFFIX = ".mid"

# General MIDI program families (eight programs each), used to name the tracks a DAW shows.
_GM_FAMILIES = (
    "Piano", "Chromatic Percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
    "Reed", "Pipe", "Synth Lead", "Synth Pad", "Synth Effects", "Ethnic", "Percussive", "Sound Effects",
)  # fmt: skip


def seconds_to_ticks(seconds: float) -> int:
    return max(round(seconds * TICKS_PER_SECOND), 0)


def notes_to_events(notes: Iterable[Note]) -> list[NoteEvent]:
    """Finished notes → the committed-event stream a session would have produced (ids by onset order)."""
    ordered = sorted(notes, key=lambda n: (n.onset, n.offset, n.is_drum, n.program, n.pitch))
    timed: list[tuple[float, int, int, NoteEvent]] = []
    for i, note in enumerate(ordered):
        offset = max(note.offset, note.onset)
        # At equal times note-offs go before note-ons, so a repeated key ends before it starts again; only a
        # zero-length note's own note-off must wait until after its note-on.
        timed.append((note.onset, 1, i, NoteOn(i, note.onset, note.pitch, note.velocity, note.program, note.is_drum)))
        timed.append((offset, 0 if offset > note.onset else 2, i, NoteOff(i, offset)))
    return [event for *_, event in sorted(timed, key=lambda t: t[:3])]


class MidiFileBuilder:
    """Accumulates committed events as timed MIDI messages, one track per channel (so per instrument)."""

    def __init__(self) -> None:
        self._renderer = MidiRenderer()
        self._tracks: dict[int, list[tuple[int, mido.Message]]] = {}
        self._last_tick = 0
        self._names: dict[int, str] = {}

    def add(self, events: Sequence[NoteEvent]) -> None:
        for event in events:
            self._put(seconds_to_ticks(event.time), self._renderer.render([event]))

    def _put(self, tick: int, messages: list[mido.Message]) -> None:
        # Committed times never go backwards; clamping to the last tick keeps every delta non-negative even if
        # a caller's times jitter by a rounding error.
        tick = max(tick, self._last_tick)
        self._last_tick = tick
        for message in messages:
            self._tracks.setdefault(message.channel, []).append((tick, message))
            if message.type == "program_change":
                self._names.setdefault(message.channel, _program_name(message.program))

    def finish(self, end_time: float | None = None) -> mido.MidiFile:
        """End every sounding note at `end_time` (default: the last event) and build the file."""
        end = seconds_to_ticks(end_time) if end_time is not None else self._last_tick
        self._put(end, self._renderer.close(all_notes_off=False))
        midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
        conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=TEMPO, time=0)])
        midi.tracks.append(conductor)
        for channel in sorted(self._tracks):
            name = "Drums" if channel == DRUM_CHANNEL else self._names.get(channel, f"Channel {channel + 1}")
            track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
            track.extend(_delta_timed(self._tracks[channel]))
            midi.tracks.append(track)
        # End-of-track at the session's end keeps the file as long as the session, trailing silence included.
        for track in midi.tracks:
            elapsed = sum(message.time for message in track)
            track.append(mido.MetaMessage("end_of_track", time=max(self._last_tick - elapsed, 0)))
        return midi


def _program_name(program: int) -> str:
    return f"{_GM_FAMILIES[program // 8]} (program {program})"


def _delta_timed(timed: list[tuple[int, mido.Message]]) -> list[mido.Message]:
    out, previous = [], 0
    for tick, message in timed:
        out.append(message.copy(time=tick - previous))
        previous = tick
    return out


def events_to_midi(events: Sequence[NoteEvent], end_time: float | None = None) -> mido.MidiFile:
    builder = MidiFileBuilder()
    builder.add(events)
    return builder.finish(end_time)


def notes_to_midi(notes: Iterable[Note]) -> mido.MidiFile:
    return events_to_midi(notes_to_events(notes))


def midi_bytes(midi: mido.MidiFile) -> bytes:
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


class MidiFileSink(SessionFile):
    """The session as a standard MIDI file (`<session id>.mid`); also what `done.midi` carries."""

    suffix = MIDI_FILE_SUFFIX

    def __init__(self, session_id: str, directory: str | os.PathLike[str] | None = None) -> None:
        super().__init__(session_id, directory)
        self._builder = MidiFileBuilder()

    def send(self, events: Sequence[NoteEvent]) -> None:
        if self.data is None:
            self._builder.add(events)

    def build(self, end_time: float | None) -> bytes:
        return midi_bytes(self._builder.finish(end_time))

    def to_bytes(self) -> bytes:
        if self.data is None:
            raise RuntimeError("MidiFileSink.to_bytes() before close()")
        return self.data

    def base64(self) -> str:
        return base64.b64encode(self.to_bytes()).decode("ascii")


def read_notes(source: str | os.PathLike[str] | bytes | mido.MidiFile) -> list[Note]:
    """The notes of any standard MIDI file (tempo changes honoured), sorted by onset then pitch.

    Overlapping notes on one key pair first-in first-out; a note never ended ends at the last event.
    """
    if isinstance(source, mido.MidiFile):
        midi = source
    elif isinstance(source, bytes):
        midi = mido.MidiFile(file=io.BytesIO(source))
    else:
        midi = mido.MidiFile(source)
    clock = _TempoClock(midi.ticks_per_beat)
    programs = [0] * 16
    open_notes: dict[tuple[int, int], list[tuple[float, int, int]]] = {}
    notes: list[Note] = []
    tick = 0
    for message in mido.merge_tracks(midi.tracks):
        tick += message.time
        if message.type == "set_tempo":
            clock.set_tempo(tick, message.tempo)
        elif message.type == "program_change":
            programs[message.channel] = message.program
        elif message.type == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            open_notes.setdefault(key, []).append((clock.seconds(tick), message.velocity, programs[message.channel]))
        elif message.type in ("note_on", "note_off"):
            started = open_notes.get((message.channel, message.note))
            if started:
                notes.append(_note(message.channel, message.note, *started.pop(0), clock.seconds(tick)))
    end = clock.seconds(tick)
    for (channel, pitch), started in open_notes.items():
        notes.extend(_note(channel, pitch, *start, end) for start in started)
    return sorted(notes, key=lambda n: (n.onset, n.pitch, n.program, n.is_drum, n.offset))


def _note(channel: int, pitch: int, onset: float, velocity: int, program: int, offset: float) -> Note:
    is_drum = channel == DRUM_CHANNEL
    return Note(onset, offset, pitch, velocity, 0 if is_drum else program, is_drum)


class _TempoClock:
    """Ticks → seconds under a tempo map, each computed from the last tempo change (no running float sum)."""

    def __init__(self, ticks_per_beat: int) -> None:
        self._ticks_per_beat = ticks_per_beat
        self._tick = 0
        self._seconds = 0.0
        self._tempo = 500_000  # the MIDI default before any set_tempo

    def seconds(self, tick: int) -> float:
        return self._seconds + (tick - self._tick) * self._tempo / (1_000_000 * self._ticks_per_beat)

    def set_tempo(self, tick: int, tempo: int) -> None:
        self._seconds = self.seconds(tick)
        self._tick = tick
        self._tempo = tempo
