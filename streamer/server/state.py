"""What lives as long as the server: loaded models and their engines, live connections, sinks, metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from streamer.config import Config
from streamer.engine import Engine
from streamer.errors import Busy, ShuttingDown, StreamerError
from streamer.models.base import Model, ModelSpec
from streamer.server.metrics import Metrics
from streamer.session import SessionOptions
from streamer.sinks.base import EventSink
from streamer.sinks.factory import SessionSinks

if TYPE_CHECKING:
    from streamer.replicas.remote_engine import RemoteEngine
    from streamer.server.connection import Connection

log = logging.getLogger(__name__)

LOOP_LAG_INTERVAL_S = 0.25


def queue_bound(max_queued_windows: int, max_lag_s: float, spec: ModelSpec) -> int:
    """How many jobs a live stream may queue before older ones are merged away. A streaming model's blocks are short
    (46 ms): they are bounded by the lag allowed, in blocks, not by the window count."""
    if not spec.streaming:
        return max_queued_windows
    return max(max_queued_windows, math.ceil(max_lag_s / spec.window_s) + 1)


class ServerState:
    def __init__(
        self,
        config: Config,
        models: Mapping[str, Model],
        sinks: SessionSinks | None = None,
        *,
        owns_models: bool = False,
    ) -> None:
        self.config = config
        self.models = dict(models)
        self.owns_models = owns_models  # whoever loads a model closes it
        self.specs: dict[str, ModelSpec] = {name: m.spec for name, m in self.models.items()}
        self.session_options = SessionOptions(
            default_model=config.model if config.model in self.models else next(iter(self.models)),
            hop_s=config.windowing.hop,
            commit_margin_s=config.windowing.commit_margin,
            limits=config.limits,
            max_pending_windows=config.engine.max_pending_windows,
        )
        self.metrics = Metrics()
        self.engines: dict[str, Engine | RemoteEngine] = {}
        self.metrics.queued.set_function(lambda: sum(e.queued for e in self.engines.values()))
        self.connections: set[Connection] = set()
        self._per_client: Counter[str] = Counter()
        self._sinks = sinks
        self.metrics.midi_dropped.set_function(lambda: sinks.midi_dropped if sinks is not None else 0)
        self.accepting = True
        self.stop_timeout = config.server.shutdown_grace_s  # what engines get to finish at shutdown
        self._empty = asyncio.Event()
        self._empty.set()
        self._lag_task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.metrics.tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        cfg = self.config.engine
        for name, model in self.models.items():
            observer = self.metrics.engine_observer(name, model.spec.window_s)
            max_queued = queue_bound(cfg.max_queued_windows, cfg.max_lag_s, model.spec)
            engine: Engine | RemoteEngine
            if cfg.backend == "ray":  # the model's replicas run in Ray Serve; this server sends them windows
                from streamer.replicas.remote_engine import RemoteEngine

                engine = RemoteEngine(model, self.config.replicas, max_lag_s=cfg.max_lag_s, max_queued=max_queued,
                                      observer=observer)  # fmt: skip
            else:
                engine = Engine(
                    model,
                    max_batch=cfg.max_batch,
                    max_wait_ms=cfg.max_wait_ms,
                    max_lag_s=cfg.max_lag_s,
                    max_queued=max_queued,
                    observer=observer,
                )
            engine.start(loop)
            self.engines[name] = engine
        self._lag_task = loop.create_task(self._watch_loop_lag())

    async def stop(self) -> None:
        """Stop the engines (what is still queued gets at most `stop_timeout`), then release models and ports."""
        if self._lag_task is not None:
            self._lag_task.cancel()
        stopped = await asyncio.gather(*(e.stop(self.stop_timeout) for e in self.engines.values()))
        if self._sinks is not None:
            await asyncio.to_thread(self._sinks.close)
        if self.owns_models:
            for (name, model), finished in zip(self.models.items(), stopped, strict=True):
                if finished:
                    model.close()
                else:
                    log.warning("model %s is still computing at shutdown; not closing it under its worker", name)

    async def _watch_loop_lag(self) -> None:
        """How late the event loop wakes a sleeper: anything computing on the loop shows up here."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - t0 - LOOP_LAG_INTERVAL_S))

    # ---- admission ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether a load balancer should send this server new sessions."""
        return self.accepting and len(self.connections) < self.config.limits.max_sessions

    def admit(self, remote: str) -> StreamerError | None:
        """None if a new session from `remote` may start, else the error that refuses it."""
        limits = self.config.limits
        if not self.accepting:
            return ShuttingDown("the server is shutting down; retry on another server or later")
        if len(self.connections) >= limits.max_sessions:
            return Busy(f"the server is at its limit of {limits.max_sessions} sessions; retry in a few seconds")
        if self._per_client[remote] >= limits.max_sessions_per_client:
            return Busy(f"at most {limits.max_sessions_per_client} sessions per client address; retry when one ends")
        return None

    async def sessions_ended(self, timeout: float) -> bool:
        """Wait until no session is open (True), or `timeout` passed (False)."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def register(self, connection: Connection) -> None:
        self._empty.clear()
        self.connections.add(connection)
        self._per_client[connection.remote] += 1
        self.metrics.sessions.set(len(self.connections))
        self.metrics.sessions_total.inc()

    def forget(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self._per_client[connection.remote] -= 1
            if self._per_client[connection.remote] <= 0:
                del self._per_client[connection.remote]
        self.metrics.sessions.set(len(self.connections))
        if not self.connections:
            self._empty.set()

    def open_sinks(self, session_id: str) -> list[EventSink]:
        """A new session's MIDI port and file sinks (opening a port is slow: call off the event loop)."""
        return self._sinks.open_session(session_id) if self._sinks is not None else []

    def count_error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()
