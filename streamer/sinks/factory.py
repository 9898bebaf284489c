"""Which sinks a session gets, from configuration: a MIDI port (server or client side) and a MIDI file folder."""

from __future__ import annotations

from collections.abc import Callable

from streamer.config import MidiConfig
from streamer.sinks.base import EventSink


def sink_factory(config: MidiConfig) -> Callable[[str], list[EventSink]] | None:
    """Server side: a function giving each new session its sinks, or None when no sink is configured.

    The MIDI port is opened here, once, so a missing backend fails at start-up with a clear message."""
    if not config.port and not config.files_dir:
        return None
    manager = None
    if config.port:
        from streamer.sinks.midi_port import MidiPortManager

        manager = MidiPortManager(config.port, config.backend, per_session=config.per_session)

    def open_sinks(session_id: str) -> list[EventSink]:
        sinks: list[EventSink] = []
        if manager is not None:
            sinks.append(manager.open_session(session_id))
        if config.files_dir:
            from streamer.sinks.midi_file import MidiFileSink

            sinks.append(MidiFileSink(session_id, config.files_dir))
        return sinks

    open_sinks.close = manager.close if manager is not None else (lambda: None)  # type: ignore[attr-defined]
    return open_sinks


def client_sinks(port: str | None, backend: str = "auto") -> list[EventSink]:
    """Client side (`streamer stream --midi-port`): the same port sink, on the musician's machine."""
    if not port:
        return []
    from streamer.sinks.midi_port import MidiPort

    return [MidiPort(port, backend).sink("client", close_port=True)]
