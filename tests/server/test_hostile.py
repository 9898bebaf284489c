"""Hardening II: what a hostile or unlucky client did to other people's sessions, each as a regression test.

Numbers in the test names are the items of the red-team report (issue 13). Everything runs over a real loopback
socket unless the socket adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import websockets
from aiohttp import web

from streamer import protocol as p
from streamer.audio.test_signals import melody, render
from streamer.client.stream import stream_audio
from streamer.config import load_config
from streamer.engine import Engine
from streamer.jobs import Failed
from streamer.models.base import Model, WindowRequest
from streamer.notes import WindowNote
from streamer.server.app import GUARD, STATE, create_app, drain
from streamer.server.guard import GuardedSite
from streamer.stitch import events_to_notes
from tests import rawws
from tests.fakes import SPEC, OracleModel
from tests.server.test_hardening import codes, open_and_collect
from tests.server.test_protocol import TRUTH, assert_healthy, healthy_session, recv_until_close
from tests.waiting import until
from tests.windowing import assert_event_invariants, match

START = json.dumps({"type": "start", "sample_rate": 16000})


def s16(seconds: float, rate: int = 16000) -> bytes:
    return np.zeros(int(seconds * rate), dtype="<i2").tobytes()


async def upload(url: str, seconds: float, frame_s: float = 0.25, **start: object) -> tuple[list, int | None]:  # type: ignore[type-arg]
    """A client sending `seconds` of silence as fast as the server reads it, then `stop`."""
    sends = [json.dumps({"type": "start", "sample_rate": 16000, **start})]
    sends += [s16(frame_s)] * round(seconds / frame_s) + ['{"type": "stop"}']
    return await open_and_collect(url, sends)


# ---- 1: cross-session poisoning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
async def test_01_huge_floats_are_refused_and_a_neighbours_notes_are_unchanged(
    serve, basic_pitch_model: Model, channels: int
) -> None:  # type: ignore[no-untyped-def]
    server = await serve({"basic-pitch": basic_pitch_model})
    truth = melody()
    audio = render(truth, 44100, truth[-1].offset + 0.5)[:, None]
    alone = await stream_audio(server.url, audio, 44100, speed=0)
    attack = [json.dumps({"type": "start", "sample_rate": 44100, "encoding": "f32le", "channels": channels})]
    attack += [np.full(4410 * channels, 3e38, dtype="<f4").tobytes()] * 3
    (messages, close), beside = await asyncio.gather(
        open_and_collect(server.url, attack), stream_audio(server.url, audio, 44100, speed=0)
    )
    assert codes(messages) == ["bad_audio"] and close == 1003
    assert beside.done is not None and not beside.errors
    assert events_to_notes(beside.events) == events_to_notes(alone.events)


async def test_01_one_poisoned_window_fails_alone_not_its_batch_mates() -> None:
    from streamer.models.basic_pitch import build_model

    # Windowed basic-pitch with the melodia trick raises in note extraction on NaN posteriors (what the red team
    # hit); whatever a model does with a bad window, the engine runs a failed batch's windows alone.
    basic_pitch_model = build_model({"streaming": False, "melodia_trick": True})
    spec = basic_pitch_model.spec
    audio = render(melody(), spec.sample_rate, 8.0)
    starts = [0, 20000, 40000, 60000]
    clean = [WindowRequest(audio[s : s + spec.window_samples].copy(), s, spec.window_samples) for s in starts]
    alone = [basic_pitch_model.transcribe_windows([w], [None])[0] for w in clean]
    poisoned = WindowRequest(np.full(spec.window_samples, np.nan, np.float32), 80000, spec.window_samples)
    engine = Engine(basic_pitch_model, max_batch=8, max_wait_ms=50)
    results: dict[int, object] = {}
    for window in [*clean, poisoned]:
        handle = engine.open_stream()
        handle.submit(window, lambda r, s=window.start: results.__setitem__(s, r), live=False)
    engine.start()
    await engine.stop()
    assert isinstance(results[80000], Failed)
    assert [results[s] for s in starts] == alone


# ---- 2: memory amplification ---------------------------------------------------------------------------------------


async def test_02_a_minute_of_audio_in_one_frame_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    start = json.dumps({"type": "start", "sample_rate": 8000, "hop": 0.1})
    (messages, close), healthy = await asyncio.gather(
        open_and_collect(server.url, [start, s16(65.0, 8000)[: 1 << 20]]), healthy_session(server.url)
    )
    assert codes(messages) == ["frame_too_large"] and close == 1009 and "s of audio" in messages[-1].message
    assert_healthy(healthy)


def test_02_window_audio_is_shared_and_bounded_not_copied_per_window() -> None:
    from streamer.audio.windows import WindowCutter

    cutter = WindowCutter(window=44_000, hop=2_205)
    windows = []
    for _ in range(50):  # one second of audio in 20 ms pieces: 20 windows at a 0.1 s hop
        windows += cutter.push(np.zeros(882, np.float32))
    assert len(windows) == 0 or windows[0].pieces  # nothing copied until read
    pieces = {id(s) for w in windows for _, s in w.pieces}
    held = sum(len(s) for w in windows for _, s in w.pieces if id(s) in pieces) // max(1, len(windows))
    assert cutter.held <= 44_000 + 2_205
    assert held <= 44_000 + 882  # each window refers to its share of pieces, not a copy of its own
    assert windows[-1].audio.shape == (44_000,) if windows else True


# ---- 3, 10, 11: uploads: zombies, skipped windows, keepalives ------------------------------------------------------


async def test_03_a_throttled_upload_that_vanishes_frees_its_slots_and_its_backlog(serve) -> None:  # type: ignore[no-untyped-def]
    model = OracleModel(TRUTH, delay_s=0.2)
    server = await serve({SPEC.name: model})
    _reader, writer, head = await rawws.handshake(server.port)
    assert b"101" in head.split(b"\r\n")[0]
    writer.write(rawws.frame(rawws.TEXT, START.encode()))
    for _ in range(40):  # 10 s of audio at once: the session is throttled after two windows
        writer.write(rawws.frame(rawws.BINARY, s16(0.25)))
    await writer.drain()
    await until(lambda: len(model.batches) >= 1, what="the model started on the upload")
    writer.transport.abort()  # gone, without a close frame
    await until(lambda: not server.state.connections, timeout=3, what="the vanished session released")
    calls = len(model.batches)
    await asyncio.sleep(0.6)  # three model calls' worth: none of them for the vanished client
    assert len(model.batches) <= calls + 1 and server.state.engines[SPEC.name].queued == 0


async def test_10_concurrent_uploads_never_lose_windows(serve) -> None:  # type: ignore[no-untyped-def]
    model = OracleModel(TRUTH, delay_s=0.02)
    server = await serve({SPEC.name: model})
    results = await asyncio.gather(*(upload(server.url, 8.0, hop=0.25) for _ in range(8)))
    for messages, close in results:
        done = messages[-1]
        assert isinstance(done, p.Done) and close == 1000
        assert done.skipped_windows == 0 and not any(isinstance(m, p.Lagging) for m in messages)


async def test_11_our_client_survives_a_long_throttled_upload(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH, delay_s=0.15)})
    audio = np.zeros((16000 * 12, 1), np.float32)  # 24 windows at 0.15 s each: several of the client's pings
    result = await stream_audio(server.url, audio, 16000, speed=0, ping_interval=0.5, frame_seconds=0.5)
    assert result.done is not None and result.close_code == 1000 and not result.errors


async def test_11_a_connection_reset_is_a_normal_end(serve, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    caplog.set_level(logging.INFO)
    _reader, writer, _ = await rawws.handshake(server.port)
    writer.write(rawws.frame(rawws.TEXT, START.encode()) + rawws.frame(rawws.BINARY, s16(0.5)))
    await writer.drain()
    await until(lambda: any(c.session.started for c in server.state.connections), what="session started")
    writer.transport.abort()
    await until(lambda: not server.state.connections, what="session released")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "internal_error" not in server.state.metrics.render().decode().split("streamer_errors_total{")[-1]


# ---- 4: SIGTERM under backlog --------------------------------------------------------------------------------------


async def test_04_shutdown_under_backlog_ends_within_the_grace_period(serve) -> None:  # type: ignore[no-untyped-def]
    grace = 3.0
    server = await serve(
        {SPEC.name: OracleModel(TRUTH, delay_s=0.3)},
        overrides={"server": {"shutdown_grace_s": grace, "drain_s": 0.5}, "engine": {"max_batch": 1},
                   "limits": {"faster_than_realtime": "allow"}},
    )  # fmt: skip
    clients = [asyncio.create_task(upload(server.url, 30.0, hop=0.1)) for _ in range(4)]
    await until(lambda: server.state.engines[SPEC.name].queued >= 8, what="a backlog")
    t0 = time.monotonic()
    app = server.server.app
    await drain(app, stream_s=0.5, grace_s=grace)
    app[STATE].stop_timeout = max(0.1, grace - (time.monotonic() - t0) - 0.2)
    await server.stop()
    assert time.monotonic() - t0 < grace + 1.0
    for messages, close in await asyncio.gather(*clients):
        assert isinstance(messages[-1], p.Done) and close == 1001


# ---- 5: idle and length limits for clients that answer pings -------------------------------------------------------


async def test_05_a_connection_that_never_starts_times_out_though_it_answers_pings(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"start_timeout_s": 0.8}})
    t0 = time.monotonic()
    async with websockets.connect(server.url, ping_interval=0.2) as ws:
        messages = await recv_until_close(ws)
    assert codes(messages) == ["timeout"] and ws.close_code == 1000 and time.monotonic() - t0 < 3


async def test_05_flush_only_sessions_end_at_the_length_limit(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_session_s": 1.5}})
    async with websockets.connect(server.url) as ws:
        await ws.send(START)
        await ws.recv()
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(20):
                await ws.send('{"type": "flush"}')
                await asyncio.sleep(0.2)
        messages = await recv_until_close(ws)
    assert "session_too_long" in codes(messages) and ws.close_code == 1000


# ---- 6: a client that stops reading --------------------------------------------------------------------------------


class ChattyModel(OracleModel):
    """Reports 200 short notes in every window's commit region (at hop 0.1 s): about 24 KB of events per window,
    enough to fill a non-reading client's socket buffers within a few hundred windows."""

    def transcribe_windows(self, batch, states):  # type: ignore[no-untyped-def]
        region = SPEC.window_s - SPEC.commit_margin_s - 0.1
        notes = [WindowNote(20 + i % 100, region + i * 0.0005, region + i * 0.0005 + 0.0004) for i in range(200)]
        return [notes for _ in batch]


async def test_06_a_client_that_stops_reading_is_ended_and_others_go_on(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: ChattyModel([])}, overrides={"limits": {"max_outbox_messages": 8}})
    _reader, writer, _ = await rawws.handshake(server.port, rcvbuf=4096)
    writer.write(rawws.frame(rawws.TEXT, json.dumps({"type": "start", "sample_rate": 16000, "hop": 0.1}).encode()))
    with contextlib.suppress(ConnectionError):
        for _ in range(400):  # 100 s of audio, 1000 windows, ~24 MB of events; we never read any of it
            writer.write(rawws.frame(rawws.BINARY, s16(0.25)))
            await writer.drain()
    await until(lambda: "not_reading" in server.state.metrics.render().decode(), timeout=20, what="not_reading")
    await until(lambda: not server.state.connections, timeout=10, what="the session released")
    writer.transport.abort()
    async with websockets.connect(server.url) as ws:  # the server is fine
        await ws.send(START)
        assert isinstance(p.decode_server(await ws.recv()), p.Ready)


# ---- 7: slowloris --------------------------------------------------------------------------------------------------


@pytest.fixture
async def guarded():  # type: ignore[no-untyped-def]
    """The real listener (GuardedSite) with a short handshake deadline and a small per-address cap."""
    config = load_config(overrides={"server": {"handshake_timeout_s": 1.0, "max_connections_per_client": 4}})
    app = create_app(config, {SPEC.name: OracleModel(TRUTH)})
    runner = web.AppRunner(app, keepalive_timeout=1.0)
    await runner.setup()
    site = GuardedSite(runner, app[GUARD], "127.0.0.1", 0)
    await site.start()
    yield site.port, app
    await runner.cleanup()


async def test_07_slow_and_silent_connections_are_capped_and_cut(guarded) -> None:  # type: ignore[no-untyped-def]
    port, app = guarded
    attackers = []
    for _ in range(20):  # from another loopback address: half a request line each, then nothing
        reader, writer = await rawws.connect_from("127.0.0.2", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        attackers.append((reader, writer))
    await until(lambda: app[GUARD].open.get("127.0.0.2", 0) <= 4 and app[GUARD].refused >= 16, what="cap")
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
        assert r.status == 200  # everyone else is served meanwhile
    await until(lambda: app[GUARD].open.get("127.0.0.2", 0) == 0, timeout=3, what="handshake deadline")
    assert app[GUARD].timed_out == 4
    for _, writer in attackers:
        writer.close()


# ---- 8: DNS rebinding ----------------------------------------------------------------------------------------------


async def test_08_a_rebinding_host_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"server": {"allowed_hosts": ["studio.lan"]}})
    reader, writer, _head = await rawws.handshake(server.port, host=b"evil.example:8765")
    writer.write(rawws.frame(rawws.TEXT, START.encode()))
    frames = await rawws.read_frames(reader)
    assert b'"unauthorized"' in frames[0][1] and rawws.close_code(frames) == 1008
    async with aiohttp.ClientSession() as http:
        for host, status in [("evil.example", 403), ("localhost:1", 200), ("studio.lan", 200), ("[::1]:8765", 200)]:
            async with http.get(f"{server.base}/healthz", headers={"Host": host}) as r:
                assert r.status == status, host
    messages, _close = await open_and_collect(server.url, [START], origin=f"https://127.0.0.1:{server.port}")
    assert codes(messages) == ["unauthorized"], "an https page may not use a plain-http server's origin"


# ---- 9: allow mode is bounded --------------------------------------------------------------------------------------


async def test_09_allow_mode_bounds_a_fast_clients_queue(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve(
        {SPEC.name: OracleModel(TRUTH, delay_s=0.05)},
        overrides={"limits": {"faster_than_realtime": "allow"}, "engine": {"max_queued_windows": 6, "max_batch": 1}},
    )
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, server.state.engines[SPEC.name].queued)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    messages, _close = await upload(server.url, 20.0, hop=0.1)
    watcher.cancel()
    assert isinstance(messages[-1], p.Done) and messages[-1].skipped_windows > 0
    assert peak <= 6


# ---- 12, 13, 14, 17: protocol edges over the socket ----------------------------------------------------------------


async def test_12_messages_after_stop_never_cost_the_final_events(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_text_messages_per_s": 5}})
    sends = [START, *[s16(0.5)] * 10, '{"type": "stop"}', *['{"type": "flush"}'] * 12, "{junk"]
    messages, close = await open_and_collect(server.url, sends)
    assert codes(messages) == [] and isinstance(messages[-1], p.Done) and close == 1000
    assert events_to_notes([e for m in messages if isinstance(m, p.Events) for e in m.events])


@pytest.mark.parametrize(
    "text,code",
    [
        ('{"type": "start", "sample_rate": ' + "[" * 1000 + "]" * 1000 + "}", "bad_message"),
        ('{"type": "start", "sample_rate": 16000, "hop": 0}', "invalid_option"),
        ('{"type": "start", "sample_rate": 16000, "model": ""}', "unknown_model"),
        ('{"type": "start", "type": "stop", "sample_rate": 16000}', "bad_message"),
    ],
)
async def test_13_17_protocol_edges_get_their_codes(serve, text: str, code: str) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)})
    messages, close = await open_and_collect(server.url, [text])
    assert codes(messages) == [code] and close == 1008


async def test_17_a_start_sharing_a_segment_with_a_frame_over_four_times_the_limit_is_answered(serve) -> None:  # type: ignore[no-untyped-def]
    """The WebSocket layer refuses a frame over 4 × max_frame_bytes before reading it (close 1009, documented),
    but the `start` written in the same TCP segment before it is still read and answered."""
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_frame_bytes": 4096}})
    reader, writer, _ = await rawws.handshake(server.port)
    huge = rawws.frame(rawws.BINARY, b"\0" * (5 * 4096))
    writer.write(rawws.frame(rawws.TEXT, START.encode()) + huge)
    frames = await rawws.read_frames(reader)
    assert frames[0][0] == rawws.TEXT and json.loads(frames[0][1])["type"] == "ready"
    assert rawws.close_code(frames) == 1009
    assert_healthy(await healthy_session(server.url))


@pytest.mark.parametrize(
    "header", [b"Authorization: Bearer \xff\xfe\xfd\r\n", b"Sec-WebSocket-Protocol: streamer.v1, token.\xc3\x28\r\n"]
)
async def test_14_a_token_that_is_not_utf8_is_unauthorized(serve, header: bytes) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"auth": {"token": "letmein"}})
    reader, _writer, _head = await rawws.handshake(server.port, extra=header)
    frames = await rawws.read_frames(reader)
    assert frames and b'"unauthorized"' in frames[0][1] and rawws.close_code(frames) == 1008
    assert_healthy(await healthy_session(f"{server.url}?token=letmein"))


# ---- 16: session files that cannot be written ----------------------------------------------------------------------


async def test_16_a_failed_midi_file_is_reported_counted_and_leaves_nothing(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = tmp_path / "files"
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"midi": {"files_dir": str(files)}})
    files.mkdir()
    files.rmdir()
    files.write_text("a file where the folder was: every write into it fails")
    messages, _close = await upload(server.url, 5.0, frame_s=0.5)
    done = messages[-1]
    assert isinstance(done, p.Done) and done.midi_error and "cannot write" in done.midi_error
    assert "streamer_midi_file_errors_total 1.0" in server.state.metrics.render().decode()
    assert not list(tmp_path.glob("**/*.partial"))


# ---- informational: headers, long static names, the metrics token --------------------------------------------------


async def test_headers_static_names_and_metrics_token(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"auth": {"token": "t0k"}})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base}/healthz") as r:
            assert r.status == 200 and r.headers["Server"] == "streamer"
        async with http.get(f"{server.base}/static/{'a' * 300}.js") as r:
            assert r.status == 404
        async with http.get(f"{server.base}/metrics") as r:
            assert r.status == 401
        async with http.get(f"{server.base}/metrics", headers={"Authorization": "Bearer t0k"}) as r:
            assert r.status == 200
        async with http.get(f"{server.base}/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ready"


async def test_readiness_says_full_at_capacity(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_sessions": 1}})
    async with websockets.connect(server.url) as ws, aiohttp.ClientSession() as http:
        await ws.send(START)
        await ws.recv()
        async with http.get(f"{server.base}/readyz") as r:
            assert r.status == 503 and (await r.json())["status"] == "full"


def test_truth_is_what_the_melody_plays() -> None:
    # A guard for the poisoning test's premise: the melody's notes are found by basic-pitch streaming alone.
    assert len(match(melody(), melody())) == len(melody())
    assert_event_invariants([])
