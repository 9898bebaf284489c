"""Helpers shared by the benchmarks: a server in its own process, note matching, percentiles, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer import protocol as p
from streamer.notes import Note
from streamer.server.process import start_server

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def server_process(*args: str, timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:  # type: ignore[type-arg]
    """`streamer serve ARGS` on a free loopback port in its own process; yields (ws url, process)."""
    command = [sys.executable, "-m", "streamer.cli", "--log-level", "WARNING"]
    with start_server(command, args=args, timeout=timeout) as server:
        yield server.ws_url, server.process


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


@dataclass
class NoteComparison:
    """A stream's notes against a reference (the same audio streamed to a server alone): `missing` reference notes
    (no note of the same pitch within 50 ms), `duplicates` (notes striking again a pitch the reference holds at
    that moment: one note counted twice), and `others` (notes the reference does not have at all: after a resume
    the model hears the same audio with a different history, and a ghost note may come or go)."""

    missing: list[Note]
    duplicates: list[Note]
    others: list[Note]


def compare_notes(reference: Sequence[Note], got: Sequence[Note], tolerance: float = 0.05) -> NoteComparison:
    free = list(got)
    missing = []
    for note in reference:
        hit = next((g for g in free if g.pitch == note.pitch and abs(g.onset - note.onset) <= tolerance), None)
        if hit is None:
            missing.append(note)
        else:
            free.remove(hit)

    def held(note: Note) -> bool:
        return any(r.pitch == note.pitch and r.onset < note.onset < r.offset for r in reference)

    return NoteComparison(missing, [g for g in free if held(g)], [g for g in free if not held(g)])


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
