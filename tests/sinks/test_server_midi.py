"""The server's MIDI port, end to end: audio over a real socket in, MIDI on a JACK port out, as a DAW sees it."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import mido
import numpy as np
import rtmidi
import websockets

from streamer import protocol as p
from streamer.config import MidiConfig
from streamer.notes import Note
from streamer.sinks.factory import SessionSinks
from streamer.sinks.midi_file import read_notes
from tests.fakes import SPEC, OracleModel
from tests.sinks.test_midi_port import all_off, off, on, pc

TRUTH = [Note(0.25, 0.75, 60, 90), Note(1.0, 9.0, 64, 80)]


async def send_and_wait_for(ws, seconds: float, pitch: int) -> None:  # type: ignore[no-untyped-def]
    await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
    await ws.recv()
    for _ in range(round(seconds / 0.5)):
        await ws.send(np.zeros(8000, dtype="<i2").tobytes())
    while True:
        message = p.decode_server(await asyncio.wait_for(ws.recv(), 5))
        if isinstance(message, p.Events) and any(isinstance(e, p.NoteOn) and e.pitch == pitch for e in message.events):
            return


async def test_abrupt_disconnect_ends_notes_then_all_notes_off(jack_server, daw, serve) -> None:  # type: ignore[no-untyped-def]
    sinks = SessionSinks(MidiConfig(port="streamer-server", backend="jack"))
    server = await serve({SPEC.name: OracleModel(TRUTH)}, sinks=sinks)
    recorder = daw(rtmidi.API_UNIX_JACK, "streamer-server")
    async with websockets.connect(server.url) as ws:
        await send_and_wait_for(ws, 3.0, pitch=64)
        assert await asyncio.to_thread(recorder.expect, 4) == [pc(0, 0), on(0, 60, 90), off(0, 60), on(0, 64, 80)]
    # The client vanished without `stop` while note 64 was sounding (the recorder polls in a thread, so the
    # server's event loop goes on closing the session meanwhile).
    assert await asyncio.to_thread(recorder.expect, 2) == [off(0, 64), all_off(0)]


async def test_stop_plays_every_note_off_then_all_notes_off(jack_server, daw, serve) -> None:  # type: ignore[no-untyped-def]
    sinks = SessionSinks(MidiConfig(port="streamer-server2", backend="jack"))
    server = await serve({SPEC.name: OracleModel(TRUTH)}, sinks=sinks)
    recorder = daw(rtmidi.API_UNIX_JACK, "streamer-server2")
    async with websockets.connect(server.url) as ws:
        await send_and_wait_for(ws, 3.0, pitch=64)
        await ws.send(json.dumps({"type": "stop"}))
        async for _ in ws:
            pass
    expected = [pc(0, 0), on(0, 60, 90), off(0, 60), on(0, 64, 80), off(0, 64), all_off(0)]
    assert await asyncio.to_thread(recorder.expect, 6) == expected


def cc(channel: int, control: int, value: int) -> mido.Message:
    return mido.Message("control_change", channel=channel, control=control, value=value)


async def test_pedals_reach_the_port_as_cc64_and_the_midi_file(jack_server, daw, serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A piano model's sustain pedal: CC64 127/0 on the session's piano channel, between its notes, in the port and in
    the session's file; a pedal still down when the session ends is released before All Notes Off."""
    truth = [Note(0.25, 0.75, 60, 90), Note(0.5, 2.5, 0, 127, control=64), Note(1.0, 1.5, 64, 80),
             Note(3.0, 9.0, 0, 127, control=64)]  # fmt: skip
    sinks = SessionSinks(MidiConfig(port="streamer-pedal", backend="jack", files_dir=str(tmp_path)))
    server = await serve({SPEC.name: OracleModel(truth)}, sinks=sinks)
    recorder = daw(rtmidi.API_UNIX_JACK, "streamer-pedal")
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "midi_file": True}))
        ready = p.decode_server(await ws.recv())
        assert isinstance(ready, p.Ready)
        for _ in range(8):  # 4 s: the second pedal is still down at stop
            await ws.send(np.zeros(8000, dtype="<i2").tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        messages = [p.decode_server(raw) async for raw in ws]
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    controls = [(e.time, e.value) for e in events if isinstance(e, p.Control)]
    assert controls == [(0.5, 127), (2.5, 0), (3.0, 127), (4.0, 0)]
    expected = [
        pc(0, 0), on(0, 60, 90), cc(0, 64, 127), off(0, 60), on(0, 64, 80), off(0, 64), cc(0, 64, 0),
        cc(0, 64, 127), cc(0, 64, 0), all_off(0),
    ]  # fmt: skip
    assert await asyncio.to_thread(recorder.expect, len(expected)) == expected
    done = messages[-1]
    assert isinstance(done, p.Done) and done.midi
    for data in (base64.b64decode(done.midi), (tmp_path / f"{ready.session}.mid").read_bytes()):
        midi = mido.MidiFile(file=io.BytesIO(data))
        pedal = [(m.control, m.value) for m in mido.merge_tracks(midi.tracks) if m.type == "control_change"]
        assert pedal == [(64, 127), (64, 0), (64, 127), (64, 0)]
        assert [n.pitch for n in read_notes(data)] == [60, 64]
