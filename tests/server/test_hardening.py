"""Limits and access control on a live server; each refusal is coded and spares a concurrent healthy session."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import websockets

from streamer import protocol as p
from tests.fakes import SPEC, OracleModel
from tests.server.test_protocol import TRUTH, assert_healthy, healthy_session, pcm, recv_until_close
from tests.waiting import until

TOKEN = "s3cret-token"


async def open_and_collect(url: str, sends: list, **connect) -> tuple[list[p.ServerMessage], int | None]:  # type: ignore[type-arg]
    async with websockets.connect(url, **connect) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # the server may refuse before we are done
            for item in sends:
                await ws.send(item)
        messages = await recv_until_close(ws)
    return messages, ws.close_code


def codes(messages: list[p.ServerMessage]) -> list[str]:
    return [m.code for m in messages if isinstance(m, p.Error)]


async def test_token_is_required_and_accepted_three_ways(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"auth": {"token": TOKEN}})
    start = json.dumps({"type": "start", "sample_rate": 16000})
    messages, close = await open_and_collect(server.url, [start])
    assert codes(messages) == ["unauthorized"] and close == 1008
    messages, close = await open_and_collect(f"{server.url}?token=wrong", [start])
    assert codes(messages) == ["unauthorized"] and "wrong token" in messages[0].message
    for url, connect in [
        (server.url, {"additional_headers": {"Authorization": f"Bearer {TOKEN}"}}),
        (f"{server.url}?token={TOKEN}", {}),
        (server.url, {"subprotocols": ["streamer.v1", f"token.{TOKEN}"]}),
    ]:
        async with websockets.connect(url, **connect) as ws:
            await ws.send(start)
            assert isinstance(p.decode_server(await ws.recv()), p.Ready)


async def test_browser_origins_are_checked(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(
        {SPEC.name: OracleModel(TRUTH)}, overrides={"auth": {"allowed_origins": ["https://app.example"]}}
    )
    start = json.dumps({"type": "start", "sample_rate": 16000})
    messages, close = await open_and_collect(server.url, [start], origin="https://evil.example")
    assert codes(messages) == ["unauthorized"] and close == 1008
    for origin in ["https://app.example", f"http://127.0.0.1:{server.port}"]:  # listed, and same origin (the demo)
        async with websockets.connect(server.url, origin=origin) as ws:
            await ws.send(start)
            assert isinstance(p.decode_server(await ws.recv()), p.Ready)


async def test_flush_spam_is_rate_limited_and_spares_others(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_text_messages_per_s": 5}})
    start = json.dumps({"type": "start", "sample_rate": 16000})
    spam = [start, pcm(0.5)] + [json.dumps({"type": "flush"})] * 20
    (messages, close), healthy = await asyncio.gather(open_and_collect(server.url, spam), healthy_session(server.url))
    assert codes(messages) == ["rate_limited"] and close == 1008
    assert_healthy(healthy)


async def test_tiny_frames_are_rate_limited(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    start = json.dumps({"type": "start", "sample_rate": 16000})
    (messages, close), healthy = await asyncio.gather(
        open_and_collect(server.url, [start] + [b"\0\0"] * 400), healthy_session(server.url)
    )
    assert codes(messages) == ["rate_limited"] and "frames" in messages[-1].message and close == 1008
    assert_healthy(healthy)


async def test_faster_than_real_time_can_be_refused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"faster_than_realtime": "refuse"}})
    start = json.dumps({"type": "start", "sample_rate": 16000})
    sends = [start] + [pcm(0.5)] * 20  # 10 s of audio in a few milliseconds
    (messages, close), healthy = await asyncio.gather(
        open_and_collect(server.url, sends), healthy_session_paced(server.url)
    )
    assert codes(messages) == ["rate_limited"] and "faster than real time" in messages[-1].message and close == 1008
    assert_healthy(healthy)


async def healthy_session_paced(url: str) -> list[p.NoteEvent]:
    """A live client at real-time pace (so it is not refused itself): 5 s of audio in 0.25 s frames."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        for _ in range(20):
            await ws.send(pcm(0.25))
            await asyncio.sleep(0.25)
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
    return [e for m in messages if isinstance(m, p.Events) for e in m.events]


async def test_session_length_limit_commits_what_was_heard(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_session_s": 3.0}})
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        for _ in range(8):
            await ws.send(pcm(0.5))
        messages = await recv_until_close(ws)
    assert codes(messages) == ["session_too_long"] and ws.close_code == 1000
    done = [m for m in messages if isinstance(m, p.Done)]
    assert len(done) == 1 and done[0].duration <= 3.5
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    assert [e.pitch for e in events if isinstance(e, p.NoteOn)] == [60, 64]
    assert len([e for e in events if isinstance(e, p.NoteOff)]) == 2, "every note closed"


async def test_per_client_session_cap(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_sessions_per_client": 2}})
    start = json.dumps({"type": "start", "sample_rate": 16000})
    async with websockets.connect(server.url) as a, websockets.connect(server.url) as b:
        for ws in (a, b):
            await ws.send(start)
            await ws.recv()
        messages, close = await open_and_collect(server.url, [start])
        assert codes(messages) == ["busy"] and close == 1013
    await until(lambda: not server.state.connections, what="both sessions released")
    async with websockets.connect(server.url) as c:  # the cap frees up as sessions end
        await c.send(start)
        assert isinstance(p.decode_server(await c.recv()), p.Ready)


async def test_model_crash_fails_only_those_windows(serve) -> None:  # type: ignore[no-untyped-def]
    model = OracleModel(TRUTH)
    model.fail_on = {12000}  # the window starting at 0.75 s
    server = await serve({SPEC.name: model})
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await ws.recv()
        for _ in range(10):
            await ws.send(np.zeros(8000, dtype="<i2").tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        messages = await recv_until_close(ws)
    errors = [m for m in messages if isinstance(m, p.Error)]
    assert [(e.code, e.fatal) for e in errors] == [("model_failed", False)]
    assert isinstance(messages[-1], p.Done) and ws.close_code == 1000
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    assert {e.pitch for e in events if isinstance(e, p.NoteOn)} >= {64, 67}
    assert server.state.engines[SPEC.name].stats.failed_jobs == 1
    assert messages[-1].failed_windows == 1 and messages[-1].skipped_windows == 0
    assert not any(isinstance(m, p.Lagging) for m in messages)
