"""Live MIDI out: committed events played on a MIDI output port the moment they are committed.

The port is virtual where the backend can create one (ALSA sequencer or JACK on Linux, CoreMIDI on macOS): a
DAW sees it as a MIDI input and records it. Windows MM has no virtual ports, so there we open an existing port
by name (a loopMIDI port, say). Events are played when committed, not scheduled by their session time: the DAW
records them at arrival, one model hop behind the musician.

One `MidiPortManager` per server (or per client): either one shared port for every session, each session on
channels of its own while any are free, or a port per session. See docs/midi.md.

Bursts are paced. A JACK client's messages go into its ring buffer, and JACK's process callback moves them into the
port's buffer for the current period; what does not fit there is dropped silently (measured: a burst of 3,000
messages lost up to 22 % at periods of 64–256 frames; paced at 8 messages per millisecond, none). So each port has
a writer thread that sends at most `PACE_BURST` messages per `PACE_INTERVAL_S`: a whole window's events (hundreds)
reach the DAW within tens of milliseconds, and never overflow a period. Messages wait in a bounded queue; beyond it
(a MIDI system that stopped taking anything) they are dropped, counted and logged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import mido
import rtmidi

from streamer.errors import ConfigError
from streamer.protocol import NoteEvent
from streamer.sinks.midi_render import ChannelState, MidiRenderer

BACKENDS: dict[str, int] = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "windows-mm": rtmidi.API_WINDOWS_MM,
}
AUTO = "auto"
VIRTUAL_BACKENDS = frozenset({"alsa", "jack", "coremidi"})
# "auto" tries these in order; ALSA before JACK because the ALSA sequencer needs no server running, and a JACK
# setup usually bridges ALSA MIDI anyway (a2jmidid).
AUTO_ORDER = ("coremidi", "alsa", "jack", "windows-mm")
ALSA_SEQUENCER = "/dev/snd/seq"
# JACK delivers queued messages in its next process cycles (a period is typically 1 to 50 ms); closing the client
# sooner loses the final note-offs, so a JACK port is released this long after it closes.
JACK_DRAIN_SECONDS = 0.2
MAX_CLIENT_NAME = 63  # JACK's limit on a client name (jack_client_name_size() - 1); ALSA's is the same
PACE_BURST = 8  # messages sent back to back ...
PACE_INTERVAL_S = 0.001  # ... at most once per this interval
MAX_QUEUED_MESSAGES = 100_000  # a port that stopped taking messages: beyond this, new ones are dropped (counted)
FLUSH_TIMEOUT_S = 2.0  # at close, how long the writer may take to send what is queued

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    name: str
    compiled: bool  # built into this python-rtmidi
    available: bool  # a client could be opened just now
    ports: tuple[str, ...]  # output ports it lists (those a DAW or loopMIDI created)
    error: str | None = None


def _compiled() -> set[str]:
    apis = set(rtmidi.get_compiled_api())
    return {name for name, api in BACKENDS.items() if api in apis}


def _new_client(backend: str, client_name: str) -> rtmidi.MidiOut:
    """An rtmidi output client on `backend`; raises OSError / RtMidiError when the backend is unusable."""
    if backend == "alsa" and not os.path.exists(ALSA_SEQUENCER):
        # Checked first: without the device, ALSA's library prints its own complaint before failing.
        raise OSError(f"{ALSA_SEQUENCER} does not exist (no ALSA sequencer: is the snd-seq module loaded?)")
    return rtmidi.MidiOut(BACKENDS[backend], name=client_name[:MAX_CLIENT_NAME])


def list_backends() -> list[BackendInfo]:
    """Each backend: built in?, usable now?, its output ports (for error messages and the CLI)."""
    compiled = _compiled()
    infos = []
    for name in AUTO_ORDER:
        if name not in compiled:
            infos.append(BackendInfo(name, False, False, ()))
            continue
        try:
            client = _new_client(name, "streamer-probe")
        except (OSError, rtmidi.RtMidiError) as exc:
            infos.append(BackendInfo(name, True, False, (), str(exc).strip()))
            continue
        try:
            infos.append(BackendInfo(name, True, True, tuple(client.get_ports())))
        finally:
            client.delete()
    return infos


def describe_backends(infos: Sequence[BackendInfo]) -> str:
    lines = []
    for info in infos:
        if not info.compiled:
            state = "not built into python-rtmidi on this platform"
        elif not info.available:
            state = f"unavailable: {(info.error or 'unknown error').splitlines()[0]}"
        else:
            state = "available; ports: " + (", ".join(info.ports) or "none")
        lines.append(f"  {info.name}: {state}")
    return "MIDI backends:\n" + "\n".join(lines)


def _candidates(backend: str) -> list[str]:
    if backend != AUTO and backend not in BACKENDS:
        raise ConfigError(f"unknown MIDI backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    compiled = _compiled()
    if backend != AUTO and backend not in compiled:
        raise ConfigError(
            f"MIDI backend {backend!r} is not built into python-rtmidi here\n{describe_backends(list_backends())}"
        )
    return [name for name in AUTO_ORDER if name in compiled] if backend == AUTO else [backend]


def _first_client(backend: str, client_name: str) -> tuple[rtmidi.MidiOut, str]:
    for name in _candidates(backend):
        try:
            return _new_client(name, client_name), name
        except (OSError, rtmidi.RtMidiError):
            continue
    raise ConfigError(f"no usable MIDI backend for {backend!r}\n{describe_backends(list_backends())}")


def resolve_backend(backend: str = AUTO) -> str:
    """The backend `backend` names ("auto": the first in AUTO_ORDER that opens); ConfigError if none."""
    client, name = _first_client(backend, "streamer-probe")
    client.delete()
    return name


def open_output(name: str, backend: str = AUTO) -> tuple[rtmidi.MidiOut, str]:
    """Open the output port `name`: created virtual, or on Windows MM found among existing ports.

    Returns the open rtmidi client and the backend it uses; ConfigError with the backends and their ports when
    it cannot.
    """
    client, resolved = _first_client(backend, name)
    try:
        if resolved in VIRTUAL_BACKENDS:
            client.open_virtual_port(name)
        else:
            client.open_port(_existing_port(client, name))
    except (OSError, rtmidi.RtMidiError) as exc:
        client.delete()
        raise ConfigError(f"cannot open MIDI port {name!r} on {resolved}: {exc}") from exc
    except ConfigError:
        client.delete()
        raise
    return client, resolved


def _existing_port(client: rtmidi.MidiOut, name: str) -> int:
    ports = client.get_ports()
    # Windows MM appends an index to each port name ("streamer 1"), so a prefix names a port too.
    for index, port in enumerate(ports):
        if port == name:
            return index
    for index, port in enumerate(ports):
        if port.startswith(name):
            return index
    raise ConfigError(
        f"no MIDI output port named {name!r} (this backend cannot create ports: create one with loopMIDI "
        f"first); existing ports: {', '.join(ports) or 'none'}"
    )


class PacedWriter:
    """Sends MIDI messages to an rtmidi client from a thread of its own, a few at a time (see the module's note)."""

    def __init__(self, client: rtmidi.MidiOut, name: str) -> None:
        self._client = client
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name=f"midi-{name}", daemon=True)
        self._thread.start()

    def put(self, messages: Sequence[mido.Message]) -> None:
        for message in messages:
            if self._queue.qsize() >= MAX_QUEUED_MESSAGES:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("MIDI port is not taking messages: %d dropped so far", self.dropped)
                continue
            self._queue.put(bytes(message.bytes()))

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Send what is queued (for at most `timeout`), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        burst = 0
        while (message := self._queue.get()) is not None:
            try:
                self._client.send_message(message)
                self.sent += 1
            except (rtmidi.RtMidiError, OSError):
                self.dropped += 1
                log.exception("MIDI send failed")
            burst += 1
            if burst >= PACE_BURST:
                burst = 0
                time.sleep(PACE_INTERVAL_S)


class MidiPort:
    """One open MIDI output and the channel state every session playing on it shares."""

    def __init__(self, name: str, backend: str = AUTO) -> None:
        self.name = name
        self._client, self.backend = open_output(name, backend)
        self._writer = PacedWriter(self._client, name)
        self._state = ChannelState()
        # Sessions may send and close from different threads (event loop, shutdown); one lock keeps each batch
        # of messages whole and the shared channel state consistent.
        self._lock = threading.RLock()
        self._sinks: list[MidiPortSink] = []
        self._release: threading.Timer | None = None
        self.closed = False

    @property
    def dropped(self) -> int:
        """Messages that never reached the MIDI system (its queue overflowed, or a send failed)."""
        return self._writer.dropped

    def sink(self, owner: str, *, close_port: bool = False) -> MidiPortSink:
        """A sink for one session (`owner` must be unique among live sessions on this port)."""
        with self._lock:
            if self.closed:
                raise RuntimeError(f"MIDI port {self.name!r} is closed")
            sink = MidiPortSink(self, MidiRenderer(self._state, owner), close_port)
            self._sinks.append(sink)
            return sink

    def _write(self, messages: Sequence[mido.Message]) -> None:
        self._writer.put(messages)

    def _forget(self, sink: MidiPortSink) -> None:
        self._sinks.remove(sink)

    def close(self) -> None:
        """Close every live session (note-offs, All Notes Off), send what is queued, then close the port."""
        with self._lock:
            if self.closed:
                return
            # Marked first: a per-session sink closing here calls back into close().
            self.closed = True
            for sink in list(self._sinks):
                sink.close()
            self._writer.close()
            if self.backend != "jack":
                self._release_client()
                return
            # A non-daemon timer: the interpreter waits for it at exit, so shutdown still delivers the note-offs.
            self._release = threading.Timer(JACK_DRAIN_SECONDS, self._release_client)
            self._release.start()

    def _release_client(self) -> None:
        self._client.close_port()
        self._client.delete()

    def wait_closed(self, timeout: float | None = None) -> None:
        """After `close()`: wait until the port is gone (JACK releases it once its last messages are out)."""
        if self._release is not None:
            self._release.join(timeout)


class MidiPortSink:
    """An `EventSink` playing one session on a `MidiPort`; get one from `MidiPort.sink` or the manager."""

    def __init__(self, port: MidiPort, renderer: MidiRenderer, close_port: bool) -> None:
        self.port = port
        self._renderer = renderer
        self._close_port = close_port

    def send(self, events: Sequence[NoteEvent]) -> None:
        with self.port._lock:
            if not self._renderer.closed:
                self.port._write(self._renderer.render(events))

    def close(self) -> None:
        with self.port._lock:
            if self._renderer.closed:
                return
            try:
                self.port._write(self._renderer.close())
            finally:
                # Even if the MIDI system went away mid-write, the session is over and its port must close.
                self.port._forget(self)
                if self._close_port:
                    self.port.close()


class MidiPortManager:
    """Hands out per-session MIDI sinks: all on one shared port, or each on a port of its own.

    The shared port opens here, so a bad backend fails at startup and a DAW can connect before the first
    session. Per-session ports are named `<name>-<session id>` and vanish when their session ends.
    """

    def __init__(self, name: str, backend: str = AUTO, per_session: bool = False) -> None:
        self.name = name
        self.per_session = per_session
        self._lock = threading.Lock()
        self._ports: list[MidiPort] = []
        self._dropped_closed = 0  # messages dropped by per-session ports already gone
        if per_session:
            self.backend = resolve_backend(backend)
            if self.backend not in VIRTUAL_BACKENDS:
                raise ConfigError(f"per-session MIDI ports need virtual ports, which {self.backend} cannot create")
        else:
            shared = MidiPort(name, backend)
            self.backend = shared.backend
            self._ports.append(shared)
        self.closed = False

    def open_session(self, session_id: str) -> MidiPortSink:
        with self._lock:
            if self.closed:
                raise RuntimeError("MIDI port manager is closed")
            if not self.per_session:
                return self._ports[0].sink(session_id)
            self._dropped_closed += sum(port.dropped for port in self._ports if port.closed)
            self._ports = [port for port in self._ports if not port.closed]
            port = MidiPort(f"{self.name}-{session_id}", self.backend)
            self._ports.append(port)
            return port.sink(session_id, close_port=True)

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped_closed + sum(port.dropped for port in self._ports)

    def close(self) -> None:
        """Server shutdown: every live session gets note-offs and All Notes Off, then every port closes."""
        with self._lock:
            self.closed = True
            ports, self._ports = self._ports, []
        for port in ports:
            port.close()
        for port in ports:
            port.wait_closed()
