"""Bounded soak test: a server in its own process, clients connecting and disconnecting at random for a fixed time.

`--clients` client loops (default 8) run in this process (asyncio), each repeating until the deadline: pick a
behaviour at random, run one session, pause 0–2 s. Well-behaved sessions stream a synthesized piece at real-time
pace (some with flushes) and check what comes back (every note_on closed, times in order, `done`); the others
misbehave: malformed JSON, NaN floats, oversize frames, audio before `start`, abrupt disconnects mid-note, idle
sessions left to time out, connections closed before `start`, and the hostile clients of the red-team report:
huge finite floats (stereo, to overflow a downmix), a minute of 8 kHz audio in one frame, uploads that vanish while
throttled, clients that stop reading, ping-only idlers before and after `start`, flushes after `stop`. Every
`--sample-every` seconds the server process is
sampled: RSS, threads, open file descriptors (psutil), asyncio tasks and active sessions (`GET /metrics`). At the
end, after all clients have left, one last sample shows what the server holds when idle again.

Run: .venv/bin/python -m benchmarks.soak [--minutes 10] [--clients 8] [--sample-every 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import websockets

from benchmarks.common import machine, server_process, table
from streamer import protocol as p
from streamer.audio.test_signals import random_piece, render

RATE = 22050
FRAME_S = 0.05
PIECE_S = 12.0
IDLE_TIMEOUT_S = 5.0
MAX_FRAME_BYTES = 1 << 20
BEHAVIOURS = {  # behaviour: weight
    "stream": 5,
    "stream_flush": 2,
    "abrupt": 2,
    "bad_json": 1,
    "nan": 1,
    "oversize": 1,
    "audio_before_start": 1,
    "idle": 1,
    "no_start": 1,
    "huge_floats": 1,
    "low_rate_large": 1,
    "throttled_vanish": 1,
    "not_reading": 1,
    "ping_idler": 1,
    "ping_no_start": 1,
    "flush_after_stop": 1,
}
EXPECTED_CODE = {
    "bad_json": "bad_message",
    "nan": "bad_audio",
    "oversize": "frame_too_large",
    "audio_before_start": "not_started",
    "idle": "timeout",
    "huge_floats": "bad_audio",
    "low_rate_large": "frame_too_large",
    "ping_idler": "timeout",
    "ping_no_start": "timeout",
}
HOSTILE = ("throttled_vanish", "not_reading", "flush_after_stop")
SOAK_CONFIG = f"""
[limits]
idle_timeout_s = {IDLE_TIMEOUT_S}
start_timeout_s = {IDLE_TIMEOUT_S}
max_sessions_per_client = 16
"""


@dataclass
class Tally:
    sessions: Counter[str] = field(default_factory=Counter)
    client_errors: Counter[str] = field(default_factory=Counter)  # error codes the clients received
    surprises: list[str] = field(default_factory=list)  # anything a behaviour did not expect
    notes: int = 0
    lagging: int = 0


@dataclass
class Sample:
    t: float
    rss_mb: float
    threads: int
    fds: int
    tasks: float
    sessions: float


def metric_values(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def sample(proc: psutil.Process, base: str, t0: float) -> Sample:
    metrics = metric_values(base)
    return Sample(
        t=time.monotonic() - t0,
        rss_mb=proc.memory_info().rss / 2**20,
        threads=proc.num_threads(),
        fds=proc.num_fds(),
        tasks=metrics.get("streamer_asyncio_tasks", float("nan")),
        sessions=metrics.get("streamer_active_sessions", float("nan")),
    )


def check_events(events: list[p.NoteEvent]) -> str | None:
    last = float("-inf")
    open_ids: set[int] = set()
    seen: set[int] = set()
    for e in events:
        if e.time < last:
            return f"time went backwards at {e}"
        last = e.time
        if isinstance(e, p.NoteOn):
            if e.id in seen:
                return f"duplicate note_on {e.id}"
            seen.add(e.id)
            open_ids.add(e.id)
        elif e.id not in open_ids:
            return f"note_off without open note_on: {e}"
        else:
            open_ids.discard(e.id)
    return f"unclosed notes {sorted(open_ids)}" if open_ids else None


async def collect(ws: websockets.ClientConnection, timeout: float) -> list[p.ServerMessage]:
    messages: list[p.ServerMessage] = []

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                messages.append(p.decode_server(raw))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return messages


async def stream_session(url: str, pcm: bytes, tally: Tally, rng: random.Random, flush: bool, abrupt: bool) -> None:
    seconds = rng.uniform(2.0, PIECE_S)
    frame = int(FRAME_S * RATE) * 2
    total = int(seconds * RATE) * 2
    messages: list[p.ServerMessage] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE}))
        messages.append(p.decode_server(await ws.recv()))
        reader = asyncio.create_task(collect(ws, seconds + 30))
        t0 = time.monotonic()
        for i, pos in enumerate(range(0, total, frame)):
            delay = t0 + i * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(pcm[pos : min(pos + frame, total)])
            if flush and i % 20 == 19:
                await ws.send('{"type": "flush"}')
        if abrupt:  # gone mid-note: no stop, no close handshake
            reader.cancel()
            ws.transport.abort()
            return
        await ws.send('{"type": "stop"}')
        messages += await reader
        close_code = ws.close_code
    events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
    tally.notes += sum(isinstance(e, p.NoteOn) for e in events)
    tally.lagging += sum(isinstance(m, p.Lagging) for m in messages)
    for m in messages:
        if isinstance(m, p.Error):
            tally.client_errors[m.code] += 1
    problem = check_events(events)
    if problem or not messages or not isinstance(messages[-1], p.Done) or close_code != 1000:
        last = messages[-1] if messages else None
        tally.surprises.append(f"stream: {problem or 'no done'}; last={last!r} close={close_code}")


async def hostile_session(url: str, behaviour: str, pcm: bytes, tally: Tally) -> None:
    """Clients that expect no error of their own: the server must simply cope (and stay healthy for others)."""
    start = json.dumps({"type": "start", "sample_rate": RATE})
    frame = int(FRAME_S * RATE) * 2
    if behaviour == "throttled_vanish":  # an upload at full speed, gone while the server holds it back
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send(start)
            await ws.recv()
            for pos in range(0, len(pcm), frame):
                await ws.send(pcm[pos : pos + frame])
            ws.transport.abort()
        return
    if behaviour == "not_reading":  # streams live but never reads a reply, then leaves
        async with websockets.connect(url, max_size=None, max_queue=1) as ws:
            await ws.send(start)
            t0 = time.monotonic()
            for i, pos in enumerate(range(0, min(len(pcm), frame * 100), frame)):
                await asyncio.sleep(max(0.0, t0 + i * FRAME_S - time.monotonic()))
                await ws.send(pcm[pos : pos + frame])
        return
    async with websockets.connect(url, max_size=None) as ws:  # flush_after_stop
        await ws.send(start)
        await ws.recv()
        for pos in range(0, frame * 40, frame):
            await ws.send(pcm[pos : pos + frame])
        await ws.send('{"type": "stop"}')
        for _ in range(12):
            await ws.send('{"type": "flush"}')
        messages = await collect(ws, 30)
    codes = [m.code for m in messages if isinstance(m, p.Error)]
    if codes or not messages or not isinstance(messages[-1], p.Done):
        tally.surprises.append(f"{behaviour}: errors {codes}, last {messages[-1] if messages else None!r}")


async def bad_session(url: str, behaviour: str, tally: Tally) -> None:
    start: dict[str, object] = {"type": "start", "sample_rate": RATE}
    async with websockets.connect(url, max_size=None) as ws:
        if behaviour == "no_start":
            return
        if behaviour == "audio_before_start":
            await ws.send(b"\0\0" * 1000)
        elif behaviour != "ping_no_start":  # that one just waits, answering the server's pings
            if behaviour in ("nan", "huge_floats"):
                start.update(encoding="f32le", channels=2 if behaviour == "huge_floats" else 1)
            if behaviour == "low_rate_large":
                start["sample_rate"] = 8000
            await ws.send(json.dumps(start))
            await ws.recv()
            with contextlib.suppress(websockets.ConnectionClosed):
                if behaviour == "bad_json":
                    await ws.send('{"type": "flush",')
                elif behaviour == "nan":
                    audio = np.zeros(1000, dtype="<f4")
                    audio[500] = np.nan
                    await ws.send(audio.tobytes())
                elif behaviour == "huge_floats":
                    await ws.send(np.full(2000, 3e38, dtype="<f4").tobytes())
                elif behaviour == "low_rate_large":
                    await ws.send(b"\0" * MAX_FRAME_BYTES)  # 65 s of 8 kHz audio
                elif behaviour == "oversize":
                    await ws.send(b"\0" * (MAX_FRAME_BYTES + 2))
        messages = await collect(ws, IDLE_TIMEOUT_S + 10)
    codes = [m.code for m in messages if isinstance(m, p.Error)]
    for code in codes:
        tally.client_errors[code] += 1
    if codes != [EXPECTED_CODE[behaviour]]:
        tally.surprises.append(f"{behaviour}: got {codes}, close {ws.close_code}")


async def client_loop(url: str, pieces: list[bytes], deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    names, weights = list(BEHAVIOURS), list(BEHAVIOURS.values())
    while time.monotonic() < deadline:
        behaviour = rng.choices(names, weights)[0]
        # A session must end by the deadline: streams are shortened, idles skipped, near the end.
        long_ones = ("idle", "stream", "stream_flush", "ping_idler", "ping_no_start", *HOSTILE)
        if time.monotonic() + PIECE_S + IDLE_TIMEOUT_S + 5 > deadline and behaviour in long_ones:
            behaviour = rng.choice(["bad_json", "nan", "oversize", "audio_before_start", "no_start"])
        tally.sessions[behaviour] += 1
        try:
            if behaviour.startswith("stream") or behaviour == "abrupt":
                await stream_session(
                    url, rng.choice(pieces), tally, rng, flush=behaviour == "stream_flush", abrupt=behaviour == "abrupt"
                )
            elif behaviour in HOSTILE:
                await hostile_session(url, behaviour, rng.choice(pieces), tally)
            else:
                await bad_session(url, behaviour, tally)
        except (OSError, websockets.WebSocketException) as e:
            tally.surprises.append(f"{behaviour}: {type(e).__name__}: {e}")
        await asyncio.sleep(rng.uniform(0.0, 2.0))


async def run_clients(url: str, clients: int, seconds: float, seed: int, tally: Tally) -> None:
    pieces = []
    for i in range(4):
        audio = render(random_piece(PIECE_S, seed=100 + i), RATE, PIECE_S)
        pieces.append((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client_loop(url, pieces, deadline, tally, seed * 1000 + i) for i in range(clients)))


async def sampler(proc: psutil.Process, base: str, every: float, t0: float, samples: list[Sample]) -> None:
    while True:
        samples.append(await asyncio.to_thread(sample, proc, base, t0))
        await asyncio.sleep(every)


async def soak(url: str, proc: psutil.Process, args: argparse.Namespace, tally: Tally) -> list[Sample]:
    base = url.replace("ws://", "http://").removesuffix("/v1/stream")
    samples: list[Sample] = []
    t0 = time.monotonic()
    task = asyncio.create_task(sampler(proc, base, args.sample_every, t0, samples))
    await run_clients(url, args.clients, args.minutes * 60, args.seed, tally)
    task.cancel()
    await asyncio.sleep(3.0)  # let the server release the last sessions
    samples.append(await asyncio.to_thread(sample, proc, base, t0))
    errors = {k.split('"')[1]: v for k, v in metric_values(base).items() if k.startswith("streamer_errors_total{")}
    tally.client_errors = Counter(
        {f"{code} (server count {errors.get(code, 0):g})": n for code, n in tally.client_errors.items()}
    )
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "soak.toml"
        config.write_text(SOAK_CONFIG)
        with server_process("--config", str(config)) as (url, server):
            proc = psutil.Process(server.pid)
            samples = asyncio.run(soak(url, proc, args, tally))
            alive = server.poll() is None

    print(f"soak: {args.minutes:g} min, {args.clients} clients; machine: {machine()}")
    print(f"server alive at the end: {alive}")
    step = max(1, round(60 / args.sample_every))  # one row a minute, plus the first and the final idle sample
    rows = [s for i, s in enumerate(samples[:-1]) if i % step == 0] + [samples[-1]]
    print(
        table(
            ["t (s)", "RSS (MiB)", "threads", "fds", "asyncio tasks", "sessions"],
            [[round(s.t), f"{s.rss_mb:.1f}", s.threads, s.fds, int(s.tasks), int(s.sessions)] for s in rows],
        )
    )
    warm = [s for s in samples[:-1] if s.t >= 60] or samples
    if len(warm) >= 2:
        ts = np.array([s.t for s in warm])
        rss = np.array([s.rss_mb for s in warm])
        slope = float(np.polyfit(ts, rss, 1)[0]) * 60
        print(
            f"RSS after the first minute: min {rss.min():.1f}, max {rss.max():.1f} MiB; "
            f"linear trend {slope:+.2f} MiB/min"
        )
    print(
        f"max over the run: threads {max(s.threads for s in samples)}, fds {max(s.fds for s in samples)}, "
        f"tasks {max(s.tasks for s in samples):g}"
    )
    print(table(["behaviour", "sessions"], sorted(tally.sessions.items())))
    print(table(["error code received by clients", "count"], sorted(tally.client_errors.items())))
    print(f"notes received by well-behaved streams: {tally.notes}; lagging warnings: {tally.lagging}")
    print(f"unexpected outcomes: {len(tally.surprises)}")
    for line in tally.surprises[:20]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
