"""The inference engine: one per loaded model, a worker thread that batches jobs from all sessions.

Each session opens a `StreamHandle`, which owns the model's per-stream state (MR-MT3's memory, a streaming model's
buffers) for as long as the session lives, and submits its jobs through it. The worker visits streams round-robin
(a stream that floods cannot starve the others), one job per stream per round; only streams without model state,
whose jobs are independent, give more than one job to a batch. It waits up to `max_wait_ms` for a batch to fill,
runs the model, and hands each result back on the event loop.

Live streams have bounded latency: when a live stream's oldest queued job has waited longer than `max_lag_s`, or
more than `max_queued` are queued, the model merges its queued jobs into the newest one (for windowed models: the
older windows are skipped). Uploads are never merged; their sessions wait for room instead (backpressure).

When a batch fails, each of its jobs is run alone, so one bad window fails only its own session's job. On CUDA the
model runs on the engine's own stream (see `device_stream`); on the CPU the same code runs with a no-op stream.
`run_pending` runs the same batching on the calling thread, for offline transcription.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from streamer.jobs import Failed, Result, Skipped
from streamer.models.base import Model

log = logging.getLogger(__name__)

ResultCallback = Callable[[Result], None]
Clock = Callable[[], float]


class EngineObserver(Protocol):
    def on_batch(self, size: int, seconds: float, latencies: list[float]) -> None: ...

    def on_skipped(self, count: int) -> None: ...


H = TypeVar("H", bound="StreamHandle")


@dataclass(slots=True)
class QueuedJob(Generic[H]):
    """A job waiting in its stream's queue (on the local engine, or in front of model replicas)."""

    stream: H
    payload: Any
    callback: ResultCallback
    submitted: float


class SkipCount(Protocol):
    skipped: int


def enqueue(
    queue: deque[QueuedJob[H]], job: QueuedJob[H], model: Model, *, live: bool, max_lag: float, max_queued: int
) -> list[QueuedJob[H]]:
    """Queue `job` under the lagging policy both engines share: a live stream whose oldest queued job has waited
    longer than `max_lag` (at `job.submitted`), or that has `max_queued` queued, has them merged into this one
    (`model.after_gap`); uploads always queue. Returns the jobs merged away, for `report_skipped`."""
    skipped: list[QueuedJob[H]] = []
    if live and queue and (job.submitted - queue[0].submitted > max_lag or len(queue) >= max_queued):
        skipped = list(queue)
        queue.clear()
        job.payload = model.after_gap(job.payload, [old.payload for old in skipped])
    queue.append(job)
    return skipped


def report_skipped(skipped: Sequence[QueuedJob[Any]], stats: SkipCount, observer: EngineObserver | None) -> None:
    """Tell each merged job's session (`Skipped`), count them, and tell the observer. Outside any engine lock."""
    for job in skipped:
        job.callback(Skipped())
    if skipped:
        stats.skipped += len(skipped)
        if observer is not None:
            observer.on_skipped(len(skipped))


@dataclass(slots=True)
class EngineStats:
    batches: int = 0
    jobs: int = 0
    skipped: int = 0
    failed_jobs: int = 0
    model_seconds: float = 0.0
    sizes: list[int] = field(default_factory=list)  # the last batches' sizes, for tests of batching


class Queues(Protocol):
    """What a stream handle needs of its engine (the local one here, or model replicas')."""

    def _submit(self, handle: Any, payload: Any, callback: ResultCallback, live: bool) -> None: ...

    def _queued_for(self, handle: Any) -> int: ...

    def _close(self, handle: Any) -> None: ...


class StreamHandle:
    """One session's stream on an engine: owns the model's per-stream state and the session's queue."""

    def __init__(self, engine: Queues, stream_id: int, state: Any) -> None:
        self.engine = engine
        self.id = stream_id
        self.state = state
        self.closed = False

    def submit(self, payload: Any, callback: ResultCallback, *, live: bool) -> None:
        """Queue a job; `callback(result)` runs on the event loop (or the caller's thread, offline)."""
        self.engine._submit(self, payload, callback, live)

    @property
    def queued(self) -> int:
        return self.engine._queued_for(self)

    def close(self) -> None:
        """The session is gone: its queued jobs are dropped (no callbacks) and its state released."""
        self.closed = True
        self.engine._close(self)


class Engine:
    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = 0,
        max_wait_ms: float = 4.0,
        max_lag_s: float = 1.0,
        max_queued: int = 8,
        observer: EngineObserver | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        self.model = model
        self.max_batch = max_batch or model.max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_lag = max_lag_s
        self.max_queued = max_queued
        self.observer = observer
        self.clock = clock
        self.stats = EngineStats()
        self._queues: OrderedDict[StreamHandle, deque[QueuedJob[StreamHandle]]] = OrderedDict()
        self._cond = threading.Condition()
        self._running = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._idle = asyncio.Event()
        if not self.queued:
            self._idle.set()
        self._running = True
        self._thread = threading.Thread(target=self._work, name=f"engine-{self.model.spec.name}", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float | None = None) -> bool:
        """Run what is queued, for at most `timeout` seconds; then drop the rest and stop the worker.
        True when the worker finished (a model call cannot be interrupted: it may still be running)."""
        if self._idle is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        with self._cond:
            self._running = False
            self._queues.clear()
            self._cond.notify_all()
        if self._thread is None:
            return True
        await asyncio.to_thread(self._thread.join, 1.0 if timeout is None else max(timeout, 0.1))
        return not self._thread.is_alive()

    async def idle(self) -> None:
        """Wait until nothing is queued or running."""
        if self._idle is not None:
            await self._idle.wait()

    def run_pending(self) -> None:
        """Offline: run every queued job on the calling thread, with the worker's batching rules."""
        with device_stream(self.model):
            while (batch := self._take_batch(wait=False)) is not None:
                try:
                    self._run(batch)
                finally:
                    with self._cond:
                        self._busy = False

    # ---- streams -----------------------------------------------------------------------------------------------

    def open_stream(self) -> StreamHandle:
        handle = StreamHandle(self, next(self._ids), self.model.new_stream())
        with self._cond:
            self._queues[handle] = deque()
        return handle

    @property
    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def _queued_for(self, handle: StreamHandle) -> int:
        with self._cond:
            queue = self._queues.get(handle)
            return len(queue) if queue is not None else 0

    def _close(self, handle: StreamHandle) -> None:
        with self._cond:
            self._queues.pop(handle, None)
        self._check_idle()

    def _submit(self, handle: StreamHandle, payload: Any, callback: ResultCallback, live: bool) -> None:
        job = QueuedJob(handle, payload, callback, self.clock())
        with self._cond:
            queue = self._queues.get(handle)
            if queue is None:
                raise KeyError(f"stream {handle.id} is not open")
            skipped = enqueue(queue, job, self.model, live=live, max_lag=self.max_lag, max_queued=self.max_queued)
            if self._idle is not None:
                self._idle.clear()
            self._cond.notify()
        report_skipped(skipped, self.stats, self.observer)

    # ---- worker ------------------------------------------------------------------------------------------------

    def _take_batch(self, wait: bool = True) -> list[QueuedJob[StreamHandle]] | None:
        with self._cond:
            if wait:
                while self._running and not self._ready_streams():
                    self._cond.wait()
                if not self._running:
                    return None
                deadline = self.clock() + self.max_wait
                while self._running and self._ready_streams() < self.max_batch:
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = self._fill_batch()
            if not batch:
                return None if not wait or not self._running else []
            self._busy = True
            return batch

    def _fill_batch(self) -> list[QueuedJob[StreamHandle]]:
        """Round-robin over streams, one job each; streams without model state (their jobs are independent of
        each other) may give more in further rounds while the batch has room. Called under the lock."""
        batch: list[QueuedJob[StreamHandle]] = []
        rounds = 0
        while len(batch) < self.max_batch:
            taken = 0
            for handle in list(self._queues):
                queue = self._queues[handle]
                if queue and (rounds == 0 or handle.state is None):
                    batch.append(queue.popleft())
                    # A stream served now goes to the back of the line.
                    self._queues.move_to_end(handle)
                    taken += 1
                    if len(batch) == self.max_batch:
                        break
            if not taken:
                break
            rounds += 1
        return batch

    def _ready_streams(self) -> int:
        return sum(1 for q in self._queues.values() if q)

    def _work(self) -> None:
        with device_stream(self.model):
            while True:
                batch = self._take_batch()
                if batch is None:
                    break
                try:
                    if batch:
                        self._run(batch)
                except Exception:  # the worker must outlive any bug: a dead worker would stall every session
                    log.exception("engine worker: unexpected error")
                finally:
                    with self._cond:
                        self._busy = False
                    self._check_idle()

    def _run(self, batch: list[QueuedJob[StreamHandle]]) -> None:
        t0 = self.clock()
        try:
            results = self._call(batch)
        except Exception as e:
            if len(batch) > 1 and self.model.retry_alone:
                # One bad window must not fail its batch-mates: run each alone and fail only those that fail.
                log.warning("model %s failed on a batch of %d; running each alone", self.model.spec.name, len(batch))
                for job in batch:
                    self._run([job])
                return
            log.exception("model %s failed on a batch of %d", self.model.spec.name, len(batch))
            self.stats.failed_jobs += len(batch)
            for job in batch:
                self._deliver(job.callback, Failed(f"{type(e).__name__}: {e}"))
            return
        done = self.clock()
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.model_seconds += done - t0
        self.stats.sizes = [*self.stats.sizes[-99:], len(batch)]
        if self.observer is not None:
            self.observer.on_batch(len(batch), done - t0, [done - job.submitted for job in batch])
        for job, result in zip(batch, results, strict=True):
            self._deliver(job.callback, result)

    def _call(self, batch: Sequence[QueuedJob[StreamHandle]]) -> list[Any]:
        results = self.model.run_batch([job.payload for job in batch], [job.stream.state for job in batch])
        if len(results) != len(batch):
            raise RuntimeError(f"model returned {len(results)} results for {len(batch)} jobs")
        return results

    def _deliver(self, callback: ResultCallback, result: Result) -> None:
        loop = self._loop
        if loop is None:
            callback(result)  # offline: the caller's own thread
            return
        if loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we were computing
            loop.call_soon_threadsafe(callback, result)

    def _check_idle(self) -> None:
        loop, idle = self._loop, self._idle
        if loop is None or idle is None or loop.is_closed():
            return

        def check() -> None:
            with self._cond:
                empty = not self._busy and not any(self._queues.values())
            if empty:
                idle.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(check)


@contextlib.contextmanager
def device_stream(model: Model) -> Iterator[None]:
    """Run the worker's model calls on a dedicated CUDA stream when the model lives on a CUDA device.

    Models expose `device` (a torch.device) when they run on torch; others (numpy, onnxruntime) have none.
    On the CPU this is a no-op, so the tests exercise the same worker code.
    """
    device = getattr(model, "device", None)
    if device is None or getattr(device, "type", "cpu") != "cuda":
        yield
        return
    import torch

    stream = torch.cuda.Stream(device=device)
    with torch.cuda.stream(stream):
        yield
