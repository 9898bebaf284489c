"""The front end's engine against a replica over a real loopback socket (tests/replicas/http_replica.py): the local
engine's policies, memory carried window to window, retries on dead replicas, and results on the event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from streamer.audio.test_signals import melody, render
from streamer.audio.windows import Window, WindowCutter
from streamer.config import ReplicasConfig
from streamer.errors import ConfigError
from streamer.jobs import Failed, Result, Skipped
from streamer.models.base import Model
from streamer.models.mt3.model import memory_row
from streamer.replicas.memory import decode_memory
from streamer.replicas.remote_engine import RemoteEngine, RemoteStream
from streamer.replicas.remote_model import RemoteModel
from streamer.replicas.wire import decode_window
from tests.fakes import OracleModel, OracleStreamer
from tests.replicas.http_replica import Faults, replica_app
from tests.test_engine import FakeClock


class Results:
    """Results by (stream, window index), and the thread each arrived on."""

    def __init__(self) -> None:
        self.got: dict[tuple[int, int], Result] = {}
        self.threads: set[int] = set()

    def callback(self, stream: RemoteStream, index: int):  # type: ignore[no-untyped-def]
        def done(result: Result) -> None:
            self.threads.add(threading.get_ident())
            self.got[(stream.id, index)] = result

        return done


def windows_of(model: Model, seconds: float = 8.0) -> list[Window]:
    spec = model.spec
    cutter = WindowCutter(spec.window_samples, spec.hop_samples(spec.default_hop_s))
    return cutter.push(render(melody(), spec.sample_rate, seconds))


async def engine_for(aiohttp_server: Any, model: Model, faults: Faults, **replicas: Any) -> RemoteEngine:
    server = await aiohttp_server(replica_app(model, faults), host="127.0.0.1")
    settings = {"address": f"http://127.0.0.1:{server.port}", "count": 1, "max_batch": 4, "timeout_s": 10.0}
    clock = replicas.pop("clock", None)
    engine = RemoteEngine(RemoteModel(model.spec), ReplicasConfig(**{**settings, **replicas}), max_queued=4,
                          **({"clock": clock} if clock else {}))  # fmt: skip
    engine.start(asyncio.get_running_loop())
    return engine


async def test_results_are_the_models_and_arrive_on_the_loop(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    engine = await engine_for(aiohttp_server, model, Faults())
    windows = windows_of(model)
    results = Results()
    streams = [engine.open_stream() for _ in range(3)]
    for stream in streams:
        for i, window in enumerate(windows):
            stream.submit(window, results.callback(stream, i), live=False)
    await engine.idle()
    expected = model.transcribe_windows(windows, [None] * len(windows))
    for stream in streams:
        assert [results.got[(stream.id, i)] for i in range(len(windows))] == expected
    assert results.threads == {threading.get_ident()}
    assert engine.stats.jobs == 3 * len(windows) and engine.queued == 0
    assert await engine.stop(1.0)


async def test_a_stream_with_memory_has_one_window_out_and_carries_its_memory(
    aiohttp_server: Any, mr_mt3_model: Model
) -> None:
    faults = Faults(delay_s=0.05)
    engine = await engine_for(aiohttp_server, mr_mt3_model, faults, max_in_flight=8)
    windows = windows_of(mr_mt3_model)[:6]  # hop 0.512 s: windows 4 and 5 remember windows 0 and 1
    stream = engine.open_stream()
    seen: list[tuple[Result, bytes, int]] = []  # per window: its result, the memory after it, windows then out

    def record(result: Result) -> None:
        seen.append((result, stream.memory, stream.in_flight))

    for window in windows:
        stream.submit(window, record, live=False)
    assert stream.queued == len(windows) - 1  # its model keeps memory (or might: nothing heard yet)
    await engine.idle()
    assert stream.keeps_memory and [out for _, _, out in seen] == [1] * len(windows)

    # Each window carried the memory the one before returned, and that is the memory the local model builds.
    sent = [decode_window(body).memory for body in faults.seen]
    assert sent == [b"", *[memory for _, memory, _ in seen[:-1]]]
    local = mr_mt3_model.new_stream()
    for i, window in enumerate(windows):
        carried = decode_memory(sent[i], mr_mt3_model)
        assert len(carried.rows()) == len(local.rows()) == i
        for (end, tokens), (local_end, local_tokens) in zip(carried.rows(), local.rows(), strict=True):
            assert end == local_end and np.array_equal(tokens, local_tokens)
        # The memory row the replica's model reads for this window is the one the local engine's reads.
        row = memory_row(local.ending_at(window.start), True)
        assert memory_row(carried.ending_at(window.start), True) == row
        assert (row != memory_row(None, True)) == (i >= 4)
        assert seen[i][0] == mr_mt3_model.transcribe_windows([window], [local])[0]
    await engine.stop(1.0)


async def test_streams_without_memory_send_several_windows_at_once(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    engine = await engine_for(aiohttp_server, model, Faults(delay_s=0.2), max_in_flight=8)
    windows = windows_of(model)
    results = Results()
    stream = engine.open_stream()
    stream.submit(windows[0], results.callback(stream, 0), live=False)
    await engine.idle()
    assert stream.keeps_memory is False
    for i, window in enumerate(windows[1:5], 1):
        stream.submit(window, results.callback(stream, i), live=False)
    assert stream.queued == 0 and stream.in_flight == 4
    await engine.idle()
    assert len(results.got) == 5
    await engine.stop(1.0)


async def test_live_streams_that_lag_are_merged_and_uploads_wait(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    clock = FakeClock()
    engine = await engine_for(aiohttp_server, model, Faults(delay_s=0.2), max_in_flight=1, clock=clock)
    windows = windows_of(model)
    results = Results()
    live, upload = engine.open_stream(), engine.open_stream()
    for i in range(3):
        live.submit(windows[i], results.callback(live, i), live=True)
        upload.submit(windows[i], results.callback(upload, i), live=False)
    clock.now += 5.0  # the live stream's queued windows are now older than max_lag_s
    live.submit(windows[3], results.callback(live, 3), live=True)
    upload.submit(windows[3], results.callback(upload, 3), live=False)
    await engine.idle()
    live_results = [results.got[(live.id, i)] for i in range(4)]
    assert live_results[0] != Skipped() and live_results[3] != Skipped()
    assert live_results[1:3] == [Skipped(), Skipped()] and engine.stats.skipped == 2
    assert not any(isinstance(results.got[(upload.id, i)], Skipped) for i in range(4))
    await engine.stop(1.0)


async def test_a_window_whose_replica_died_is_sent_again(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    faults = Faults(drop=1, unavailable=1)
    engine = await engine_for(aiohttp_server, model, faults, retries=2)
    window = windows_of(model)[2]
    results = Results()
    stream = engine.open_stream()
    stream.submit(window, results.callback(stream, 0), live=False)
    await engine.idle()
    assert results.got[(stream.id, 0)] == model.transcribe_windows([window], [None])[0]
    assert engine.stats.retries == 2 and engine.stats.failed_jobs == 0
    await engine.stop(1.0)


async def test_retries_are_bounded_and_model_failures_are_not_retried(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    windows = windows_of(model)
    faults = Faults(drop=3)
    engine = await engine_for(aiohttp_server, model, faults, retries=2)
    results = Results()
    stream = engine.open_stream()
    stream.submit(windows[0], results.callback(stream, 0), live=False)
    await engine.idle()
    failed = results.got[(stream.id, 0)]
    assert isinstance(failed, Failed) and "3 tries" in failed.message and engine.stats.retries == 2

    model.fail_on = {windows[1].start}
    stream.submit(windows[1], results.callback(stream, 1), live=False)
    stream.submit(windows[2], results.callback(stream, 2), live=False)  # the stream goes on
    await engine.idle()
    failed = results.got[(stream.id, 1)]
    assert isinstance(failed, Failed) and "simulated model failure" in failed.message
    assert engine.stats.retries == 2 and engine.stats.failed_jobs == 2
    assert results.got[(stream.id, 2)] == model.transcribe_windows([windows[2]], [None])[0]
    await engine.stop(1.0)


async def test_closing_drops_queued_windows_and_stop_is_bounded(aiohttp_server: Any) -> None:
    model = OracleModel(melody())
    engine = await engine_for(aiohttp_server, model, Faults(delay_s=0.5), max_in_flight=1)
    windows = windows_of(model)
    results = Results()
    stream = engine.open_stream()
    for i in range(4):
        stream.submit(windows[i], results.callback(stream, i), live=False)
    stream.close()
    await engine.idle()
    assert list(results.got) == [(stream.id, 0)]  # the one already out still answers
    other = engine.open_stream()
    other.submit(windows[0], results.callback(other, 0), live=False)
    assert await asyncio.wait_for(engine.stop(0.05), 2.0)
    assert (other.id, 0) not in results.got


def test_streaming_models_stay_local() -> None:
    with pytest.raises(ConfigError, match="streaming-native"):
        RemoteEngine(RemoteModel(OracleStreamer([]).spec), ReplicasConfig())
