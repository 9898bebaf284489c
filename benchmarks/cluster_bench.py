"""Cluster benchmark: live clients through HAProxy in front of several front ends, as `make cluster N=3` runs them,
while one front end is stopped (SIGTERM) or killed (SIGKILL) mid-stream.

Each client streams its own piece (`random_piece(seconds, seed=i)`, two voices, FluidSynth's General MIDI piano,
44.1 kHz s16le in 20 ms frames) at real-time pace with the resuming client of `streamer stream`, the clients
starting 0.2 s apart. A client's reference is its piece streamed to a server alone, as fast as the server takes it.
Three phases, each on a fresh cluster (deploy/cluster.py, default server settings):

- spread: sessions per front end once every client streams (each server's /healthz);
- sigterm: at --fail-at seconds, SIGTERM to the front end holding the first client: it drains for `[server]
  drain_s` (5 s), then ends its sessions (1001) and its clients resume elsewhere;
- sigkill: at --fail-at seconds, SIGKILL to the front end holding the first client.

Reported per client that resumed, and per phase: notes against the reference (missing, struck twice, others),
`lagging` messages, time from the failure to the resumed session's `ready`, time from the client noticing to it,
audio the failed server had not confirmed (sent again), audio lost.

Run: .venv/bin/python -m benchmarks.cluster_bench [--clients 12] [--servers 3] [--seconds 15] [--fail-at 5]
     [--interim]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import NoteComparison, compare_notes, machine, percentile, table
from benchmarks.evalset import RATE, render_midi
from deploy.cluster import start_cluster
from streamer.audio.test_signals import random_piece
from streamer.client.stream import ResumePolicy, StreamResult, stream_audio
from streamer.server.process import ServerProcess
from streamer.sinks.midi_file import notes_to_midi
from streamer.stitch import events_to_notes

START_GAP_S = 0.2


@dataclass
class Client:
    index: int
    server: int  # the front end its first session landed on
    result: StreamResult
    notes: NoteComparison
    reference_notes: int


@dataclass
class Phase:
    name: str
    spread: list[int | None]  # sessions per front end once every client streams
    failed: int | None  # the front end stopped or killed
    failed_at: float
    clients: list[Client]
    cpu: list[float]  # each front end's CPU over the streams, in cores (1.0: one core busy throughout)


def pieces(count: int, seconds: float) -> list[np.ndarray]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            path = Path(tmp) / f"{i}.mid"
            notes_to_midi(random_piece(seconds, seed=i, polyphony=2)).save(str(path))
            out.append(render_midi(path, seconds)[:, None])
    return out


async def run_phase(name: str, servers: int, audio: list[np.ndarray], references: list[StreamResult], fail_at: float,
                    fail: Callable[[ServerProcess], None] | None, policy: ResumePolicy) -> Phase:  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, start_cluster(servers, Path(tmp)) as cluster:
        tasks: list[asyncio.Task[StreamResult]] = []
        landed: list[int] = []
        before = await asyncio.to_thread(cluster.sessions)
        processes = [psutil.Process(s.process.pid) for s in cluster.servers]
        cpu_before = [cpu_seconds(p) for p in processes]
        started = time.monotonic()
        for piece in audio:
            tasks.append(asyncio.create_task(stream_audio(cluster.url, piece, RATE, resume=policy)))
            await asyncio.sleep(START_GAP_S)
            now = await asyncio.to_thread(cluster.sessions)
            grew = [i for i, (a, b) in enumerate(zip(before, now, strict=True)) if (b or 0) > (a or 0)]
            landed.append(grew[0] if grew else -1)
            before = now
        spread = await asyncio.to_thread(cluster.sessions)
        failed = landed[0] if fail is not None else None
        await asyncio.sleep(max(0.0, started + fail_at - time.monotonic()))
        failed_at = time.monotonic()
        if fail is not None and failed is not None:
            fail(cluster.servers[failed])
        results = await asyncio.gather(*tasks)
        wall = time.monotonic() - started
        cpu = [(cpu_seconds(p) - c) / wall for p, c in zip(processes, cpu_before, strict=True)]
    clients = []
    for i, (result, reference) in enumerate(zip(results, references, strict=True)):
        ref_notes = events_to_notes(reference.events)
        compared = compare_notes(ref_notes, events_to_notes(result.events))
        clients.append(Client(i, landed[i], result, compared, len(ref_notes)))
    return Phase(name, spread, failed, failed_at, clients, cpu)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time so far; a killed server's is what it had when last read."""
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return float("nan")
    return float(times.user + times.system)


def client_rows(phase: Phase) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in phase.clients:
        if not c.result.resumes:
            continue
        r = c.result.resumes[0]
        kept = f"{c.reference_notes - len(c.notes.missing)}/{c.reference_notes}"
        rows.append([phase.name, c.index, f"s{c.server + 1}", r.reason, round(r.at, 3), r.ready_at - phase.failed_at,
                     r.reconnect_s, r.uncommitted, r.lost, kept, len(c.notes.duplicates), len(c.notes.others),
                     len(c.result.lagging)])  # fmt: skip
    return rows


def summary_row(phase: Phase) -> list[object]:
    resumed = [c for c in phase.clients if c.result.resumes]
    ready = [c.result.resumes[0].ready_at - phase.failed_at for c in resumed]
    notice = [c.result.resumes[0].reconnect_s for c in resumed]
    uncommitted = [c.result.resumes[0].uncommitted for c in resumed]
    lost = [c.result.resumes[0].lost for c in resumed]
    kept = sum(1 for c in phase.clients if not c.notes.missing and c.result.done is not None)
    return [
        phase.name,
        " / ".join(str(n) for n in phase.spread),
        f"{len(resumed)}/{len(phase.clients)}",
        f"{kept}/{len(phase.clients)}",
        sum(len(c.notes.missing) for c in phase.clients),
        sum(len(c.notes.duplicates) for c in phase.clients),
        sum(len(c.notes.others) for c in phase.clients),
        sum(1 for c in phase.clients if c.result.lagging),
        f"{percentile(ready, 50):.3f} / {max(ready):.3f}" if ready else "-",
        f"{percentile(notice, 50):.3f} / {max(notice):.3f}" if notice else "-",
        f"{percentile(uncommitted, 50):.3f} / {max(uncommitted):.3f}" if uncommitted else "-",
        f"{max(lost):.3f}" if lost else "-",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each client's piece")
    parser.add_argument("--fail-at", type=float, default=5.0, help="seconds after the first client started")
    parser.add_argument("--interim", action="store_true",
                        help="clients also ask for interim notes (about 4x the server's CPU per stream); resuming "
                             "needs only the free progress messages")  # fmt: skip
    args = parser.parse_args()
    policy = ResumePolicy(interim=args.interim)
    began = time.monotonic()
    audio = pieces(args.clients, args.seconds)
    with tempfile.TemporaryDirectory() as tmp, start_cluster(1, Path(tmp)) as alone:
        references = [await stream_audio(alone.servers[0].ws_url, a, RATE, speed=0, interim=policy.interim)
                      for a in audio]  # fmt: skip
    kill = ServerProcess.kill

    def term(server: ServerProcess) -> None:
        server.process.send_signal(signal.SIGTERM)

    phases = [
        await run_phase("spread", args.servers, audio, references, args.fail_at, None, policy),
        await run_phase("sigterm", args.servers, audio, references, args.fail_at, term, policy),
        await run_phase("sigkill", args.servers, audio, references, args.fail_at, kill, policy),
    ]
    print(f"# {args.clients} clients × {args.seconds:g} s pieces, {args.servers} front ends behind HAProxy; "
          f"failure at {args.fail_at:g} s; interim messages {'on' if args.interim else 'off'}")  # fmt: skip
    print(f"machine: {machine()}; {time.monotonic() - began:.0f} s in all\n")
    print(table(["phase", "sessions per server", "resumed", "all notes kept", "notes missing", "struck twice",
                 "other notes", "clients lagging", "failure → ready p50 / max (s)", "noticed → ready p50 / max (s)",
                 "unconfirmed, sent again p50 / max (s)", "audio lost max (s)"],
                [summary_row(ph) for ph in phases]))  # fmt: skip
    spread = phases[0]
    per_stream = [c / n for c, n in zip(spread.cpu, spread.spread, strict=True) if n]
    print()
    print(table(["front end", "sessions", "CPU (cores)", "CPU per stream (% of a core)"],
                [[f"s{i + 1}", n, c, f"{100 * c / n:.1f}" if n else "-"]
                 for i, (n, c) in enumerate(zip(spread.spread, spread.cpu, strict=True))]))  # fmt: skip
    print(f"spread phase: {100 * sum(spread.cpu) / max(1, sum(n or 0 for n in spread.spread)):.1f} % of a core per "
          f"stream over all front ends (min {100 * min(per_stream):.1f}, max {100 * max(per_stream):.1f})")  # fmt: skip
    print()
    print(table(["phase", "client", "server", "reason", "resumed at (s)", "failure → ready (s)", "noticed → ready (s)",
                 "unconfirmed (s)", "lost (s)", "notes kept", "struck twice", "other notes", "lagging msgs"],
                [row for ph in phases for row in client_rows(ph)]))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
