"""Graceful shutdown of the real `streamer serve` process: SIGTERM while clients stream at real-time pace.

Readiness fails at once and new sessions are refused (`shutting_down`, 1001); live sessions keep streaming for
`drain_s`; then every client gets the notes of all the audio the server had received, every note closed, `done` and
close code 1001; the process exits 0 within the grace period; session MIDI files are written to `[midi] files_dir`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import websockets

from streamer import protocol as p
from streamer.audio.test_signals import melody, render
from streamer.server.process import start_server
from streamer.sinks.midi_file import read_notes
from streamer.stitch import events_to_notes
from tests.windowing import assert_event_invariants, match

ROOT = Path(__file__).resolve().parents[2]
RATE = 44100
FRAME_S = 0.02
GRACE_S = 8.0
DRAIN_S = 1.5
CLIENTS = 3
SIGTERM_AFTER_S = 3.0  # of streaming by the first client; the others started 0.5 s and 1 s later


@dataclass
class Client:
    messages: list[p.ServerMessage] = field(default_factory=list)
    sent_s: float = 0.0  # audio sent so far
    sent_at_sigterm_s: float = 0.0
    close_code: int | None = None

    @property
    def events(self) -> list[p.NoteEvent]:
        return [e for m in self.messages if isinstance(m, p.Events) for e in m.events]


def readiness(port: int) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    config = f'[server]\nshutdown_grace_s = {GRACE_S}\ndrain_s = {DRAIN_S}\n\n[midi]\nfiles_dir = "{midi_dir}"\n'
    log = tmp_path / "server.log"
    server = start_server(config_dir=tmp_path, config_toml=config, log=log)
    try:
        yield server.process, server.port, midi_dir, log
    finally:
        server.kill()


async def stream(url: str, audio: bytes, client: Client) -> None:
    """A live client: real-time pace until the server closes the session (or the audio ends: then `stop`)."""
    frame = int(FRAME_S * RATE) * 2
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))

        async def receive() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    client.messages.append(p.decode_server(raw))

        receiver = asyncio.create_task(receive())
        t0 = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            for i, pos in enumerate(range(0, len(audio), frame)):
                await asyncio.sleep(max(0.0, t0 + i * FRAME_S - time.monotonic()))
                if receiver.done():
                    break
                chunk = audio[pos : pos + frame]
                await ws.send(chunk)
                client.sent_s += len(chunk) / 2 / RATE
            else:
                await ws.send('{"type": "stop"}')
        await asyncio.wait_for(receiver, GRACE_S + 5)
        client.close_code = ws.close_code


async def test_no_new_session_once_shutting_down(serve) -> None:  # type: ignore[no-untyped-def]
    """A handshake that reaches the handler after shutdown began is answered `shutting_down`, close 1001."""
    from tests.fakes import SPEC, OracleModel

    server = await serve({SPEC.name: OracleModel([])})
    server.state.accepting = False
    async with websockets.connect(server.url) as ws:
        messages = [p.decode_server(raw) async for raw in ws]
    assert [(m.code, m.fatal) for m in messages if isinstance(m, p.Error)] == [("shutting_down", True)]
    assert ws.close_code == 1001


async def test_sigterm_commits_every_session_then_exits(server) -> None:  # type: ignore[no-untyped-def]
    proc, port, midi_dir, log = server
    url = f"ws://127.0.0.1:{port}/v1/stream"
    truth = melody()
    pcm = (np.clip(render(truth, RATE, truth[-1].offset + 0.5), -1, 1) * 32767).astype("<i2").tobytes()
    clients = [Client() for _ in range(CLIENTS)]

    async def staggered(i: int) -> None:
        await asyncio.sleep(0.5 * i)
        await stream(url, pcm, clients[i])

    async def waiting(start: bool) -> tuple[list[p.ServerMessage], int | None]:
        """Connected but silent: before `start`, or started without sending audio yet."""
        async with websockets.connect(url) as ws:
            if start:
                await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
            messages = []
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    messages.append(p.decode_server(raw))
        return messages, ws.close_code

    tasks = [asyncio.create_task(staggered(i)) for i in range(CLIENTS)]
    silent = [asyncio.create_task(waiting(start)) for start in (False, True)]
    await asyncio.sleep(SIGTERM_AFTER_S)
    for client in clients:
        client.sent_at_sigterm_s = client.sent_s
    sigterm_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    # While the sessions drain, readiness fails (a balancer sends nobody new) and a new session is refused.
    await asyncio.sleep(0.2)
    status, body = await asyncio.to_thread(readiness, port)
    assert status == 503 and body["status"] == "draining"
    async with websockets.connect(url, open_timeout=5) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):  # the refusal may come before our `start`
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
        refused = [p.decode_server(raw) async for raw in ws]
    assert [m.code for m in refused if isinstance(m, p.Error)] == ["shutting_down"] and ws.close_code == 1001

    await asyncio.wait_for(asyncio.gather(*tasks), GRACE_S + 10)
    (unstarted, unstarted_close), (started, started_close) = await asyncio.wait_for(asyncio.gather(*silent), 5)
    assert [m.code for m in unstarted if isinstance(m, p.Error)] == ["shutting_down"] and unstarted_close == 1001
    assert [type(m) for m in started] == [p.Ready, p.Done] and started[1].duration == 0 and started_close == 1001
    exit_code = await asyncio.to_thread(proc.wait, GRACE_S + 10)
    exited_after = time.monotonic() - sigterm_at
    server_log = log.read_text()
    assert exit_code == 0, server_log
    assert exited_after < GRACE_S, f"exit took {exited_after:.1f} s"
    assert "Traceback" not in server_log, server_log

    for i, client in enumerate(clients):
        assert isinstance(client.messages[0], p.Ready), client.messages[:1]
        done = client.messages[-1]
        assert isinstance(done, p.Done), f"client {i}: last message {done!r}"
        assert sum(isinstance(m, p.Done) for m in client.messages) == 1
        assert not [m for m in client.messages if isinstance(m, p.Error)]
        assert client.close_code == 1001, f"client {i}: close code {client.close_code}"
        # The session streamed on for the drain, then ended at the server's stop, within what was sent.
        assert client.sent_at_sigterm_s + DRAIN_S - 0.3 <= done.duration <= client.sent_s + 1e-6
        assert done.duration < truth[-1].offset, "SIGTERM came mid-stream"
        events = client.events
        assert_event_invariants(events)  # every note_on got its note_off
        assert done.notes == len(events) // 2
        assert all(e.time <= done.duration + 1e-6 for e in events)
        # All notes begun in the audio the server received are there (the last 0.2 s may be too short to tell).
        got = events_to_notes(events)
        heard = [n for n in truth if n.onset < done.duration - 0.2]
        assert [n for n, hit in match(heard, got) if hit is not None] == heard, f"client {i}: heard {heard}, got {got}"
        # The session's MIDI file was written at shutdown and holds the same notes (times within half a tick).
        session = client.messages[0].session
        path = midi_dir / f"{session}.mid"
        assert path.is_file(), f"no MIDI file for session {session}: {os.listdir(midi_dir)}"
        from_file = read_notes(path)
        assert [n.pitch for n in from_file] == [n.pitch for n in got]
        half_tick = 0.5 / 1920
        for a, b in zip(from_file, got, strict=True):
            assert abs(a.onset - b.onset) <= half_tick + 1e-9 and abs(a.offset - b.offset) <= half_tick + 1e-9
