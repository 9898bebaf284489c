"""The inference engine: batching across streams, fairness, the lagging policy, failures, draining."""

from __future__ import annotations

import asyncio

import numpy as np

from streamer.audio.synth import melody, render
from streamer.engine import Engine
from streamer.models.base import Model, WindowRequest
from streamer.notes import Note
from tests.fakes import SPEC, OracleModel


class Collector:
    def __init__(self) -> None:
        self.results: dict[tuple[int, int], object] = {}
        self.errors: list[BaseException] = []
        self.skipped: list[tuple[int, int]] = []

    def callback(self, stream: int, start: int):  # type: ignore[no-untyped-def]
        def done(notes, error) -> None:  # type: ignore[no-untyped-def]
            if error is not None:
                self.errors.append(error)
            elif notes is None:
                self.skipped.append((stream, start))
            else:
                self.results[(stream, start)] = notes

        return done


def request(start: int, spec=SPEC) -> WindowRequest:  # type: ignore[no-untyped-def]
    return WindowRequest(audio=np.zeros(spec.window_samples, np.float32), start=start, valid=spec.window_samples)


async def test_batched_results_equal_unbatched(basic_pitch_model: Model) -> None:
    spec = basic_pitch_model.spec
    audio = render(melody(), spec.sample_rate, 8.0)
    starts = [0, 20000, 40000, 60000, 80000, 100000]
    requests = [WindowRequest(audio[s : s + spec.window_samples].copy(), s, spec.window_samples) for s in starts]
    alone = [basic_pitch_model.transcribe_windows([r])[0] for r in requests]
    assert any(alone), "the melody should produce notes"

    engine = Engine(basic_pitch_model, max_batch=8, max_wait_ms=50)
    engine.start()
    got = Collector()
    streams = [engine.open_stream() for _ in requests]
    for stream, r in zip(streams, requests, strict=True):
        engine.submit(stream, r, got.callback(stream, r.start))
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert engine.stats.batches < len(requests), "windows of different streams should share batches"
    assert [got.results[(s, r.start)] for s, r in zip(streams, requests, strict=True)] == alone


async def test_one_window_per_stream_per_batch_and_round_robin() -> None:
    model = OracleModel([Note(0.5, 1.0, 60)], delay_s=0.01)
    engine = Engine(model, max_batch=4, max_wait_ms=1)
    got = Collector()
    flood = engine.open_stream()
    calm = [engine.open_stream() for _ in range(3)]
    for i in range(20):  # a flooding stream (throttled clients are not coalesced)
        engine.submit(flood, request(i * 8000), got.callback(flood, i * 8000), coalesce=False)
    for s in calm:
        engine.submit(s, request(0), got.callback(s, 0))
    engine.start()
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert len(got.results) == 23 and not got.skipped
    # The first batch already serves every calm stream; no batch holds two windows of one stream.
    assert model.batches[0].count(0) == 4
    flood_starts = [s for b in model.batches for s in b if s != 0]
    assert flood_starts == sorted(flood_starts)
    assert all(len(b) <= 4 for b in model.batches)


async def test_lagging_stream_is_coalesced_and_latency_stays_bounded() -> None:
    model = OracleModel([], delay_s=0.05)
    engine = Engine(model, max_batch=1, max_wait_ms=0, max_lag_s=0.1)
    engine.start()
    got = Collector()
    stream = engine.open_stream()
    for i in range(40):  # windows arrive 4× faster than the model can run them
        engine.submit(stream, request(i * 8000), got.callback(stream, i * 8000))
        # Nothing queued is older than max_lag: at most 0.1 s / 12.5 ms + 1 windows wait.
        assert engine.pending(stream) <= 9
        await asyncio.sleep(0.0125)
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert got.skipped, "a lagging stream must have windows merged away"
    assert len(got.results) + len(got.skipped) == 40
    assert (stream, 39 * 8000) in got.results, "the newest window always runs"
    assert engine.stats.skipped == len(got.skipped)


async def test_a_burst_the_engine_clears_in_time_is_not_merged() -> None:
    model = OracleModel([], delay_s=0.005)
    engine = Engine(model, max_batch=1, max_wait_ms=0, max_lag_s=1.0)
    engine.start()
    got = Collector()
    stream = engine.open_stream()
    for i in range(20):  # a client that sent 10 s of audio in one frame: 20 windows at once
        engine.submit(stream, request(i * 8000), got.callback(stream, i * 8000))
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert len(got.results) == 20 and not got.skipped


async def test_model_failure_fails_that_batch_only() -> None:
    model = OracleModel([Note(0.5, 1.0, 60)])
    model.fail_on = {8000}
    engine = Engine(model, max_batch=1, max_wait_ms=0)
    engine.start()
    got = Collector()
    stream = engine.open_stream()
    for start in (0, 8000, 16000):
        engine.submit(stream, request(start), got.callback(stream, start), coalesce=False)
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert len(got.errors) == 1 and "simulated" in str(got.errors[0])
    assert set(got.results) == {(stream, 0), (stream, 16000)}
    assert engine.stats.failed_batches == 1


async def test_stop_drains_queued_windows() -> None:
    model = OracleModel([], delay_s=0.02)
    engine = Engine(model, max_batch=2, max_wait_ms=0)
    engine.start()
    got = Collector()
    streams = [engine.open_stream() for _ in range(3)]
    for s in streams:
        for i in range(3):
            engine.submit(s, request(i * 8000), got.callback(s, i * 8000), coalesce=False)
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert len(got.results) == 9 and engine.queued == 0


async def test_streams_closing_while_a_batch_forms_do_not_stop_the_worker() -> None:
    model = OracleModel([])
    engine = Engine(model, max_batch=8, max_wait_ms=200)
    engine.start()
    got = Collector()
    gone = engine.open_stream()
    engine.submit(gone, request(0), got.callback(gone, 0))
    await asyncio.sleep(0.05)  # the worker is now waiting for the batch to fill
    engine.close_stream(gone)
    await asyncio.sleep(0.3)
    alive = engine.open_stream()
    engine.submit(alive, request(0), got.callback(alive, 0))
    await engine.stop(drain=True)
    await asyncio.sleep(0.05)
    assert (alive, 0) in got.results and (gone, 0) not in got.results
    assert all(model.batches), "the model is never called with an empty batch"
