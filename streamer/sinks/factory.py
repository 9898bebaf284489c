"""Which sinks a session gets, from configuration: a MIDI port (server or client side) and a MIDI file folder."""

from __future__ import annotations

from streamer.config import MidiConfig
from streamer.sinks.base import EventSink


class SessionSinks:
    """Server side: opens each new session's sinks; owns the shared MIDI port for the server's lifetime.

    The port is opened in the constructor, so a missing MIDI backend fails at start-up with a clear message."""

    def __init__(self, config: MidiConfig) -> None:
        self.config = config
        self._ports = None
        if config.files_dir and "notesequence" in config.files_formats:
            from streamer.sinks.notesequence import music_pb2

            music_pb2()  # fail at start-up, with how to install it, rather than at the first session's end
        if config.port:
            from streamer.sinks.midi_port import MidiPortManager

            self._ports = MidiPortManager(config.port, config.backend, per_session=config.per_session)

    @property
    def active(self) -> bool:
        return self._ports is not None or bool(self.config.files_dir)

    def open_session(self, session_id: str) -> list[EventSink]:
        sinks: list[EventSink] = []
        if self._ports is not None:
            sinks.append(self._ports.open_session(session_id))
        if self.config.files_dir and "midi" in self.config.files_formats:
            from streamer.sinks.midi_file import MidiFileSink

            sinks.append(MidiFileSink(session_id, self.config.files_dir))
        if self.config.files_dir and "notesequence" in self.config.files_formats:
            from streamer.sinks.notesequence import NoteSequenceFileSink

            sinks.append(NoteSequenceFileSink(session_id, self.config.files_dir))
        return sinks

    @property
    def midi_dropped(self) -> int:
        """MIDI messages that never reached the MIDI system (counted by the ports)."""
        return self._ports.dropped if self._ports is not None else 0

    def close(self) -> None:
        """Server shutdown: note-offs and All Notes Off for anything still sounding, then the ports."""
        if self._ports is not None:
            self._ports.close()


def client_sinks(port: str | None, backend: str = "auto") -> list[EventSink]:
    """Client side (`streamer stream --midi-port`): the same port sink, on the musician's machine."""
    if not port:
        return []
    from streamer.sinks.midi_port import MidiPort

    return [MidiPort(port, backend).sink("client", close_port=True)]
