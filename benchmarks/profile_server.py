"""Where a server's CPU goes per live stream at the defaults: the model (network, note decisions) and the rest.

`streamer serve` runs in its own process with the default model; N clients (default 16) in this process stream
items of the accuracy set at real-time pace (as benchmarks/load_test.py does), while py-spy samples the server's
threads on CPU (`py-spy record --format raw`, sampling profiler, no instrumentation). Each sample's stack is put in
the first category it touches, most specific first: the network (numpy streaming network), note decisions (online
note tracker), audio in (PCM decode, resampling), sinks, the session core (session, streaming track, protocol),
the engine (batching), the server's I/O (aiohttp, asyncio, websockets frames), other. Reported per category: share
of the samples, and CPU ms per second of audio per stream (share × server CPU time ÷ stream-seconds).

Needs py-spy (`pip install py-spy`; on Linux it needs ptrace permission over the server process, as root here).
Run: .venv/bin/python -m benchmarks.profile_server [--clients 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from benchmarks.common import machine, server_process, table
from benchmarks.evalset import SetSettings, build_set
from benchmarks.load_test import LOAD_CONFIG, one_client

CATEGORIES = (  # (label, path fragments of a frame's file), most specific first
    ("model: network", ("basic_pitch/incremental.py", "basic_pitch/network.py", "basic_pitch/streaming_cqt.py",
                        "basic_pitch/cqt.py")),
    ("model: note decisions", ("basic_pitch/note_tracker.py", "basic_pitch/onset_peaks.py",
                               "basic_pitch/frame_history.py", "basic_pitch/melodia.py",
                               "basic_pitch/streaming_model.py")),
    ("audio in (decode, resample)", ("streamer/audio/", "soxr")),
    ("sinks", ("streamer/sinks/",)),
    ("session core", ("streamer/session.py", "streamer/streaming.py", "streamer/windowed.py", "streamer/stitch.py",
                      "streamer/limits.py", "streamer/protocol.py", "msgspec")),
    ("engine", ("streamer/engine.py",)),
    ("server I/O (aiohttp, asyncio)", ("aiohttp", "asyncio", "streamer/server/", "selectors", "socket")),
)  # fmt: skip


def categorise(stack: str) -> str:
    for label, fragments in CATEGORIES:
        if any(fragment in stack for fragment in fragments):
            return label
    return "other"


def read_raw(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[categorise(stack)] += int(count)
    return counts


async def clients(url: str, pieces: list, seconds: float) -> None:  # type: ignore[type-arg]
    rng = random.Random(0)
    await asyncio.gather(*(one_client(url, audio, rng.uniform(0, 0.5)) for _, audio in pieces))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy")

    items = build_set(SetSettings(seconds=args.seconds))
    pieces = []
    for i in range(args.clients):
        item = items[i % len(items)]
        audio, _ = item.audio()
        pieces.append((item.reference(), audio))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "load.toml"
        config.write_text(LOAD_CONFIG)
        raw = Path(tmp) / "profile.txt"
        with server_process("--config", str(config)) as (url, server):
            proc = psutil.Process(server.pid)
            cpu0, t0 = proc.cpu_times(), time.monotonic()
            record = subprocess.Popen(
                [py_spy, "record", "--pid", str(server.pid), "--rate", str(args.rate), "--format", "raw",
                 "--output", str(raw), "--nonblocking", "--duration", str(int(args.seconds + 3))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            asyncio.run(clients(url, pieces, args.seconds))
            cpu1, wall = proc.cpu_times(), time.monotonic() - t0
            record.wait(60)
        counts = read_raw(raw)
    cpu_s = sum(cpu1[:2]) - sum(cpu0[:2])
    total = sum(counts.values()) or 1
    stream_seconds = args.clients * args.seconds
    rows = [
        [label, f"{100 * n / total:.1f}", f"{1000 * cpu_s * n / total / stream_seconds:.1f}"]
        for label, n in counts.most_common()
    ]
    rows.append(["all", "100.0", f"{1000 * cpu_s / stream_seconds:.1f}"])
    print(
        f"{args.clients} real-time streams of {args.seconds:g} s (accuracy-set music), server CPU "
        f"{100 * cpu_s / wall:.0f}% of one core over {wall:.0f} s; machine: {machine()}"
    )
    print(table(["where", "share of server CPU samples (%)", "CPU ms per audio second per stream"], rows))


if __name__ == "__main__":
    main()
