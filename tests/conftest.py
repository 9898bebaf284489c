"""Shared fixtures: a live server on a real loopback socket, loaded models, synthesized audio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from streamer.config import Config, load_config
from streamer.models.base import Model
from streamer.server.app import STATE, create_app
from streamer.server.state import ServerState
from streamer.sinks.factory import SessionSinks


class LiveServer:
    """A running server: `url` is its WebSocket endpoint, `state` its state (engines, connections, metrics)."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.port = server.port
        self.base = f"http://127.0.0.1:{server.port}"
        self.url = f"ws://127.0.0.1:{server.port}/v1/stream"

    @property
    def state(self) -> ServerState:
        return self.server.app[STATE]

    async def stop(self) -> None:
        await self.server.close()


ServeFn = Callable[..., Awaitable[LiveServer]]


@pytest.fixture(scope="session")
def basic_pitch_model() -> Model:
    """The default model as served: basic-pitch streaming, with the default options."""
    from streamer.models.basic_pitch import build_model

    return build_model({})


@pytest.fixture(scope="session")
def basic_pitch_windowed() -> Model:
    """basic-pitch's ONNX file on overlapping 2 s windows (`streaming = false`)."""
    from streamer.models.basic_pitch import build_model

    return build_model({"streaming": False})


@pytest.fixture
async def serve(aiohttp_server) -> AsyncIterator[ServeFn]:  # type: ignore[no-untyped-def]
    """Start servers on free loopback ports: `await serve(models, overrides=..., sinks=...)` (pytest-aiohttp's
    server fixture runs them and shuts them down after the test)."""

    async def start(
        models: Mapping[str, Model],
        overrides: dict[str, Any] | None = None,
        sinks: SessionSinks | None = None,
        config: Config | None = None,
    ) -> LiveServer:
        cfg = config or load_config(overrides=overrides)
        server = await aiohttp_server(create_app(cfg, models, sinks), host="127.0.0.1")
        return LiveServer(server)

    yield start
