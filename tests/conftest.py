"""Shared fixtures: a live server on a real loopback socket, loaded models, synthesized audio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp import web

from streamer.config import Config, load_config
from streamer.models.base import Model
from streamer.server.app import HUB, create_app
from streamer.server.hub import Hub
from streamer.sinks.factory import SessionSinks


class LiveServer:
    """A running server: `url` is its WebSocket endpoint, `hub` its state (engines, connections, metrics)."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"ws://127.0.0.1:{port}/v1/stream"

    @property
    def hub(self) -> Hub:
        return self.runner.app[HUB]

    async def stop(self) -> None:
        await self.runner.cleanup()


ServeFn = Callable[..., Awaitable[LiveServer]]


@pytest.fixture(scope="session")
def basic_pitch_model() -> Model:
    from streamer.models.basic_pitch import build_model

    return build_model({})


@pytest.fixture
async def serve() -> AsyncIterator[ServeFn]:
    """Start servers on free loopback ports: `await serve(models, overrides=..., sinks=...)`."""
    servers: list[LiveServer] = []

    async def start(
        models: Mapping[str, Model],
        overrides: dict[str, Any] | None = None,
        sinks: SessionSinks | None = None,
        config: Config | None = None,
    ) -> LiveServer:
        cfg = config or load_config(overrides=overrides)
        app = create_app(cfg, models, sinks)
        runner = web.AppRunner(app, shutdown_timeout=cfg.server.shutdown_grace_s + 2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server = LiveServer(runner, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
