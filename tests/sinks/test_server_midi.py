"""The server's MIDI port, end to end: audio over a real socket in, MIDI on a JACK port out, as a DAW sees it."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import rtmidi
import websockets

from streamer import protocol as p
from streamer.config import MidiConfig
from streamer.notes import Note
from streamer.sinks.factory import SessionSinks
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
