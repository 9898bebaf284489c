"""A replica's batches: windows that arrive while the model is busy wait, and go in together once it is free.

Ray Serve's `@serve.batch` closes a batch `batch_wait_timeout_s` after its first request whether or not the model is
free, and queues the batches behind each other. Under steady load from several front ends that ran batches of one
window while three more waited their turn (measured with benchmarks/replica_bench.py: mean batch 1.07, round trip
four times the model call; docs/scaling.md). Here, as in the local engine, a batch is formed when the model is free:
everything waiting, up to `max_batch`, and when fewer wait, up to `wait_s` for more to arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

Run = Callable[[Sequence[bytes]], list[bytes]]


class Batcher:
    def __init__(self, run: Run, max_batch: int, wait_s: float) -> None:
        self.run = run  # called in a worker thread, one batch at a time
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.sizes: list[int] = []  # the latest batches' sizes, for tests
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[bytes]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, body: bytes) -> bytes:
        """The reply to `body`, once a batch with it has run."""
        if self._queue is None:  # created on the replica's event loop, at the first request
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work(self._queue))
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((body, future))
        return await future

    async def _work(self, queue: asyncio.Queue[tuple[bytes, asyncio.Future[bytes]]]) -> None:
        while True:
            batch = [await queue.get()]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                if queue.empty() and (remaining := deadline - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    continue
                if queue.empty():
                    break
                batch.append(queue.get_nowait())
            batch = [(body, future) for body, future in batch if not future.cancelled()]  # callers that left
            if not batch:
                continue
            self.sizes = [*self.sizes[-99:], len(batch)]
            try:
                replies = await asyncio.to_thread(self.run, [body for body, _ in batch])
            except Exception as e:  # the runner answers model failures itself; this is a bug, for these callers
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), reply in zip(batch, replies, strict=True):
                if not future.done():
                    future.set_result(reply)
