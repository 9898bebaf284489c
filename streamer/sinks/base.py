"""The interface of an event sink: it receives a session's committed events in order, then is closed once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from streamer.protocol import NoteEvent


class EventSink(Protocol):
    def send(self, events: Sequence[NoteEvent]) -> None:
        """Deliver committed events (times non-decreasing, every note_on later matched by its note_off)."""

    def close(self) -> None:
        """End of session (normal, error, disconnect or shutdown): release every sounding note and resources."""
