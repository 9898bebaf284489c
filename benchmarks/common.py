"""Helpers shared by the benchmarks: a server in its own process, note matching, percentiles, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from streamer.notes import Note
from streamer.server import protocol as p

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(*args: str, timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamer serve` on a free loopback port in its own process; yields (ws url, process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamer.cli", "--log-level", "WARNING", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"server did not start: {log}") from None
                time.sleep(0.2)
        yield f"ws://127.0.0.1:{port}/v1/stream", proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def onset_latencies(truth: Sequence[Note], events: Sequence[p.NoteEvent], arrivals: Sequence[float]) -> list[float]:
    """For each true note matched by a note_on (same pitch, onset within 50 ms): arrival time − true onset."""
    ons = [(e, a) for e, a in zip(events, arrivals, strict=True) if isinstance(e, p.NoteOn)]
    used: set[int] = set()
    latencies = []
    for note in truth:
        for i, (e, a) in enumerate(ons):
            if i not in used and e.pitch == note.pitch and abs(e.time - note.onset) <= 0.05:
                used.add(i)
                latencies.append(a - note.onset)
                break
    return latencies


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
