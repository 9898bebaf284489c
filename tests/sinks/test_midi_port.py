"""The live MIDI port against a real MIDI system: what a DAW connected to our virtual port receives, exactly."""

from __future__ import annotations

import os

import mido
import pytest
import rtmidi

from streamer.errors import ConfigError
from streamer.protocol import NoteOff, NoteOn
from streamer.sinks import midi_port
from streamer.sinks.midi_port import MidiPort, MidiPortManager, list_backends, resolve_backend
from streamer.sinks.midi_render import MidiRenderer

HAVE_ALSA_SEQ = os.path.exists(midi_port.ALSA_SEQUENCER)


def on(channel: int, note: int, velocity: int) -> mido.Message:
    return mido.Message("note_on", channel=channel, note=note, velocity=velocity)


def off(channel: int, note: int) -> mido.Message:
    return mido.Message("note_off", channel=channel, note=note, velocity=64)


def pc(channel: int, program: int) -> mido.Message:
    return mido.Message("program_change", channel=channel, program=program)


def all_off(channel: int) -> mido.Message:
    return mido.Message("control_change", channel=channel, control=123, value=0)


# A piano melody over a bass line with a kick drum, in the batches a session commits them.
MELODY_BATCHES = [
    [NoteOn(0, 0.00, 60, 90, 0, False), NoteOn(1, 0.00, 36, 100, 0, True)],
    [NoteOff(1, 0.10), NoteOn(2, 0.25, 43, 80, 33, False), NoteOff(0, 0.50), NoteOn(3, 0.50, 62, 70, 0, False)],
    [NoteOff(2, 0.75), NoteOff(3, 1.00)],
]
MELODY_MIDI = [
    pc(0, 0),
    on(0, 60, 90),
    on(9, 36, 100),
    off(9, 36),
    pc(1, 33),
    on(1, 43, 80),
    off(0, 60),
    on(0, 62, 70),
    off(1, 43),
    off(0, 62),
]


@pytest.fixture(
    params=[
        "jack",
        pytest.param(
            "alsa",
            marks=pytest.mark.skipif(
                not HAVE_ALSA_SEQ,
                reason="no ALSA sequencer: /dev/snd/seq needs the snd-seq kernel module, absent in this container",
            ),
        ),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "jack":
        request.getfixturevalue("jack_server")
    return request.param


def test_a_daw_receives_the_melody_exactly(backend, daw):
    manager = MidiPortManager("streamer", backend)
    try:
        recorder = daw(midi_port.BACKENDS[backend], "streamer")
        sink = manager.open_session("s1")
        for batch in MELODY_BATCHES:
            sink.send(batch)
        assert recorder.expect(len(MELODY_MIDI)) == MELODY_MIDI
        sink.close()
        assert recorder.expect(3) == [all_off(0), all_off(1), all_off(9)]
    finally:
        manager.close()


def test_abrupt_disconnect_mid_note_ends_every_note_then_all_notes_off(jack_server, daw):
    manager = MidiPortManager("streamer", "jack")
    try:
        recorder = daw(rtmidi.API_UNIX_JACK, "streamer")
        sink = manager.open_session("s1")
        sink.send([NoteOn(0, 0.0, 64, 100, 0, False), NoteOn(1, 0.0, 67, 90, 0, False)])
        sink.send([NoteOn(2, 0.2, 38, 110, 0, True), NoteOn(3, 0.2, 40, 70, 33, False), NoteOff(0, 0.3)])
        assert recorder.expect(7) == [
            pc(0, 0),
            on(0, 64, 100),
            on(0, 67, 90),
            on(9, 38, 110),
            pc(1, 33),
            on(1, 40, 70),
            off(0, 64),
        ]
        sink.close()  # the client vanished: the session ends with notes 1, 2 and 3 still sounding
        assert recorder.expect(6) == [off(0, 67), off(9, 38), off(1, 40), all_off(0), all_off(1), all_off(9)]
        sink.close()
        sink.send([NoteOff(1, 0.5)])  # late events after close are dropped, not played
        assert recorder.expect(0) == []
    finally:
        manager.close()


def test_server_shutdown_closes_live_sessions(jack_server, daw):
    manager = MidiPortManager("streamer", "jack")
    recorder = daw(rtmidi.API_UNIX_JACK, "streamer")
    manager.open_session("s1").send([NoteOn(0, 0.0, 60, 100, 5, False)])
    assert recorder.expect(2) == [pc(0, 5), on(0, 60, 100)]
    manager.close()
    assert recorder.expect(2) == [off(0, 60), all_off(0)]


def test_shared_port_gives_sessions_own_channels_and_spares_the_others(jack_server, daw):
    manager = MidiPortManager("streamer", "jack")
    try:
        recorder = daw(rtmidi.API_UNIX_JACK, "streamer")
        a, b = manager.open_session("a"), manager.open_session("b")
        a.send([NoteOn(0, 0.0, 60, 100, 0, False), NoteOn(1, 0.0, 36, 100, 0, True)])
        b.send([NoteOn(0, 0.0, 64, 80, 0, False), NoteOn(1, 0.0, 42, 60, 0, True)])
        assert recorder.expect(6) == [pc(0, 0), on(0, 60, 100), on(9, 36, 100), pc(1, 0), on(1, 64, 80), on(9, 42, 60)]
        a.close()
        # Session b still plays on channel 10: a ends its own notes but sends All Notes Off only on channel 1.
        assert recorder.expect(3) == [off(0, 60), off(9, 36), all_off(0)]
        b.send([NoteOff(0, 1.0)])
        b.close()
        assert recorder.expect(4) == [off(1, 64), off(9, 42), all_off(1), all_off(9)]
    finally:
        manager.close()


def test_per_session_ports_appear_and_vanish_with_their_sessions(jack_server, daw, jack_outputs):
    manager = MidiPortManager("streamer", "jack", per_session=True)
    try:
        assert not any(port.startswith("streamer") for port in jack_outputs())
        one, two = manager.open_session("one"), manager.open_session("two")
        assert {"streamer-one:streamer-one", "streamer-two:streamer-two"} <= set(jack_outputs())
        recorder_one = daw(rtmidi.API_UNIX_JACK, "streamer-one")
        recorder_two = daw(rtmidi.API_UNIX_JACK, "streamer-two")
        one.send([NoteOn(0, 0.0, 60, 100, 0, False)])
        two.send([NoteOn(0, 0.0, 60, 100, 0, False)])
        # Each port is a MIDI output of its own, so both sessions use channel 1 without meeting.
        assert recorder_one.expect(2) == recorder_two.expect(2) == [pc(0, 0), on(0, 60, 100)]
        one.close()
        assert recorder_one.expect(2) == [off(0, 60), all_off(0)]
        one.port.wait_closed()
        assert "streamer-one:streamer-one" not in jack_outputs()
    finally:
        manager.close()
    assert recorder_two.expect(2) == [off(0, 60), all_off(0)]
    assert not any(port.startswith("streamer") for port in jack_outputs())


def test_auto_picks_alsa_when_its_sequencer_opens_else_jack(jack_server, monkeypatch):
    alsa_opens = "alsa" in [info.name for info in list_backends() if info.available]
    assert resolve_backend("auto") == ("alsa" if alsa_opens else "jack")
    # A machine without the ALSA sequencer (this container, most CI) falls back to JACK.
    monkeypatch.setattr(midi_port, "ALSA_SEQUENCER", "/nonexistent/snd/seq")
    assert resolve_backend("auto") == "jack"
    port = MidiPort("streamer-auto")
    try:
        assert port.backend == "jack"
    finally:
        port.close()


def test_no_usable_backend_says_what_each_one_lacks(monkeypatch):
    monkeypatch.setattr(midi_port, "ALSA_SEQUENCER", "/nonexistent/snd/seq")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "streamer-no-such-server")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(ConfigError) as caught:
        MidiPortManager("streamer")
    message = caught.value.message
    assert "no usable MIDI backend" in message
    assert "alsa: unavailable: /nonexistent/snd/seq does not exist" in message
    assert "jack: unavailable" in message


@pytest.mark.parametrize("name", ["coremidi", "windows-mm"] if os.name == "posix" else [])
def test_a_backend_not_built_in_is_a_config_error(name):
    if rtmidi.API_MACOSX_CORE in rtmidi.get_compiled_api() and name == "coremidi":
        pytest.skip("CoreMIDI is built in here")
    with pytest.raises(ConfigError, match="not built into python-rtmidi"):
        resolve_backend(name)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown MIDI backend 'fluid'"):
        MidiPortManager("streamer", "fluid")


def test_per_session_ports_need_a_backend_with_virtual_ports(monkeypatch):
    monkeypatch.setattr(midi_port, "resolve_backend", lambda backend: "windows-mm")
    with pytest.raises(ConfigError, match="need virtual ports"):
        MidiPortManager("streamer", "windows-mm", per_session=True)


class _Listing:
    def __init__(self, ports: list[str]) -> None:
        self._ports = ports

    def get_ports(self) -> list[str]:
        return self._ports


def test_windows_ports_are_found_by_exact_name_or_numbered_prefix():
    listing = _Listing(["Microsoft GS Wavetable Synth 0", "streamer-old 1", "streamer 2"])
    assert midi_port._existing_port(listing, "streamer 2") == 2
    assert midi_port._existing_port(listing, "streamer-old") == 1
    with pytest.raises(ConfigError, match="create one with loopMIDI"):
        midi_port._existing_port(listing, "loop")


def test_client_side_port_plays_received_events_and_closes_with_its_session(jack_server, daw, jack_outputs):
    # What `streamer stream --midi-port` does on the musician's machine: one port, one session, closed together.
    sink = MidiPort("laptop", "jack").sink("client", close_port=True)
    recorder = daw(rtmidi.API_UNIX_JACK, "laptop")
    for batch in MELODY_BATCHES[:2]:
        sink.send(batch)
    assert recorder.expect(8) == MELODY_MIDI[:8]
    sink.close()  # the server connection dropped with note 3 and 2 still sounding
    assert recorder.expect(5) == [off(1, 43), off(0, 62), all_off(0), all_off(1), all_off(9)]
    sink.port.wait_closed()
    assert "laptop:laptop" not in jack_outputs()


def test_a_burst_of_hundreds_of_events_reaches_an_independent_jack_recorder_whole(jack_server, tmp_path):
    """A dense window commits hundreds of events at once; JACK drops what does not fit in a period's buffer unless
    they are paced. Recorded by `jack_midi_dump`, another process, as the red team did: nothing missing, in order."""
    import subprocess
    import time

    port = MidiPort("streamer-burst", "jack")
    sink = port.sink("s1")
    dump_log = (tmp_path / "dump.txt").open("w")
    dump = subprocess.Popen(["jack_midi_dump"], stdout=dump_log, stderr=subprocess.DEVNULL)
    try:
        names = lambda: subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout.split("\n")  # noqa: E731
        deadline = time.monotonic() + 10
        while not [n for n in names() if "midi_dump" in n or "midi-monitor" in n]:
            assert time.monotonic() < deadline, names()
            time.sleep(0.05)
        source = next(n for n in names() if n.startswith("streamer-burst"))
        target = next(n for n in names() if "midi_dump" in n or "midi-monitor" in n)
        subprocess.run(["jack_connect", source, target], check=True)
        events = []
        for i in range(300):  # 300 notes committed in one message: 600 events, one program change
            events += [NoteOn(i, i * 0.001, 30 + i % 60, 64 + i % 60, 0, False), NoteOff(i, i * 0.001 + 0.0005)]
        sink.send(events)
        expected = 1 + 600
        deadline = time.monotonic() + 10
        while True:
            dump_log.flush()
            lines = [line for line in (tmp_path / "dump.txt").read_text().splitlines() if ": " in line]
            if len(lines) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        sink.close()
        port.close()
        port.wait_closed(5)
        dump.terminate()
        dump.wait(5)
        dump_log.close()
    received = [bytes.fromhex(" ".join(line.split(": ", 1)[1].split()[:3])) for line in lines]
    assert len(received) == expected, f"{len(received)} of {expected} messages recorded"
    sent = [bytes(m.bytes()) for m in MidiRenderer().render(events)]
    assert received == sent and port.dropped == 0
