"""Committed events → a Magenta NoteSequence (binary protocol buffer), for users of Magenta's tools.

The NoteSequence message class comes from the `note-seq` package's generated `music_pb2.py`, loaded on its own:
the package's `__init__` imports librosa, numba, scipy and more (about 750 MB), none of which the message needs.
Install it light: `pip install protobuf && pip install --no-deps note-seq` (docs/midi.md).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from streamer.errors import ConfigError
from streamer.notes import DRUM_CHANNEL
from streamer.protocol import Control, NoteEvent, NoteOff, NoteOn
from streamer.sinks.session_file import SessionFile

NOTESEQUENCE_SUFFIX = ".notesequence"
TICKS_PER_QUARTER = 220  # note_seq's STANDARD_PPQ
QPM = 120.0
HOW_TO_INSTALL = "pip install protobuf && pip install --no-deps note-seq"


@functools.cache
def music_pb2() -> ModuleType:
    """note_seq's generated protobuf module, without importing the note_seq package (loaded once)."""
    found = importlib.util.find_spec("note_seq")
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"NoteSequence export needs the note-seq package: {HOW_TO_INSTALL}")
    path = Path(next(iter(found.submodule_search_locations))) / "protobuf" / "music_pb2.py"
    spec = importlib.util.spec_from_file_location("streamer_note_seq_music_pb2", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"note-seq is installed but {path} is missing; reinstall it: {HOW_TO_INSTALL}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise ConfigError(f"NoteSequence export needs protobuf ({e}): {HOW_TO_INSTALL}") from None
    return module


def events_to_notesequence(events: Sequence[NoteEvent], end_time: float | None = None) -> Any:
    """A NoteSequence of the session's notes (programs, drums, velocities) and pedals; notes still sounding end at
    `end_time` (default: the last event)."""
    sequence = music_pb2().NoteSequence()
    sequence.ticks_per_quarter = TICKS_PER_QUARTER
    sequence.tempos.add(time=0.0, qpm=QPM)
    end = max([end_time or 0.0, *(e.time for e in events)])
    opened: dict[int, NoteOn] = {}
    for event in events:
        if isinstance(event, NoteOn):
            opened[event.id] = event
        elif isinstance(event, NoteOff) and event.id in opened:
            _add_note(sequence, opened.pop(event.id), event.time)
        elif isinstance(event, Control):
            change = sequence.control_changes.add()
            change.time, change.control_number, change.control_value = event.time, event.control, event.value
    for on in opened.values():
        _add_note(sequence, on, end)
    sequence.total_time = end
    return sequence


def _add_note(sequence: Any, on: NoteOn, off: float) -> None:
    note = sequence.notes.add()
    note.pitch, note.velocity, note.start_time, note.end_time = on.pitch, on.velocity, on.time, max(off, on.time)
    note.program, note.is_drum = (0, True) if on.is_drum else (on.program, False)
    note.instrument = DRUM_CHANNEL if on.is_drum else on.program


def notesequence_bytes(events: Sequence[NoteEvent], end_time: float | None = None) -> bytes:
    data: bytes = events_to_notesequence(events, end_time).SerializeToString()
    return data


class NoteSequenceFileSink(SessionFile):
    """The session as a binary NoteSequence (`<session id>.notesequence`), next to its MIDI file."""

    suffix = NOTESEQUENCE_SUFFIX

    def __init__(self, session_id: str, directory: str | os.PathLike[str] | None = None) -> None:
        super().__init__(session_id, directory)
        self._events: list[NoteEvent] = []

    def send(self, events: Sequence[NoteEvent]) -> None:
        if self.data is None:
            self._events += events

    def build(self, end_time: float | None) -> bytes:
        return notesequence_bytes(self._events, end_time)
