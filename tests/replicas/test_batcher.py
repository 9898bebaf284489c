"""A replica's batches form when the model is free: what waited meanwhile goes in together, up to the batch size; a
lone window waits at most the batch wait."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from streamer.replicas.batcher import Batcher


class GatedRun:
    """A model call that holds until the test opens the gate: windows arrive while it is busy."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[bytes]] = []

    def __call__(self, bodies: Sequence[bytes]) -> list[bytes]:
        self.batches.append(list(bodies))
        self.started.set()
        self.gate.wait(10)
        return [body.upper() for body in bodies]


async def test_windows_that_wait_while_the_model_runs_go_in_together() -> None:
    run = GatedRun()
    batcher = Batcher(run, max_batch=4, wait_s=0.0)
    first = asyncio.ensure_future(batcher.submit(b"a"))
    await asyncio.to_thread(run.started.wait, 10)  # the model is busy with [a]
    later = [asyncio.ensure_future(batcher.submit(body)) for body in (b"b", b"c", b"d", b"e", b"f", b"g")]
    await asyncio.sleep(0)
    run.gate.set()
    assert await first == b"A"
    assert await asyncio.gather(*later) == [b"B", b"C", b"D", b"E", b"F", b"G"]
    assert run.batches == [[b"a"], [b"b", b"c", b"d", b"e"], [b"f", b"g"]]


async def test_a_batch_closes_when_full_or_when_the_wait_is_over() -> None:
    run = GatedRun()
    run.gate.set()
    full = Batcher(run, max_batch=2, wait_s=60.0)
    pair = asyncio.gather(full.submit(b"a"), full.submit(b"b"))
    assert await asyncio.wait_for(pair, 10) == [b"A", b"B"]  # full: it did not wait the minute
    alone = Batcher(run, max_batch=8, wait_s=0.01)
    assert await alone.submit(b"c") == b"C"  # nothing else came: it ran by itself after the wait
    assert run.batches == [[b"a", b"b"], [b"c"]]


async def test_a_failing_run_fails_its_batch_and_the_batcher_goes_on() -> None:
    calls = []

    def run(bodies: Sequence[bytes]) -> list[bytes]:
        calls.append(list(bodies))
        if b"bad" in bodies:
            raise RuntimeError("bug")
        return list(bodies)

    batcher = Batcher(run, max_batch=8, wait_s=0.0)
    with pytest.raises(RuntimeError, match="bug"):
        await batcher.submit(b"bad")
    assert await batcher.submit(b"good") == b"good"
