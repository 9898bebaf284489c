"""The aiohttp application: routes, start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web

from streamer.config import Config
from streamer.models.base import Model
from streamer.models.registry import load_model
from streamer.server import protocol as p
from streamer.server.access import SUBPROTOCOL, check_access
from streamer.server.connection import Connection
from streamer.server.hub import Hub
from streamer.sinks.factory import SessionSinks

log = logging.getLogger(__name__)

HUB = web.AppKey("hub", Hub)
CONFIG = web.AppKey("config", Config)
OVERSIZE_FACTOR = 4
WEB_ROOT = Path(__file__).resolve().parents[2] / "clients" / "web"


def load_models(config: Config) -> dict[str, Model]:
    names = [config.model, *[n for n in config.preload if n != config.model]]
    return {name: load_model(name, config.model_options(name)) for name in names}


def create_app(
    config: Config, models: Mapping[str, Model] | None = None, sinks: SessionSinks | None = None
) -> web.Application:
    """Build the server. `models` (name → loaded model) is for tests and embedding; by default the configured
    models are loaded at start-up. `sinks` gives sessions their MIDI port / file sinks (default: from config)."""
    app = web.Application()
    app[CONFIG] = config

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loaded = dict(models) if models is not None else await asyncio.to_thread(load_models, config)
        session_sinks = sinks if sinks is not None else SessionSinks(config.midi)
        hub = Hub(config, loaded, session_sinks if session_sinks.active else None)
        hub.start(asyncio.get_running_loop())
        app[HUB] = hub
        log.info("serving models: %s", ", ".join(loaded))
        yield
        await hub.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_shutdown_sessions)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models_info)
    web_root = Path(config.server.web_root) if config.server.web_root else WEB_ROOT
    app.router.add_get("/", _index(web_root))
    if web_root.is_dir():
        app.router.add_static("/static/", web_root)
    return app


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    limits = hub.config.limits
    # aiohttp's own cap sits above ours so that an oversized frame still gets a coded error message; beyond
    # the cap aiohttp closes with 1009 before reading the frame into memory.
    # No permessage-deflate: PCM audio barely compresses, and a zlib context per connection costs CPU and memory.
    ws = web.WebSocketResponse(
        max_msg_size=OVERSIZE_FACTOR * limits.max_frame_bytes,
        heartbeat=20.0,
        protocols=(SUBPROTOCOL,),
        compress=False,
    )
    await ws.prepare(request)
    remote = request.remote or "unknown"
    refusal = check_access(request, hub.config.auth) or hub.admit(remote)
    if refusal is not None:
        hub.count_error(refusal.code)
        await ws.send_str(p.encode(p.Error(code=refusal.code, message=refusal.message)))
        await ws.close(code=refusal.close_code, message=refusal.code.encode())
        return ws
    connection = Connection(hub, ws, remote)
    hub.register(connection)
    await connection.run()
    return ws


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {
            "status": "ok",
            "models": sorted(hub.models),
            "sessions": len(hub.connections),
            "version": p.PROTOCOL_VERSION,
        }
    )


async def models_info(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {
            "default": hub.session_options.default_model,
            "models": [
                {
                    "name": spec.name,
                    "sample_rate": spec.sample_rate,
                    "window": spec.window_s,
                    "default_hop": spec.default_hop_s,
                    "min_hop": spec.min_hop_s,
                    "max_hop": round(spec.max_hop_s, 3),
                    "description": spec.description,
                }
                for spec in hub.specs.values()
            ],
        }
    )


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    response = web.Response(body=hub.metrics.render())
    response.content_type = "text/plain"
    response.headers["Content-Type"] = hub.metrics.content_type
    return response


def _index(web_root: Path):  # type: ignore[no-untyped-def]
    async def index(request: web.Request) -> web.StreamResponse:
        page = web_root / "index.html"
        if page.is_file():
            return web.FileResponse(page)
        return web.Response(text="streamer: WebSocket endpoint at /v1/stream (browser demo not installed)\n")

    return index


async def _shutdown_sessions(app: web.Application) -> None:
    hub = app.get(HUB)
    if hub is None:
        return
    hub.accepting = False
    grace = hub.config.server.shutdown_grace_s
    await asyncio.gather(*(c.shutdown(grace) for c in list(hub.connections)), return_exceptions=True)
