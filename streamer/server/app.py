"""The aiohttp application: routes, start-up, and a shutdown that never outlives its grace period.

Routes: `/v1/stream` (the WebSocket protocol), `/healthz` (liveness), `/readyz` (readiness: 503 while draining or
full), `/v1/models` (what the demo needs before a session), `/metrics` (behind the token when one is set: it
reveals usage), and the browser demo at `/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from streamer import protocol as p
from streamer.config import Config
from streamer.errors import ConfigError
from streamer.models.base import Model
from streamer.models.registry import load_model
from streamer.resources import web_dir
from streamer.server.access import SUBPROTOCOL, check_access, check_host, check_token
from streamer.server.connection import Connection
from streamer.server.guard import ConnectionGuard, GuardedSite
from streamer.server.state import ServerState
from streamer.sinks.factory import SessionSinks

log = logging.getLogger(__name__)

STATE = web.AppKey("state", ServerState)
CONFIG = web.AppKey("config", Config)
GUARD = web.AppKey("guard", ConnectionGuard)
# aiohttp refuses frames over this multiple of our own limit before reading them (closing with 1009 at once); up to
# it, an oversized frame is read and answered with a coded `frame_too_large` error.
OVERSIZE_FACTOR = 4
HEARTBEAT_S = 20.0
SERVER_HEADER = "streamer"
GIVE_UP_RESERVE_S = 1.0  # at most this much of the shutdown grace is kept for sessions to close
STATIC_PREFIX = "/static/"


def load_models(config: Config) -> dict[str, Model]:
    names = [config.model, *[n for n in config.preload if n != config.model]]
    if config.engine.backend == "ray":  # replicas load the models; this server needs their specs only
        from streamer.replicas.remote_model import remote_models

        return remote_models(config, names)
    return {name: load_model(name, config.model_options(name)) for name in names}


def create_app(
    config: Config,
    models: Mapping[str, Model] | None = None,
    sinks: SessionSinks | None = None,
    *,
    owns_models: bool | None = None,
) -> web.Application:
    """Build the server. `models` (name → loaded model) is for tests and embedding; by default the configured
    models are loaded at start-up (and closed at the end: whoever loads a model closes it). `sinks` gives sessions
    their MIDI port / file sinks (default: from config)."""
    guard = ConnectionGuard(config.server.max_connections_per_client, config.server.handshake_timeout_s)
    app = web.Application(middlewares=[guard.middleware, _checks])
    app[CONFIG] = config
    app[GUARD] = guard

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        loaded = dict(models) if models is not None else await asyncio.to_thread(load_models, config)
        session_sinks = sinks if sinks is not None else await asyncio.to_thread(SessionSinks, config.midi)
        owns = models is None if owns_models is None else owns_models
        state = ServerState(config, loaded, session_sinks if session_sinks.active else None, owns_models=owns)
        state.start(asyncio.get_running_loop())
        app[STATE] = state
        log.info("serving models: %s", ", ".join(loaded))
        yield
        await state.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(_stop_sessions)
    app.on_response_prepare.append(_server_header)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models_info)
    root = Path(config.server.web_root) if config.server.web_root else web_dir()
    app.router.add_get("/", _index(root))
    if root.is_dir():
        app.router.add_static(STATIC_PREFIX, root)
    return app


@web.middleware
async def _checks(request: web.Request, handler: Any) -> web.StreamResponse:
    """The Host check for every route (DNS rebinding), the token for the informative ones, and static file names
    the file system refuses (too long) answered as not found rather than a server error."""
    config = request.app[CONFIG]
    refusal = check_host(request, config.server)
    if refusal is not None and request.path != "/v1/stream":  # the stream answers with a protocol error instead
        raise web.HTTPForbidden(text=refusal.message)
    if request.path == "/metrics" and (refusal := check_token(request, config.auth)) is not None:
        raise web.HTTPUnauthorized(text=refusal.message, headers={"WWW-Authenticate": "Bearer"})
    try:
        return await handler(request)
    except OSError:
        if request.path.startswith(STATIC_PREFIX):
            raise web.HTTPNotFound() from None
        raise


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER  # not aiohttp's and Python's versions


async def stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    ws = web.WebSocketResponse(
        max_msg_size=OVERSIZE_FACTOR * config.limits.max_frame_bytes,
        heartbeat=HEARTBEAT_S,
        protocols=(SUBPROTOCOL,),
        # No permessage-deflate: PCM audio barely compresses, and a zlib context per connection costs memory.
        compress=False,
        timeout=config.limits.close_timeout_s,
    )
    await ws.prepare(request)
    remote = request.remote or "unknown"
    refusal = check_access(request, config.server, config.auth) or state.admit(remote)
    if refusal is not None:
        state.count_error(refusal.code)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(p.encode(p.Error(code=refusal.code, message=refusal.message)))
            await ws.close(code=refusal.close_code, message=refusal.code.encode())
        return ws
    connection = Connection(state, ws, request, remote)
    state.register(connection)
    # aiohttp may cancel a handler whose client vanished; the session must still end properly (sinks closed, engine
    # stream released, the connection forgotten), so it runs shielded and notices the closed socket itself.
    await asyncio.shield(connection.run())
    return ws


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {"status": "ok", "models": sorted(state.models), "sessions": len(state.connections), "version": 1}
    )


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status = "ready" if state.ready else ("draining" if not state.accepting else "full")
    body = {"status": status, "sessions": len(state.connections), "max_sessions": state.config.limits.max_sessions}
    return web.json_response(body, status=200 if state.ready else 503)


async def models_info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "default": state.session_options.default_model,
            "models": [
                {
                    "name": spec.name,
                    "sample_rate": spec.sample_rate,
                    "window": spec.window_s,
                    "default_hop": spec.default_hop_s,
                    "min_hop": spec.min_hop_s,
                    "max_hop": spec.max_hop_s,  # unrounded: a page uses min..max as an input range
                    "streaming": spec.streaming,
                    "lookahead": round(spec.lookahead_s, 4),
                    "description": spec.description,
                }
                for spec in state.specs.values()
            ],
        }
    )


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    response = web.Response(body=state.metrics.render())
    response.headers["Content-Type"] = state.metrics.content_type
    return response


def _index(root: Path):  # type: ignore[no-untyped-def]
    async def index(request: web.Request) -> web.StreamResponse:
        page = root / "index.html"
        if page.is_file():
            return web.FileResponse(page)
        return web.Response(text="streamer: WebSocket endpoint at /v1/stream (browser demo not installed)\n")

    return index


async def _stop_sessions(app: web.Application) -> None:
    """aiohttp's shutdown step: any session still open commits what it heard, gets `done`, and closes (1001)."""
    state = app.get(STATE)
    if state is None:
        return
    state.accepting = False
    for connection in list(state.connections):
        connection.shutdown()


# ---- running it ----------------------------------------------------------------------------------------------------


async def drain(app: web.Application, stream_s: float, grace_s: float) -> None:
    """SIGTERM: refuse new sessions (readiness fails at once); live sessions keep streaming for `stream_s` (their
    clients may move to another server meanwhile); then every session commits, gets `done` and 1001. Sessions whose
    last windows are still queued near the end of `grace_s` finish without them. Returns when all sessions ended or
    `grace_s` passed."""
    state = app[STATE]
    state.accepting = False
    deadline = time.monotonic() + grace_s
    reserve = min(GIVE_UP_RESERVE_S, grace_s / 4)  # for sessions to send their last messages and close
    await state.sessions_ended(min(stream_s, max(0.0, deadline - reserve - time.monotonic())))
    for connection in list(state.connections):
        connection.shutdown()
    if not await state.sessions_ended(max(0.0, deadline - reserve - time.monotonic())):
        for connection in list(state.connections):
            connection.give_up()
        await state.sessions_ended(max(0.0, deadline - time.monotonic()))


async def serve(config: Config, app: web.Application, ssl_context: ssl.SSLContext | None = None) -> None:
    """Run until SIGTERM or SIGINT (a second one skips the drain), then shut down within the grace period."""
    server = config.server
    runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=server.handshake_timeout_s,
                           shutdown_timeout=1.0, access_log=None)  # fmt: skip
    await runner.setup()
    site = GuardedSite(runner, app[GUARD], server.host, server.port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {server.host}:{server.port}: {e.strerror or e}") from None
    scheme = "wss" if ssl_context else "ws"
    print(f"streamer: model {config.model}, listening on {scheme}://{server.host}:{site.port}/v1/stream", flush=True)
    loop = asyncio.get_running_loop()
    signals = asyncio.Queue[int]()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    received = await signals.get()
    log.info("%s: draining (grace %.1f s)", signal.Signals(received).name, server.shutdown_grace_s)
    started = time.monotonic()
    draining = asyncio.create_task(drain(app, server.drain_s, server.shutdown_grace_s))
    again = asyncio.create_task(signals.get())
    await asyncio.wait({draining, again}, return_when=asyncio.FIRST_COMPLETED)
    if not draining.done():  # a second signal: stop streaming now, still commit and close properly
        for connection in list(app[STATE].connections):
            connection.shutdown()
        await draining
    again.cancel()
    remaining = max(0.5, server.shutdown_grace_s - (time.monotonic() - started))
    app[STATE].stop_timeout = max(0.1, remaining - 0.5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(runner.cleanup(), remaining)
    log.info("stopped after %.1f s", time.monotonic() - started)
