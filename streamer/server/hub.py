"""What lives as long as the server: loaded models and their engines, live connections, sinks, metrics."""

from __future__ import annotations

import asyncio
import logging
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
    from streamer.server.connection import Connection

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, config: Config, models: Mapping[str, Model], sinks: SessionSinks | None = None) -> None:
        self.config = config
        self.models = dict(models)
        self.specs: dict[str, ModelSpec] = {name: m.spec for name, m in self.models.items()}
        self.session_options = SessionOptions(
            default_model=config.model if config.model in self.models else next(iter(self.models)),
            hop_s=config.windowing.hop,
            commit_margin_s=config.windowing.commit_margin,
        )
        self.metrics = Metrics()
        self.metrics.queued.set_function(lambda: sum(e.queued for e in self.engines.values()))
        self.engines: dict[str, Engine] = {}
        self.connections: set[Connection] = set()
        self._per_client: Counter[str] = Counter()
        self._sinks = sinks
        self.accepting = True

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.metrics.tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        cfg = self.config.engine
        for name, model in self.models.items():
            engine = Engine(
                model,
                max_batch=cfg.max_batch,
                max_wait_ms=cfg.max_wait_ms,
                max_pending=cfg.max_pending_windows,
                max_lag_s=cfg.max_lag_s,
            )
            engine.observer = self.metrics.engine_observer(name, model.spec.window_s)
            engine.start(loop)
            self.engines[name] = engine

    async def stop(self) -> None:
        for engine in self.engines.values():
            await engine.stop(drain=True)
        if self._sinks is not None:
            self._sinks.close()

    # ---- admission ---------------------------------------------------------------------------------------------

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

    def register(self, connection: Connection) -> None:
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

    def open_sinks(self, session_id: str) -> list[EventSink]:
        return self._sinks.open_session(session_id) if self._sinks is not None else []

    def count_error(self, code: str) -> None:
        self.metrics.errors.labels(code).inc()
