"""Load test: N live clients streaming real music at real-time pace to one server, for the default model.

For each setting (the default, basic-pitch streaming; optionally the windowed ONNX path at given hops), a fresh
`streamer serve` runs in its own process; this process runs the N clients (asyncio, one process, never the
server's). Client i streams item i (cycling) of the accuracy set (benchmarks/evalset.py: music21 pieces rendered
with FluidSynth, dense piano included, clean and noisy; 44.1 kHz s16le in 20 ms frames) at real-time pace, starting
at a random offset within the first half second, then sends `stop`. Reported per (setting, N): streams that stayed
real-time (finished with `done`, no window skipped, no `lagging`), onset-to-event latency p50/p95/p99 over every
correctly transcribed note of all streams (`onset_latencies`), skipped windows and `lagging` messages, the server
process's CPU (percent of one core, averaged over the run) and peak RSS, and this client process's CPU. N grows
(1, 2, 4, 8, 12, 16, 20, 24, 32, ...) until a run is not real-time or its p95 reaches 2 s (overload); reported per
setting: the largest N that stayed real-time, and the largest that did so with p95 under --p95-limit.

Run: .venv/bin/python -m benchmarks.load_test [--seconds 20] [--windowed-hops 0.5] [--max-clients 48]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import machine, onset_latencies, percentile, server_process, table
from benchmarks.evalset import RATE, SetSettings, build_set
from streamer.client.stream import StreamResult, stream_audio
from streamer.notes import Note

OVERLOAD_P95_S = 2.0  # past this the server is clearly not keeping up: stop adding clients
STEPS = (1, 2, 4, 8, 12, 16, 20, 24, 32, 40, 48, 64)
LOAD_CONFIG = """
[limits]
max_sessions = 256
max_sessions_per_client = 256
[server]
max_connections_per_client = 512
"""
WINDOWED = """
[models.basic-pitch]
streaming = false
[windowing]
hop = {hop}
"""


@dataclass
class Run:
    hop: str
    clients: int
    realtime: int
    latencies: list[float]
    matched: int
    truth: int
    skipped: int
    lagging: int
    server_cpu: float
    server_rss_mb: float
    client_cpu: float

    @property
    def sustained(self) -> bool:
        return self.realtime == self.clients and percentile(self.latencies, 95) < OVERLOAD_P95_S

    def passed(self, limit: float) -> bool:
        return self.realtime == self.clients and percentile(self.latencies, 95) < limit


async def one_client(url: str, audio: np.ndarray, delay: float) -> StreamResult:
    await asyncio.sleep(delay)
    return await stream_audio(url, audio[:, None], RATE, speed=1.0)


async def watch_rss(proc: psutil.Process, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
        await asyncio.sleep(0.5)


async def load(url: str, proc: psutil.Process, pieces: list[tuple[list[Note], np.ndarray]], hop: str) -> Run:
    rng = random.Random(len(pieces))
    me = psutil.Process()
    server_cpu0, client_cpu0, t0 = proc.cpu_times(), me.cpu_times(), time.monotonic()
    peak = [0.0]
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_rss(proc, peak, stop))
    results = await asyncio.gather(*(one_client(url, audio, rng.uniform(0, 0.5)) for _, audio in pieces))
    stop.set()
    await watcher
    wall = time.monotonic() - t0
    server_cpu1, client_cpu1 = proc.cpu_times(), me.cpu_times()
    latencies: list[float] = []
    realtime = skipped = lagging = 0
    for (truth, _), result in zip(pieces, results, strict=True):
        latencies += onset_latencies(truth, result.events, result.arrivals)
        run_skipped = result.done.skipped_windows if result.done else 0
        skipped += run_skipped
        lagging += len(result.lagging)
        if result.done is not None and not run_skipped and not result.lagging and not result.errors:
            realtime += 1
    return Run(
        hop=hop,
        clients=len(pieces),
        realtime=realtime,
        latencies=latencies,
        matched=len(latencies),
        truth=sum(len(t) for t, _ in pieces),
        skipped=skipped,
        lagging=lagging,
        server_cpu=100 * (sum(server_cpu1[:2]) - sum(server_cpu0[:2])) / wall,
        server_rss_mb=peak[0],
        client_cpu=100 * (sum(client_cpu1[:2]) - sum(client_cpu0[:2])) / wall,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per client")
    parser.add_argument("--windowed-hops", type=float, nargs="*", default=[], help="also the windowed ONNX path")
    parser.add_argument("--max-clients", type=int, default=48)
    parser.add_argument("--p95-limit", type=float, default=0.5)
    args = parser.parse_args()

    items = build_set(SetSettings(seconds=args.seconds))
    pieces_all = []
    for i in range(args.max_clients):
        item = items[i % len(items)]
        audio, rate = item.audio()
        assert rate == RATE
        pieces_all.append(([n for n in item.reference() if not n.is_drum], audio))
    settings = [("streaming", "")] + [(f"windowed {h:g}", WINDOWED.format(hop=h)) for h in args.windowed_hops]
    runs: list[Run] = []
    best: dict[str, list[str]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in settings:
            config = Path(tmp) / "load.toml"
            config.write_text(LOAD_CONFIG + extra)
            best[label] = ["0", "0"]
            with server_process("--config", str(config)) as (url, server):
                proc = psutil.Process(server.pid)
                for n in [n for n in STEPS if n <= args.max_clients]:
                    run = asyncio.run(load(url, proc, pieces_all[:n], label))
                    runs.append(run)
                    print(
                        f"{label} N={n}: real-time {run.realtime}/{n}, p95 "
                        f"{percentile(run.latencies, 95):.3f} s, server CPU {run.server_cpu:.0f}%",
                        flush=True,
                    )
                    if not run.sustained:
                        break
                    best[label][0] = str(n)
                    if run.passed(args.p95_limit):
                        best[label][1] = str(n)

    print(
        f"\nbasic-pitch, {args.seconds:g} s of accuracy-set music per client at real-time pace, 44.1 kHz s16le 20 ms "
        f"frames over loopback; clients in one asyncio process beside the server's; machine: {machine()}; "
        f"total {time.monotonic() - started:.0f} s"
    )
    rows = [
        [
            r.hop,
            r.clients,
            f"{r.realtime}/{r.clients}",
            f"{r.matched}/{r.truth}",
            f"{percentile(r.latencies, 50):.3f}",
            f"{percentile(r.latencies, 95):.3f}",
            f"{percentile(r.latencies, 99):.3f}",
            r.skipped,
            r.lagging,
            f"{r.server_cpu:.0f}",
            f"{r.server_rss_mb:.0f}",
            f"{r.client_cpu:.0f}",
            "yes" if r.passed(args.p95_limit) else "no",
        ]
        for r in runs
    ]
    headers = ["setting", "N", "real-time streams", "notes matched", "p50 (s)", "p95 (s)", "p99 (s)",
               "skipped windows", "lagging msgs", "server CPU %", "server RSS MiB", "client CPU %",
               f"pass (p95 < {args.p95_limit:g} s)"]  # fmt: skip
    print(table(headers, rows))
    print(
        table(
            ["setting", "largest N real-time", f"largest N real-time with p95 < {args.p95_limit:g} s"],
            [[label, *labels] for label, labels in best.items()],
        )
    )


if __name__ == "__main__":
    main()
