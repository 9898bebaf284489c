"""Model replicas in Ray Serve vs the local engine: what the replicas add to each window, and a replica killed mid-run.

`streamer replicas` starts basic-pitch (windowed, `streaming = false`) replicas on loopback, in their own processes.
Each phase starts its servers in processes of their own (two front ends on the replicas, `[engine] backend = "ray"`,
or one server on the local engine with the same model); this process runs only the clients. Added latency per window
= from the window's submission to its result, minus the model call it ran in (the batch's): queueing, waiting for a
batch to fill, and for replicas the way there and back.

- one window at a time: each engine (in this process) gets `--windows` windows of one stream, each sent when the
  last came back: the engine's own cost without queueing.

Then the same pieces (random notes rendered at 22.05 kHz) are streamed by `--sessions` clients per front end (the
local server gets all of them), live (real-time pace: a lagging session has windows merged, `skipped`) and as uploads
(as fast as the server takes them: nothing is skipped, so the notes must be the local server's, session by session):

- local engine: one server, the model in its own engine.
- replicas: two front ends on the replicas. Round trip = from sending a window to its reply.
- replicas, 1 killed: uploads again, and one replica is SIGKILLed a second in (uploads keep windows out): sessions that
  failed, client errors, windows retried, and whether the notes are still the local server's.

Run: .venv/bin/python -m benchmarks.replica_bench [--seconds 20] [--sessions 2] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from benchmarks.common import machine, percentile, table
from streamer.audio.test_signals import random_piece, render
from streamer.audio.windows import WindowCutter
from streamer.client.stream import StreamResult, stream_audio
from streamer.config import load_config
from streamer.engine import Engine, EngineObserver
from streamer.models.registry import load_model
from streamer.replicas.process import ReplicasProcess, start_replicas
from streamer.replicas.remote_engine import RemoteEngine
from streamer.server.app import STATE, create_app, load_models

RATE = 22050
MODEL = "basic-pitch"
OPTIONS = {"streaming": False}


@dataclass
class Recorder:
    """Tees an engine's observer: per window, its latency beyond the model call, and the batch sizes."""

    inner: EngineObserver | None
    added: list[float] = field(default_factory=list)
    model_s: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def on_batch(self, size: int, seconds: float, latencies: list[float]) -> None:
        self.added += [latency - seconds for latency in latencies]
        self.model_s.append(seconds)
        self.sizes.append(size)
        if self.inner is not None:
            self.inner.on_batch(size, seconds, latencies)

    def on_skipped(self, count: int) -> None:
        if self.inner is not None:
            self.inner.on_skipped(count)

    def report(self, engine: Engine | RemoteEngine) -> dict[str, Any]:
        remote = isinstance(engine, RemoteEngine)
        return {
            "added": self.added, "model_s": self.model_s, "sizes": self.sizes,
            "round_trips": [t for t, _ in engine.stats.round_trips] if remote else [],
            "retries": engine.stats.retries if remote else 0,
        }  # fmt: skip


@dataclass
class Phase:
    name: str
    results: list[StreamResult]
    reports: list[dict[str, Any]]


# ---- servers, each in a process of its own -------------------------------------------------------------------------


def server_main(overrides: dict[str, Any], conn: Connection) -> None:
    asyncio.run(_serve(overrides, conn))


async def _serve(overrides: dict[str, Any], conn: Connection) -> None:
    """A server (local engine or front end, as `overrides` say) on a free port; its engine's figures on request."""
    config = load_config(overrides=overrides)
    app = create_app(config, load_models(config), owns_models=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    engine = app[STATE].engines[MODEL]
    recorder = Recorder(engine.observer)
    engine.observer = recorder
    conn.send(runner.addresses[0][1])
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "report"
    conn.send(recorder.report(engine))
    await runner.cleanup()


class Servers:
    def __init__(self, overrides: Sequence[dict[str, Any]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.links = []
        self.processes = []
        for settings in overrides:
            parent, child = context.Pipe()
            process = context.Process(target=server_main, args=(settings, child), daemon=True)
            process.start()
            self.links.append(parent)
            self.processes.append(process)
        self.urls = [f"ws://127.0.0.1:{link.recv()}/v1/stream" for link in self.links]

    def reports(self) -> list[dict[str, Any]]:
        for link in self.links:
            link.send("report")
        reports = [link.recv() for link in self.links]
        for process in self.processes:
            process.join(30)
        return reports


# ---- phases --------------------------------------------------------------------------------------------------------


async def stream_all(urls: Sequence[str], pieces: Sequence[np.ndarray], speed: float) -> list[StreamResult]:
    sessions = (stream_audio(u, p, RATE, speed=speed, model=MODEL) for u, p in zip(urls, pieces, strict=True))
    return list(await asyncio.gather(*sessions))


async def one_at_a_time(name: str, engine: Engine | RemoteEngine, piece: np.ndarray, count: int) -> Phase:
    """`count` windows of one stream, each sent when the last came back: the engine's own cost, no queueing."""
    recorder = Recorder(None)
    engine.observer = recorder
    engine.start(asyncio.get_running_loop())
    spec = engine.model.spec
    windows = WindowCutter(spec.window_samples, spec.hop_samples(spec.default_hop_s)).push(piece[:, 0])
    stream = engine.open_stream()
    for i in range(count):
        stream.submit(windows[i % len(windows)], lambda _: None, live=False)
        await engine.idle()
    await engine.stop(1.0)
    return Phase(name, [], [recorder.report(engine)])


async def run_phase(
    name: str, overrides: Sequence[dict[str, Any]], pieces: Sequence[np.ndarray], speed: float,
    replicas: ReplicasProcess | None = None, kill_after: float | None = None,
) -> Phase:  # fmt: skip
    servers = Servers(overrides)
    urls = [servers.urls[i % len(servers.urls)] for i in range(len(pieces))]
    sessions = asyncio.ensure_future(stream_all(urls, pieces, speed))
    if replicas is not None and kill_after is not None:
        await asyncio.sleep(kill_after)  # mid-run: uploads keep windows out all the time
        assert not sessions.done(), "the sessions ended before a replica could be killed"
        print(f"killed replica pid {replicas.kill_replica(MODEL)} {kill_after:.1f} s into the run", flush=True)
    results = await sessions
    return Phase(name, results, servers.reports())


def summary(phase: Phase, reference: Phase | None) -> list[object]:
    added = [a * 1000 for r in phase.reports for a in r["added"]]
    sizes = [s for r in phase.reports for s in r["sizes"]]
    model_ms = [m * 1000 for r in phase.reports for m in r["model_s"]]
    trips = [t * 1000 for r in phase.reports for t in r["round_trips"]]
    retries = sum(r["retries"] for r in phase.reports)
    failed = sum(1 for r in phase.results if r.done is None)
    errors = sum(len(r.errors) for r in phase.results)
    skipped = sum(r.done.skipped_windows for r in phase.results if r.done is not None)
    same = "—"
    if reference is not None:
        equal = sum(r.events == ref.events for r, ref in zip(phase.results, reference.results, strict=True))
        same = f"{equal}/{len(phase.results)}"
    return [
        phase.name, len(added), f"{percentile(added, 50):.1f}", f"{percentile(added, 95):.1f}",
        f"{percentile(trips, 50):.1f}" if trips else "—", f"{percentile(trips, 95):.1f}" if trips else "—",
        f"{percentile(model_ms, 50):.1f}", f"{np.mean(sizes):.2f}" if sizes else "—", skipped, retries,
        f"{failed}/{errors}", same,
    ]  # fmt: skip


async def main_async(args: argparse.Namespace, replicas: ReplicasProcess, startup_s: float) -> None:
    pieces = [
        render(random_piece(args.seconds - 1.0, seed=s), RATE, args.seconds)[:, None] for s in range(args.sessions * 2)
    ]
    common = {"model": MODEL, "models": {MODEL: OPTIONS}, "limits": {"max_sessions_per_client": 64}}
    local = {**common, "engine": {"backend": "local"}}
    remote = {**common, "engine": {"backend": "ray"},
              "replicas": {"address": replicas.address, "count": args.replicas, "retries": 4}}  # fmt: skip
    remote_config = load_config(overrides=remote)
    load = os.getloadavg()
    phases: list[tuple[Phase, Phase | None]] = [
        (await one_at_a_time("local engine, one window at a time", Engine(load_model(MODEL, OPTIONS)), pieces[0],
                             args.windows), None),
        (await one_at_a_time("replicas, one window at a time",
                             RemoteEngine(load_models(remote_config)[MODEL], remote_config.replicas), pieces[0],
                             args.windows), None),
    ]  # fmt: skip
    for speed, how in ((1.0, "live"), (0.0, "uploads")):
        on_local = await run_phase(f"local engine (1 server), {how}", [local], pieces, speed)
        on_replicas = await run_phase(f"replicas (2 front ends × {args.replicas}), {how}", [remote, remote], pieces,
                                      speed)  # fmt: skip
        # Live sessions that lag have windows merged (differently on each engine): notes are compared on uploads.
        phases += [(on_local, None), (on_replicas, on_local if speed == 0.0 else None)]
    killed = await run_phase(f"replicas, uploads, 1 of {args.replicas} killed", [remote, remote], pieces, 0.0,
                             replicas, kill_after=1.0)  # fmt: skip
    phases.append((killed, on_local))
    print()
    print(f"machine: {machine()}; load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"{len(pieces)} sessions of {args.seconds:.0f} s ({MODEL}, streaming = false, hop 0.5 s); "
          f"{args.replicas} replicas ready {startup_s:.0f} s after `streamer replicas` started")  # fmt: skip
    headers = ["engine", "windows", "added p50 ms", "added p95 ms", "round trip p50 ms", "round trip p95 ms",
               "model call p50 ms", "mean batch", "skipped", "retries", "failed sessions/errors",
               "notes = local"]  # fmt: skip
    print(table(headers, [summary(phase, reference) for phase, reference in phases]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    parser.add_argument("--sessions", type=int, default=2, help="sessions per front end")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--windows", type=int, default=100, help="windows sent one at a time, per engine")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = f"[models.{MODEL}]\nstreaming = false\n[replicas]\ncount = {args.replicas}\n"
        t0 = time.perf_counter()
        with start_replicas(Path(folder), config, [MODEL]) as replicas:
            startup = time.perf_counter() - t0
            asyncio.run(main_async(args, replicas, startup))


if __name__ == "__main__":
    main()
