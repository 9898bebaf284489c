"""The front end's engine when models run in replicas: the local engine's surface and policies, windows over HTTP.

Sessions, windowing and stitching stay on the front end; this engine sends each window to `ADDRESS/<model>`, where
Ray Serve hands it to a replica that batches windows from every front end (streamer/replicas/deployment.py). The
local engine's policies hold here, because the queue that matters is here, in front of a bounded number of windows
in flight (`[replicas] max_in_flight`):

- streams are served round-robin, one window each per turn;
- a stream whose model keeps memory (MR-MT3) has at most one window out: its next window needs the memory the last
  one returns. Until a stream's first reply says whether its model keeps memory, it is treated as if it did;
- a live stream that lags (its oldest queued window older than `max_lag_s`, or `max_queued` queued) has its queued
  windows merged into the newest (`Skipped`); uploads are never merged, their sessions wait for room instead.

A window whose replica dies, hangs past `timeout_s` or cannot be reached is sent again, up to `retries` times:
the ingress gives it to another replica, and since the stream's memory travels with the window the retry is exact.
After that the window fails (`Failed`: the client gets `model_failed`) and the session goes on. A window the model
itself failed on is not retried (another replica would fail it the same way).

Everything runs on the server's event loop: requests are asynchronous, and results reach their callbacks there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import aiohttp
import msgspec

from streamer.audio.windows import Window
from streamer.config import ReplicasConfig
from streamer.engine import Clock, EngineObserver, QueuedJob, ResultCallback, StreamHandle, enqueue, report_skipped
from streamer.errors import ConfigError
from streamer.jobs import Failed, Result
from streamer.models.base import Model
from streamer.replicas.remote_model import streaming_refusal
from streamer.replicas.wire import CONTENT_TYPE, ReplyMessage, decode_reply, encode_window

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.05  # before the n-th retry, n times this: the ingress may need a moment to see a replica gone
RECENT = 1000  # round trips kept for benchmarks


@dataclass(slots=True)
class RemoteStats:
    jobs: int = 0
    skipped: int = 0
    failed_jobs: int = 0
    retries: int = 0
    # Per answered window, the latest RECENT: seconds from sending to the reply, and of those, the replica's model
    # call (the rest is what the replicas add: encoding, the network, the ingress, waiting for a batch).
    round_trips: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=100))  # batch sizes the replicas reported


class RemoteStream(StreamHandle):
    """One session's stream: its queue here, and as its state, its model memory as the last reply gave it."""

    def __init__(self, engine: RemoteEngine, stream_id: int) -> None:
        super().__init__(engine, stream_id, state=b"")  # empty: a new stream (the replica starts from new_stream())
        self.keeps_memory: bool | None = None  # unknown until the first reply
        self.in_flight = 0

    @property
    def memory(self) -> bytes:
        memory: bytes = self.state
        return memory

    @memory.setter
    def memory(self, value: bytes) -> None:
        self.state = value


class RemoteEngine:
    def __init__(
        self,
        model: Model,
        replicas: ReplicasConfig,
        *,
        max_lag_s: float = 1.0,
        max_queued: int = 8,
        observer: EngineObserver | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        if model.spec.streaming:
            raise ConfigError(streaming_refusal(model.spec.name))
        self.model = model
        self.max_batch = replicas.max_batch
        self.url = f"{replicas.address}/{model.spec.name}"
        self.max_in_flight = replicas.max_in_flight or replicas.count * replicas.max_batch
        self.retries = replicas.retries
        self.timeout = replicas.timeout_s
        self.max_lag = max_lag_s
        self.max_queued = max_queued
        self.observer = observer
        self.clock = clock
        self.stats = RemoteStats()
        self._queues: OrderedDict[RemoteStream, deque[QueuedJob[RemoteStream]]] = OrderedDict()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = False

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        # One pooled connection per window in flight: no window waits inside aiohttp for a connection.
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        self._http = aiohttp.ClientSession(connector=connector, headers={"Content-Type": CONTENT_TYPE})
        self._running = True

    async def stop(self, timeout: float | None = None) -> bool:
        """Let what is queued and in flight finish for at most `timeout` seconds; then drop the rest. Always True:
        nothing here keeps computing after it returns (the replicas may, and discard the answer)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        self._running = False
        self._queues.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        return True

    async def idle(self) -> None:
        """Wait until nothing is queued or in flight."""
        await self._idle.wait()

    # ---- streams -----------------------------------------------------------------------------------------------

    def open_stream(self) -> RemoteStream:
        stream = RemoteStream(self, next(self._ids))
        self._queues[stream] = deque()
        return stream

    @property
    def queued(self) -> int:
        """Windows waiting here (not those in flight)."""
        return sum(len(q) for q in self._queues.values())

    @property
    def in_flight(self) -> int:
        """Windows sent and not yet answered."""
        return self._in_flight

    def _queued_for(self, stream: RemoteStream) -> int:
        queue = self._queues.get(stream)
        return len(queue) if queue is not None else 0

    def _close(self, stream: RemoteStream) -> None:
        self._queues.pop(stream, None)
        self._check_idle()

    def _submit(self, stream: RemoteStream, payload: Window, callback: ResultCallback, live: bool) -> None:
        queue = self._queues.get(stream)
        if queue is None:
            raise KeyError(f"stream {stream.id} is not open")
        job = QueuedJob(stream, payload, callback, self.clock())
        skipped = enqueue(queue, job, self.model, live=live, max_lag=self.max_lag, max_queued=self.max_queued)
        self._idle.clear()
        report_skipped(skipped, self.stats, self.observer)
        self._pump()

    # ---- sending -----------------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Send queued windows while fewer than `max_in_flight` are out."""
        if not self._running or self._loop is None:
            return
        while self._in_flight < self.max_in_flight and (job := self._next_job()) is not None:
            self._in_flight += 1
            job.stream.in_flight += 1
            task = self._loop.create_task(self._send(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_job(self) -> QueuedJob[RemoteStream] | None:
        """Round-robin: the first stream in line that has a window and may send it; it goes to the back."""
        for stream, queue in self._queues.items():
            if queue and (stream.in_flight == 0 or stream.keeps_memory is False):
                self._queues.move_to_end(stream)
                return queue.popleft()
        return None

    async def _send(self, job: QueuedJob[RemoteStream]) -> None:
        stream = job.stream
        spec = self.model.spec
        result: Result
        try:
            body = encode_window(spec.name, spec.sample_rate, job.payload, stream.memory)
            sent = self.clock()
            reply = await self._exchange(body)
            done = self.clock()
            if isinstance(reply, Failed):
                result = reply
            elif reply.error:
                log.warning("model %s failed on a window: %s", spec.name, reply.error)
                result = Failed(reply.error)
            else:
                stream.memory = reply.memory
                stream.keeps_memory = bool(reply.memory)
                result = reply.notes
                self.stats.jobs += 1
                self.stats.round_trips.append((done - sent, reply.model_s))
                self.stats.sizes.append(reply.batch)
                if self.observer is not None:
                    self.observer.on_batch(reply.batch, reply.model_s, [done - job.submitted])
            if isinstance(result, Failed):
                self.stats.failed_jobs += 1
            job.callback(result)
        finally:
            self._in_flight -= 1
            stream.in_flight -= 1
            self._pump()
            self._check_idle()

    async def _exchange(self, body: bytes) -> ReplyMessage | Failed:
        """POST one window; on a dead, hung or unreachable replica, again (the ingress picks another)."""
        assert self._http is not None, "RemoteEngine.start() was not called"
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                log.warning("window to %s: %s; retry %d of %d", self.url, problem, attempt, self.retries)
                await asyncio.sleep(RETRY_PAUSE_S * attempt)
            try:
                async with self._http.post(
                    self.url, data=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
                ) as response:
                    data = await response.read()
                    if response.status == 200:
                        return decode_reply(data)
                    problem = f"HTTP {response.status} {data[:200].decode(errors='replace')!r}"
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, msgspec.ValidationError) as e:
                problem = f"{type(e).__name__}: {e}"
        log.error("window to %s failed after %d tries: %s", self.url, self.retries + 1, problem)
        return Failed(f"no model replica answered ({self.retries + 1} tries; last: {problem})")

    def _check_idle(self) -> None:
        if self._in_flight == 0 and not any(self._queues.values()):
            self._idle.set()

    @property
    def added_latencies(self) -> list[float]:
        """Seconds each recent window spent outside the replicas' model calls, on its way there and back."""
        return [total - model for total, model in self.stats.round_trips]
