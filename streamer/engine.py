"""The inference engine: one per loaded model, a worker thread that batches windows from all sessions.

Sessions submit windows from the event loop; the worker takes at most one window per stream per batch, visiting
streams round-robin (a stream that floods cannot starve the others), waits up to `max_wait_ms` for a batch to fill,
runs the model, and hands each result back on the event loop. When a live stream's oldest queued window has waited
longer than `max_lag_s`, the engine is not keeping up with it: its queued windows are merged into the newest one
(the older ones are reported as skipped), so latency stays bounded instead of growing with the backlog. A burst of
windows that the engine clears in time is never merged. On CUDA the model runs on the engine's own stream
(see `device_stream`); on the CPU the same code runs with a no-op stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streamer.models.base import Model, WindowRequest
from streamer.notes import WindowNote

log = logging.getLogger(__name__)

# (notes, None) on success; (None, None) when skipped; (None, error) when the model failed on the batch.
ResultCallback = Callable[[list[WindowNote] | None, BaseException | None], None]


@dataclass(slots=True)
class _Job:
    stream: int
    request: WindowRequest
    callback: ResultCallback
    submitted: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class EngineStats:
    batches: int = 0
    windows: int = 0
    skipped: int = 0
    failed_batches: int = 0
    model_seconds: float = 0.0


class Engine:
    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 4.0,
        max_pending: int = 2,
        max_lag_s: float = 1.0,
        observer: Any = None,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_pending = max_pending  # how deep a throttled (faster than real time) stream may queue
        self.max_lag = max_lag_s
        self.observer = observer  # metrics: on_batch(size, seconds, latencies), on_skipped(n)
        self.stats = EngineStats()
        self._queues: OrderedDict[int, deque[_Job]] = OrderedDict()
        self._cond = threading.Condition()
        self._running = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._running = True
        self._thread = threading.Thread(target=self._work, name=f"engine-{self.model.spec.name}", daemon=True)
        self._thread.start()

    async def stop(self, drain: bool = True) -> None:
        """Stop the worker; with `drain`, windows already queued are run first."""
        if drain:
            await self.drained()
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self.model.close()

    async def drained(self) -> None:
        while self.queued or self._busy:
            await asyncio.sleep(0.005)

    # ---- sessions ----------------------------------------------------------------------------------------------

    def open_stream(self) -> int:
        stream = next(self._ids)
        with self._cond:
            self._queues[stream] = deque()
        return stream

    def close_stream(self, stream: int) -> None:
        """Forget a stream; its queued windows are dropped (the session is gone)."""
        with self._cond:
            self._queues.pop(stream, None)

    @property
    def queued(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def pending(self, stream: int) -> int:
        with self._cond:
            queue = self._queues.get(stream)
            return len(queue) if queue is not None else 0

    def submit(self, stream: int, request: WindowRequest, callback: ResultCallback, coalesce: bool = True) -> None:
        """Queue a window. `callback` runs on the event loop with the result. With `coalesce` (live streams), a
        lagging stream's queued windows are reported as skipped and only the newest is kept."""
        skipped: list[_Job] = []
        now = time.perf_counter()
        with self._cond:
            queue = self._queues.get(stream)
            if queue is None:
                raise KeyError(f"stream {stream} is not open")
            if coalesce and queue and now - queue[0].submitted > self.max_lag:
                skipped = list(queue)
                queue.clear()
            queue.append(_Job(stream, request, callback))
            self._cond.notify()
        for job in skipped:
            job.callback(None, None)
        if skipped:
            self.stats.skipped += len(skipped)
            if self.observer is not None:
                self.observer.on_skipped(len(skipped))

    # ---- worker ------------------------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Job] | None:
        with self._cond:
            while self._running and not any(self._queues.values()):
                self._cond.wait()
            if not self._running and not any(self._queues.values()):
                return None
            deadline = time.perf_counter() + self.max_wait
            while self._running and self._ready_streams() < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch: list[_Job] = []
            for stream in list(self._queues):
                queue = self._queues[stream]
                if queue:
                    batch.append(queue.popleft())
                    # Round-robin: a stream served now goes to the back of the line.
                    self._queues.move_to_end(stream)
                    if len(batch) == self.max_batch:
                        break
            self._busy = True
            return batch

    def _ready_streams(self) -> int:
        return sum(1 for q in self._queues.values() if q)

    def _work(self) -> None:
        with device_stream(self.model):
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                try:
                    if batch:  # empty when every waiting stream closed while the batch was forming
                        self._run(batch)
                except Exception:  # the worker must outlive any bug: a dead worker would stall every session
                    log.exception("engine worker: unexpected error")
                finally:
                    with self._cond:
                        self._busy = False

    def _run(self, batch: list[_Job]) -> None:
        t0 = time.perf_counter()
        try:
            results = self.model.transcribe_windows([job.request for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"model returned {len(results)} results for {len(batch)} windows")
        except Exception as e:  # a model failure fails this batch's windows, never the server
            log.exception("model %s failed on a batch of %d windows", self.model.spec.name, len(batch))
            self.stats.failed_batches += 1
            for job in batch:
                self._deliver(job.callback, None, e)
            return
        elapsed = time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.windows += len(batch)
        self.stats.model_seconds += elapsed
        if self.observer is not None:
            done = time.perf_counter()
            self.observer.on_batch(len(batch), elapsed, [done - job.submitted for job in batch])
        for job, notes in zip(batch, results, strict=True):
            self._deliver(job.callback, notes, None)

    def _deliver(self, callback: ResultCallback, notes: list[WindowNote] | None, error: BaseException | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we were computing
            loop.call_soon_threadsafe(callback, notes, error)


@contextlib.contextmanager
def device_stream(model: Model) -> Iterator[None]:
    """Run the worker's model calls on a dedicated CUDA stream when the model lives on a CUDA device.

    Models expose `device` (a torch.device) when they run on torch; others (onnxruntime on the CPU) have none.
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
