"""Protocol v1 against a live server on a loopback socket: the happy path and every error path."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
import websockets

from streamer import protocol as p
from streamer.notes import Note
from streamer.stitch import events_to_notes
from tests.fakes import SPEC, OracleModel
from tests.windowing import assert_event_invariants

TRUTH = [Note(0.25, 0.75, 60, 90), Note(1.0, 3.5, 64, 80), Note(3.5, 4.0, 64, 70), Note(4.5, 4.625, 67, 60)]


async def recv_until_close(ws: websockets.ClientConnection) -> list[p.ServerMessage]:
    messages = []
    try:
        async for raw in ws:
            messages.append(p.decode_server(raw))
    except websockets.ConnectionClosed:
        pass
    return messages


def pcm(seconds: float, rate: int = 16000) -> bytes:
    return np.zeros(int(seconds * rate), dtype="<i2").tobytes()


async def send_silence(ws: websockets.ClientConnection, seconds: float, frame_s: float = 0.5) -> None:
    """`seconds` of 16 kHz s16 silence in frames of `frame_s` (the server refuses frames over 1 s)."""
    for _ in range(round(seconds / frame_s)):
        await ws.send(pcm(frame_s))


@pytest.fixture
async def server(serve):  # type: ignore[no-untyped-def]
    return await serve({SPEC.name: OracleModel(TRUTH)})


async def test_happy_path(server) -> None:  # type: ignore[no-untyped-def]
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "s16le", "channels": 1}))
        ready = p.decode_server(await ws.recv())
        assert isinstance(ready, p.Ready)
        assert (ready.model, ready.sample_rate, ready.window, ready.hop) == ("oracle", 16000, 2.0, 0.5)
        audio = pcm(5.0)
        for pos in range(0, len(audio), 640):
            await ws.send(audio[pos : pos + 640])
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
        assert ws.close_code == 1000
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))
    assert isinstance(messages[-1], p.Done) and messages[-1].notes == 4 and messages[-1].duration == 5.0


async def test_stereo_f32_at_48k_gives_the_same_notes(server) -> None:  # type: ignore[no-untyped-def]
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 48000, "encoding": "f32le", "channels": 2}))
        assert isinstance(p.decode_server(await ws.recv()), p.Ready)
        for _ in range(10):
            await ws.send(np.zeros((24000, 2), dtype="<f4").tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))
    assert messages[-1].duration == 5.0


async def test_flush_commits_heard_notes_before_stop(server) -> None:  # type: ignore[no-untyped-def]
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        await send_silence(ws, 1.5)
        await ws.send(json.dumps({"type": "flush"}))
        # Regular windows have committed up to 1.0 s; only the flush commits the onset at 1.0 s this early.
        events: list[p.NoteEvent] = []
        while len(events) < 3:
            message = p.decode_server(await asyncio.wait_for(ws.recv(), 5))
            assert isinstance(message, p.Events)
            events += message.events
        assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 0.25), ("NoteOff", 0.75), ("NoteOn", 1.0)]
        await ws.send(json.dumps({"type": "stop"}))
        rest = await recv_until_close(ws)
    assert isinstance(rest[-1], p.Done)
    events += [e for m in rest if isinstance(m, p.Events) for e in m.events]
    assert_event_invariants(events)
    assert events[-1] == p.NoteOff(id=2, time=1.5)  # the held note ends where the audio ended


ERROR_CASES = [
    # (messages to send, expected code, expected close code)
    (["{not json"], "bad_message", 1008),
    (['{"type": "dance"}'], "unknown_message_type", 1008),
    ([b"\x00\x00"], "not_started", 1008),
    (['{"type": "stop"}'], "not_started", 1008),
    (['{"type": "start", "sample_rate": 16000}', '{"type": "start", "sample_rate": 16000}'], "already_started", 1008),
    (['{"type": "start", "sample_rate": 16000, "encoding": "mp3"}'], "unsupported_format", 1003),
    (['{"type": "start", "sample_rate": 16000, "channels": 3}'], "unsupported_format", 1003),
    (['{"type": "start", "sample_rate": 4000}'], "unsupported_format", 1003),
    (['{"type": "start", "sample_rate": 16000, "model": "mt5"}'], "unknown_model", 1008),
    (['{"type": "start", "sample_rate": 16000, "hop": 5}'], "invalid_option", 1008),
    (['{"type": "start", "sample_rate": 16000}', b"\x00\x00\x00"], "bad_audio", 1003),
    (
        ['{"type": "start", "sample_rate": 16000, "encoding": "f32le"}', np.array([np.nan], "<f4").tobytes()],
        "bad_audio",
        1003,
    ),
]


async def healthy_session(url: str) -> list[p.NoteEvent]:
    """A well-behaved client streaming 5 s in 100 ms frames; returns the events it got."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        audio = pcm(5.0)
        for pos in range(0, len(audio), 3200):
            await ws.send(audio[pos : pos + 3200])
            await asyncio.sleep(0.001)
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
    assert isinstance(messages[-1], p.Done)
    return [e for m in messages if isinstance(m, p.Events) for e in m.events]


def assert_healthy(events: list[p.NoteEvent]) -> None:
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))


@pytest.mark.parametrize("sends,code,close_code", ERROR_CASES)
async def test_bad_input_gets_coded_error_and_close(server, sends, code, close_code) -> None:  # type: ignore[no-untyped-def]
    async def bad() -> websockets.ClientConnection:
        async with websockets.connect(server.url) as ws:
            for item in sends:
                await ws.send(item)
            ws.messages = await recv_until_close(ws)  # type: ignore[attr-defined]
        return ws

    ws, healthy = await asyncio.gather(bad(), healthy_session(server.url))
    errors = [m for m in ws.messages if isinstance(m, p.Error)]  # type: ignore[attr-defined]
    assert [e.code for e in errors] == [code]
    assert errors[0].message
    assert ws.close_code == close_code
    assert_healthy(healthy)


async def test_oversized_frame_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_frame_bytes": 4096}})
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        await ws.send(b"\0" * 8192)
        messages = await recv_until_close(ws)
    assert ws.close_code == 1009 and [m.code for m in messages] == ["frame_too_large"]


async def test_idle_session_times_out(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"idle_timeout_s": 0.3}})
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        messages = await recv_until_close(ws)
    assert [m.code for m in messages if isinstance(m, p.Error)] == ["timeout"]


async def test_capacity_limit_answers_busy_and_spares_existing_sessions(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_sessions": 1}})
    async with websockets.connect(server.url) as first:
        await first.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await first.recv()
        async with websockets.connect(server.url) as second:
            messages = await recv_until_close(second)
        assert [m.code for m in messages] == ["busy"] and "retry" in messages[0].message
        assert second.close_code == 1013
        await send_silence(first, 5.0)
        await first.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(first)
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    assert len(events_to_notes(events)) == 4 and isinstance(messages[-1], p.Done)


async def test_healthz_models_and_metrics(server) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base}/healthz") as r:
            assert r.status == 200 and (await r.json())["models"] == ["oracle"]
        async with http.get(f"{server.base}/v1/models") as r:
            info = await r.json()
            assert info["default"] == "oracle" and info["models"][0]["window"] == 2.0
        async with http.get(f"{server.base}/metrics") as r:
            text = await r.text()
            assert "streamer_active_sessions" in text and "streamer_batch_size" in text


async def test_stop_returns_the_session_midi_file_when_asked(server) -> None:  # type: ignore[no-untyped-def]
    import base64

    from streamer.sinks.midi_file import read_notes

    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "midi_file": True}))
        await ws.recv()
        await send_silence(ws, 5.0)
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
    done = messages[-1]
    assert isinstance(done, p.Done) and done.midi
    notes = read_notes(base64.b64decode(done.midi))
    assert [(n.pitch, n.onset, n.offset) for n in notes] == [
        (n.pitch, n.onset, n.offset) for n in sorted(TRUTH, key=lambda n: (n.onset, n.pitch))
    ]
