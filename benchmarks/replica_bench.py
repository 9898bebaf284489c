"""Model replicas in Ray Serve vs the local engine: what the replicas add to each window, and a replica killed mid-run.

`streamer replicas` starts basic-pitch (windowed, `streaming = false`) replicas on loopback, in their own processes;
this process runs two front ends on them (`[engine] backend = "ray"`), one server on the local engine with the same
model, and the clients. Added latency per window = from the window's submission to its result, minus the model call
it ran in (the batch's): queueing, waiting for a batch to fill, and for replicas the way there and back.

- one window at a time: each engine gets `--windows` windows of one stream, each sent when the last came back:
  the engine's own cost without queueing.

Then each phase streams the same pieces (random notes rendered at 22.05 kHz) with `--sessions` live clients per
front end at real-time pace (the local server gets all of them):

- local: the local engine.
- replicas: the same, through the replicas: the front end's queue, encoding, HTTP through the ingress (HAProxy), the
  replica's batch wait, the reply. Round trip = sending to reply; notes compared with the local server's, session by
  session.
- kill: as `replicas`, and a replica is SIGKILLed a third of the way in: sessions that failed, client errors,
  windows retried, and whether the notes are still the local server's.

Run: .venv/bin/python -m benchmarks.replica_bench [--seconds 20] [--sessions 2] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import web

from benchmarks.common import machine, percentile, table
from streamer.audio.test_signals import random_piece, render
from streamer.audio.windows import WindowCutter
from streamer.client.stream import StreamResult, stream_audio
from streamer.config import Config, load_config
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


@dataclass
class Phase:
    name: str
    results: list[StreamResult]
    recorders: list[Recorder]
    engines: list[Engine | RemoteEngine]
    seconds: float


@contextlib.asynccontextmanager
async def running(config: Config, models: dict[str, object]) -> AsyncIterator[tuple[str, web.Application]]:
    app = create_app(config, models)  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}/v1/stream", app
    finally:
        await runner.cleanup()


def record(app: web.Application) -> tuple[Recorder, Engine | RemoteEngine]:
    engine = app[STATE].engines[MODEL]
    recorder = Recorder(engine.observer)
    engine.observer = recorder
    return recorder, engine


async def stream_all(urls: Sequence[str], pieces: Sequence[np.ndarray]) -> list[StreamResult]:
    return list(
        await asyncio.gather(*(stream_audio(u, p, RATE, model=MODEL) for u, p in zip(urls, pieces, strict=True)))
    )


async def one_at_a_time(name: str, engine: Engine | RemoteEngine, piece: np.ndarray, count: int) -> Phase:
    """`count` windows of one stream, each sent when the last came back: the engine's own cost, no queueing."""
    recorder = Recorder(None)
    engine.observer = recorder
    engine.start(asyncio.get_running_loop())
    spec = engine.model.spec
    windows = WindowCutter(spec.window_samples, spec.hop_samples(spec.default_hop_s)).push(piece[:, 0])
    stream = engine.open_stream()
    t0 = time.perf_counter()
    for i in range(count):
        stream.submit(windows[i % len(windows)], lambda _: None, live=False)
        await engine.idle()
    await engine.stop(1.0)
    return Phase(name, [], [recorder], [engine], time.perf_counter() - t0)


async def run_phase(
    name: str, configs: Sequence[Config], models: Sequence[dict[str, object]], pieces: Sequence[np.ndarray],
    replicas: ReplicasProcess | None = None, kill_after: float | None = None,
) -> Phase:  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(running(c, m)) for c, m in zip(configs, models, strict=True)]
        recorded = [record(app) for _, app in servers]
        urls = [servers[i % len(servers)][0] for i in range(len(pieces))]
        t0 = time.perf_counter()
        sessions = asyncio.ensure_future(stream_all(urls, pieces))
        if replicas is not None and kill_after is not None:
            # Mid-run, and while windows are out (a replica killed idle would show nothing).
            await asyncio.sleep(kill_after)
            while sum(e.in_flight for _, e in recorded if isinstance(e, RemoteEngine)) < 2 and not sessions.done():
                await asyncio.sleep(0.002)
            at = time.perf_counter() - t0
            print(f"killed replica pid {replicas.kill_replica(MODEL)} {at:.1f} s into the run", flush=True)
        results = await sessions
        return Phase(name, results, [r for r, _ in recorded], [e for _, e in recorded], time.perf_counter() - t0)


def summary(phase: Phase, reference: Phase | None) -> list[object]:
    added = [a * 1000 for r in phase.recorders for a in r.added]
    sizes = [s for r in phase.recorders for s in r.sizes]
    model_ms = [m * 1000 for r in phase.recorders for m in r.model_s]
    trips = [t * 1000 for e in phase.engines if isinstance(e, RemoteEngine) for t, _ in e.stats.round_trips]
    retries = sum(e.stats.retries for e in phase.engines if isinstance(e, RemoteEngine))
    failed = sum(1 for r in phase.results if r.done is None)
    errors = sum(len(r.errors) for r in phase.results)
    same = "—"
    if reference is not None:
        equal = sum(r.events == ref.events for r, ref in zip(phase.results, reference.results, strict=True))
        same = f"{equal}/{len(phase.results)}"
    return [
        phase.name, len(added), f"{percentile(added, 50):.1f}", f"{percentile(added, 95):.1f}",
        f"{percentile(trips, 50):.1f}" if trips else "—", f"{percentile(trips, 95):.1f}" if trips else "—",
        f"{percentile(model_ms, 50):.1f}", f"{np.mean(sizes):.2f}" if sizes else "—", retries,
        f"{failed}/{errors}", same,
    ]  # fmt: skip


async def main_async(args: argparse.Namespace, replicas: ReplicasProcess, startup_s: float) -> None:
    pieces = [
        render(random_piece(args.seconds - 1.0, seed=s), RATE, args.seconds)[:, None] for s in range(args.sessions * 2)
    ]
    overrides = {"model": MODEL, "models": {MODEL: OPTIONS}, "limits": {"max_sessions_per_client": 64}}
    local_config = load_config(overrides={**overrides, "engine": {"backend": "local"}})
    remote_config = load_config(
        overrides={**overrides, "engine": {"backend": "ray"},
                   "replicas": {"address": replicas.address, "count": args.replicas, "retries": 4}}
    )  # fmt: skip
    local_model = {MODEL: load_model(MODEL, OPTIONS)}
    load = os.getloadavg()
    alone = [
        await one_at_a_time("local engine, one window at a time", Engine(local_model[MODEL]), pieces[0], args.windows),
        await one_at_a_time(
            "replicas, one window at a time",
            RemoteEngine(load_models(remote_config)[MODEL], remote_config.replicas),
            pieces[0],
            args.windows,
        ),
    ]
    local = await run_phase("local engine (1 server)", [local_config], [local_model], pieces)
    two = [remote_config, remote_config]
    remote = await run_phase(f"replicas (2 front ends × {args.replicas})", two,
                             [load_models(remote_config), load_models(remote_config)], pieces)  # fmt: skip
    killed = await run_phase(
        f"replicas, 1 of {args.replicas} killed", two, [load_models(remote_config), load_models(remote_config)],
        pieces, replicas, kill_after=args.seconds / 3,
    )  # fmt: skip
    print()
    print(f"machine: {machine()}; load average before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"{len(pieces)} live sessions of {args.seconds:.0f} s ({MODEL}, streaming = false, hop 0.5 s); "
          f"{args.replicas} replicas ready {startup_s:.0f} s after `streamer replicas` started")  # fmt: skip
    headers = ["engine", "windows", "added p50 ms", "added p95 ms", "round trip p50 ms", "round trip p95 ms",
               "model call p50 ms", "mean batch", "retries", "failed sessions/errors", "notes = local"]  # fmt: skip
    rows = [*(summary(phase, None) for phase in alone), summary(local, None), summary(remote, local)]
    print(table(headers, [*rows, summary(killed, local)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session")
    parser.add_argument("--sessions", type=int, default=2, help="live sessions per front end")
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
