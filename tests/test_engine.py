"""The inference engine: batching across streams, fairness, the lagging policy, failures, draining.

Queueing decisions use the engine's injectable clock, so the lagging policy is tested without waiting; results
are collected after `Engine.stop()`/`idle()`, which return once every result has been delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamer.audio.test_signals import melody, render
from streamer.audio.windows import Window
from streamer.engine import Engine, StreamHandle
from streamer.jobs import Failed, Skipped
from streamer.models.base import Model, WindowRequest
from streamer.notes import Note, WindowNote
from tests.fakes import SPEC, OracleModel


class Collector:
    def __init__(self) -> None:
        self.results: dict[tuple[int, int], object] = {}
        self.failed: list[tuple[int, int]] = []
        self.skipped: list[tuple[int, int]] = []

    def callback(self, stream: StreamHandle, start: int):  # type: ignore[no-untyped-def]
        def done(result) -> None:  # type: ignore[no-untyped-def]
            key = (stream.id, start)
            if isinstance(result, Failed):
                self.failed.append(key)
            elif isinstance(result, Skipped):
                self.skipped.append(key)
            else:
                self.results[key] = result

        return done


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def request(start: int, spec=SPEC) -> WindowRequest:  # type: ignore[no-untyped-def]
    return WindowRequest(audio=np.zeros(spec.window_samples, np.float32), start=start, valid=spec.window_samples)


class StatefulOracle(OracleModel):
    """The oracle with per-stream state, like MR-MT3: its streams give one window per batch."""

    def new_stream(self) -> Any:
        return []

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        for window, state in zip(batch, states, strict=True):
            state.append(window.start)
        return super().transcribe_windows(batch, states)


async def test_batched_results_equal_unbatched(basic_pitch_windowed: Model) -> None:
    spec = basic_pitch_windowed.spec
    audio = render(melody(), spec.sample_rate, 8.0)
    starts = [0, 20000, 40000, 60000, 80000, 100000]
    requests = [WindowRequest(audio[s : s + spec.window_samples].copy(), s, spec.window_samples) for s in starts]
    alone = [basic_pitch_windowed.transcribe_windows([r], [None])[0] for r in requests]
    assert any(alone), "the melody should produce notes"

    engine = Engine(basic_pitch_windowed, max_batch=8, max_wait_ms=50)
    got = Collector()
    streams = [engine.open_stream() for _ in requests]
    for stream, r in zip(streams, requests, strict=True):
        stream.submit(r, got.callback(stream, r.start), live=False)
    engine.start()
    await engine.stop()
    assert engine.stats.batches < len(requests), "windows of different streams should share batches"
    assert [got.results[(s.id, r.start)] for s, r in zip(streams, requests, strict=True)] == alone


async def test_round_robin_and_one_window_per_stateful_stream_per_batch() -> None:
    model = StatefulOracle([Note(0.5, 1.0, 60)], delay_s=0.01)
    engine = Engine(model, max_batch=4, max_wait_ms=1)
    got = Collector()
    flood = engine.open_stream()
    calm = [engine.open_stream() for _ in range(3)]
    for i in range(20):  # a flooding stream (uploads are never merged)
        flood.submit(request(i * 8000), got.callback(flood, i * 8000), live=False)
    for s in calm:
        s.submit(request(0), got.callback(s, 0), live=False)
    engine.start()
    await engine.stop()
    assert len(got.results) == 23 and not got.skipped
    # The first batch already serves every calm stream; no batch holds two windows of one stream.
    assert model.batches[0].count(0) == 4
    flood_starts = [s for b in model.batches for s in b if s != 0]
    assert flood_starts == sorted(flood_starts)
    assert all((len(b) <= 4 and len(b) == len(set(b))) or b.count(0) <= 4 for b in model.batches)
    assert flood.state == sorted(flood.state) and len(flood.state) == 20


async def test_a_stateless_stream_fills_a_batch_by_itself() -> None:
    model = OracleModel([])
    engine = Engine(model, max_batch=4, max_wait_ms=0)
    got = Collector()
    stream = engine.open_stream()
    for i in range(8):
        stream.submit(request(i * 8000), got.callback(stream, i * 8000), live=False)
    engine.start()
    await engine.stop()
    assert [len(b) for b in model.batches] == [4, 4] and len(got.results) == 8


def test_a_lagging_live_stream_is_merged_on_the_engines_clock() -> None:
    clock = FakeClock()
    engine = Engine(OracleModel([]), max_lag_s=0.1, max_queued=100, clock=clock)  # not started: nothing runs
    got = Collector()
    stream = engine.open_stream()
    for i in range(40):  # windows every 12.5 ms, none run: the oldest waits longer than 0.1 s after 9
        stream.submit(request(i * 8000), got.callback(stream, i * 8000), live=True)
        assert stream.queued <= 9, "nothing queued is older than max_lag"
        clock.now += 0.0125
    assert len(got.skipped) + stream.queued == 40 and got.skipped
    assert engine.stats.skipped == len(got.skipped)


def test_a_live_streams_queue_is_bounded_and_uploads_are_never_merged() -> None:
    engine = Engine(OracleModel([]), max_lag_s=100.0, max_queued=3, clock=FakeClock())
    got = Collector()
    live, upload = engine.open_stream(), engine.open_stream()
    for i in range(10):
        live.submit(request(i), got.callback(live, i), live=True)
        upload.submit(request(i), got.callback(upload, i), live=False)
    assert live.queued <= 3 and upload.queued == 10
    assert all(key[0] == live.id for key in got.skipped)


async def test_a_burst_the_engine_clears_in_time_is_not_merged() -> None:
    model = OracleModel([], delay_s=0.005)
    engine = Engine(model, max_batch=1, max_wait_ms=0, max_lag_s=1.0, max_queued=100)
    engine.start()
    got = Collector()
    stream = engine.open_stream()
    for i in range(20):  # 20 windows at once (a large frame), run well within max_lag
        stream.submit(request(i * 8000), got.callback(stream, i * 8000), live=True)
    await engine.stop()
    assert len(got.results) == 20 and not got.skipped


async def test_a_failing_window_fails_alone_not_its_batch_mates() -> None:
    model = OracleModel([Note(0.5, 1.0, 60)])
    model.fail_on = {8000}
    engine = Engine(model, max_batch=8, max_wait_ms=20)
    got = Collector()
    streams = [engine.open_stream() for _ in range(3)]
    for stream, start in zip(streams, (0, 8000, 16000), strict=True):
        stream.submit(request(start), got.callback(stream, start), live=False)
    engine.start()
    await engine.stop()
    assert got.failed == [(streams[1].id, 8000)]
    assert set(got.results) == {(streams[0].id, 0), (streams[2].id, 16000)}
    assert engine.stats.failed_jobs == 1


async def test_stop_runs_what_is_queued_within_its_timeout_and_drops_the_rest() -> None:
    model = OracleModel([], delay_s=0.02)
    engine = Engine(model, max_batch=2, max_wait_ms=0)
    engine.start()
    got = Collector()
    streams = [engine.open_stream() for _ in range(3)]
    for s in streams:
        for i in range(3):
            s.submit(request(i * 8000), got.callback(s, i * 8000), live=False)
    assert await engine.stop() is True
    assert len(got.results) == 9 and engine.queued == 0

    slow = OracleModel([], delay_s=0.2)
    engine = Engine(slow, max_batch=1, max_wait_ms=0)
    engine.start()
    stream = engine.open_stream()
    for i in range(50):  # 10 s of work
        stream.submit(request(i), got.callback(stream, i), live=False)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await engine.stop(timeout=0.5)
    assert loop.time() - t0 < 2.0, "stop must not run the whole backlog"
    assert len(slow.batches) < 10


async def test_a_closed_stream_drops_its_queue_and_the_worker_goes_on() -> None:
    model = OracleModel([], delay_s=0.05)
    engine = Engine(model, max_batch=1, max_wait_ms=0)
    engine.start()
    got = Collector()
    gone = engine.open_stream()
    for i in range(20):
        gone.submit(request(i), got.callback(gone, i), live=False)
    gone.close()  # the client disconnected: nothing more is computed for it
    alive = engine.open_stream()
    alive.submit(request(0), got.callback(alive, 0), live=False)
    await engine.stop()
    assert (alive.id, 0) in got.results
    assert sum(1 for key in got.results if key[0] == gone.id) <= 1
    assert all(model.batches), "the model is never called with an empty batch"


def test_run_pending_runs_the_same_batching_on_the_callers_thread() -> None:
    model = OracleModel([Note(0.5, 1.0, 60)])
    engine = Engine(model, max_batch=4)
    got = Collector()
    stream = engine.open_stream()
    for i in range(6):
        stream.submit(request(i * 8000), got.callback(stream, i * 8000), live=False)
    engine.run_pending()
    assert [len(b) for b in model.batches] == [4, 2] and len(got.results) == 6
