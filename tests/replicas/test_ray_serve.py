"""Real Ray Serve replicas on loopback, started once for the module (`streamer replicas`: basic-pitch on windows, and
a random-weight MR-MT3), two front ends in this process sending them windows, and a local-engine server beside them
on the same audio: the notes must be the same, MR-MT3's memory must be the same, and killing a replica mid-run must
fail no session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from streamer.audio.test_signals import melody, random_piece, render
from streamer.audio.windows import WindowCutter
from streamer.client.stream import StreamResult, stream_audio
from streamer.config import Config, load_config
from streamer.models.base import Model
from streamer.models.mt3.model import memory_row
from streamer.replicas.memory import decode_memory
from streamer.replicas.process import ReplicasProcess, start_replicas
from streamer.replicas.remote_engine import RemoteEngine
from streamer.server.app import load_models
from tests.conftest import LiveServer, ServeFn

pytest.importorskip("ray.serve")

pytestmark = pytest.mark.timeout(600)
BP_RATE = 22050
REPLICAS = 2
SESSIONS_PER_FRONT_END = 2


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, mr_mt3_options: dict[str, Any]) -> Iterator[ReplicasProcess]:
    folder = tmp_path_factory.mktemp("replicas")
    options = "\n".join(f"{key} = {value!r}" for key, value in mr_mt3_options.items())
    config = (
        "[models.basic-pitch]\nstreaming = false\n"
        f"[models.mr-mt3]\n{options}\n"
        f"[replicas]\ncount = {REPLICAS}\ncpus = 0.5\nmax_batch = 8\n"
    )
    with start_replicas(folder, config.replace("'", '"'), ["basic-pitch", "mr-mt3"], timeout=300) as process:
        yield process


def front_end_config(address: str, mr_mt3_options: dict[str, Any], backend: str = "ray") -> Config:
    return load_config(
        overrides={
            "model": "basic-pitch",
            "preload": ["mr-mt3"],
            "engine": {"backend": backend},
            "replicas": {"address": address, "count": REPLICAS, "max_batch": 8},
            "models": {"basic-pitch": {"streaming": False}, "mr-mt3": mr_mt3_options},
        }
    )


async def servers(
    serve: ServeFn, replicas: ReplicasProcess, mr_mt3_options: dict[str, Any], local_models: dict[str, Model]
) -> tuple[list[LiveServer], LiveServer]:
    """Two front ends on the replicas, and one server running the same models on its own local engine."""
    config = front_end_config(replicas.address, mr_mt3_options)
    front_ends = [await serve(load_models(config), config=config) for _ in range(2)]
    local = await serve(local_models, config=front_end_config(replicas.address, mr_mt3_options, "local"))
    return front_ends, local


@pytest.fixture(scope="module")
def local_models(basic_pitch_windowed: Model, mr_mt3_model: Model) -> dict[str, Model]:
    return {"basic-pitch": basic_pitch_windowed, "mr-mt3": mr_mt3_model}


def audio(seconds: float, seed: int) -> np.ndarray:
    notes = melody() if seed == 0 else random_piece(seconds - 1.0, seed=seed)
    return render(notes, BP_RATE, seconds)[:, None]


async def run_sessions(urls: list[str], pieces: list[np.ndarray], model: str = "basic-pitch") -> list[StreamResult]:
    return list(
        await asyncio.gather(
            *(stream_audio(url, piece, BP_RATE, speed=0, model=model) for url, piece in zip(urls, pieces, strict=True))
        )
    )


def front_engines(front_ends: list[LiveServer], model: str = "basic-pitch") -> list[RemoteEngine]:
    engines = [server.state.engines[model] for server in front_ends]
    assert all(isinstance(engine, RemoteEngine) for engine in engines)
    return engines  # type: ignore[return-value]


async def test_notes_are_the_local_engines(
    serve: ServeFn, replicas: ReplicasProcess, mr_mt3_options: dict[str, Any], local_models: dict[str, Model]
) -> None:
    front_ends, local = await servers(serve, replicas, mr_mt3_options, local_models)
    pieces = [audio(8.0, seed) for seed in range(2 * SESSIONS_PER_FRONT_END)]
    urls = [server.url for server in front_ends for _ in range(SESSIONS_PER_FRONT_END)]
    remote = await run_sessions(urls, pieces)
    expected = await run_sessions([local.url] * len(pieces), pieces)
    for got, want in zip(remote, expected, strict=True):
        assert want.done is not None and not want.errors and want.events
        assert got.done is not None and not got.errors
        assert got.events == want.events
    engines = front_engines(front_ends)
    assert all(engine.stats.jobs > 0 for engine in engines)  # both front ends' windows went to the replicas
    assert max(size for engine in engines for size in engine.stats.sizes) > 1  # and were batched there

    mt3 = await run_sessions([front_ends[0].url, local.url], [pieces[0], pieces[0]], model="mr-mt3")
    assert not mt3[0].errors and mt3[0].done is not None and mt3[0].events == mt3[1].events


async def test_mr_mt3_memory_rows_are_the_local_engines(
    replicas: ReplicasProcess, mr_mt3_options: dict[str, Any], mr_mt3_model: Model
) -> None:
    config = front_end_config(replicas.address, mr_mt3_options)
    engine = RemoteEngine(load_models(config)["mr-mt3"], config.replicas)
    engine.start(asyncio.get_running_loop())
    spec = mr_mt3_model.spec
    cutter = WindowCutter(spec.window_samples, spec.hop_samples(spec.default_hop_s))
    windows = cutter.push(render(melody(), spec.sample_rate, 8.0))[:7]
    stream = engine.open_stream()
    local = mr_mt3_model.new_stream()
    results: list[Any] = []
    for i, window in enumerate(windows):
        carried = decode_memory(stream.memory, mr_mt3_model)  # what the replica receives with this window
        assert [end for end, _ in carried.rows()] == [end for end, _ in local.rows()]
        assert memory_row(carried.ending_at(window.start), True) == memory_row(local.ending_at(window.start), True)
        stream.submit(window, results.append, live=True)
        await engine.idle()
        assert results[i] == mr_mt3_model.transcribe_windows([window], [local])[0]
    final = decode_memory(stream.memory, mr_mt3_model)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(final.rows(), local.rows(), strict=True))
    assert memory_row(local.ending_at(windows[-1].start), True) != memory_row(None, True)  # memory was in use
    await engine.stop(1.0)


async def test_killing_a_replica_mid_run_fails_no_session(
    serve: ServeFn, replicas: ReplicasProcess, mr_mt3_options: dict[str, Any], local_models: dict[str, Model]
) -> None:
    front_ends, local = await servers(serve, replicas, mr_mt3_options, local_models)
    pieces = [audio(14.0, seed) for seed in range(1, 2 * SESSIONS_PER_FRONT_END + 1)]
    urls = [server.url for server in front_ends for _ in range(SESSIONS_PER_FRONT_END)]
    engines = front_engines(front_ends)
    running = asyncio.ensure_future(run_sessions(urls, pieces))
    while sum(engine.stats.jobs for engine in engines) < 10 or sum(e.in_flight for e in engines) < 2 * REPLICAS:
        assert not running.done(), "the sessions ended before a replica could be killed"
        await asyncio.sleep(0.005)
    killed = replicas.kill_replica("basic-pitch")
    remote = await running
    expected = await run_sessions([local.url] * len(pieces), pieces)
    for got, want in zip(remote, expected, strict=True):
        assert got.done is not None and not got.errors, got.errors
        assert got.events == want.events
    assert sum(engine.stats.retries for engine in engines) >= 1  # the kill did take windows down with it
    assert killed not in replicas.replica_pids("basic-pitch")
