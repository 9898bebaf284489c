"""A model replica as a plain aiohttp app on loopback (no Ray): the replica runner behind a real HTTP socket, so the
front end's engine is tested over the network it uses, with failures a test can switch on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from streamer.models.base import Model
from streamer.replicas.runner import WindowRunner
from streamer.replicas.wire import CONTENT_TYPE


@dataclass
class Faults:
    drop: int = 0  # the next `drop` requests lose their connection without an answer (a replica dying mid-window)
    unavailable: int = 0  # the next `unavailable` requests get 503 (an ingress with no replica to give them to)
    delay_s: float = 0.0  # each request waits this long before running (windows stay in flight)
    seen: list[bytes] = field(default_factory=list)  # every request body that reached the runner


def replica_app(model: Model, faults: Faults) -> web.Application:
    runner = WindowRunner(model)

    async def window(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if faults.drop > 0:
            faults.drop -= 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if faults.unavailable > 0:
            faults.unavailable -= 1
            return web.Response(status=503, text="no replica available")
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        faults.seen.append(body)
        (reply,) = await asyncio.to_thread(runner.run, [body])
        return web.Response(body=reply, content_type=CONTENT_TYPE)

    app = web.Application()
    app.router.add_post(f"/{model.spec.name}", window)
    return app
