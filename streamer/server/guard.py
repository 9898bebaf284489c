"""TCP-level protection before any HTTP is read: a per-address connection cap and a handshake deadline.

aiohttp reads a request's headers with no deadline, so connections that send headers slowly (slowloris) or nothing
at all would hold descriptors forever. `GuardedSite` wraps each accepted connection: an address over its cap is
dropped at once, and a connection whose first HTTP request has not reached a handler within the deadline is closed.
Once a request is handled, aiohttp's own keep-alive timeout and the WebSocket session's limits take over.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


class ConnectionGuard:
    def __init__(self, max_per_address: int, handshake_timeout_s: float) -> None:
        self.max_per_address = max_per_address
        self.handshake_timeout_s = handshake_timeout_s
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0
        self._handled: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    def wrap(self, inner: asyncio.Protocol) -> asyncio.Protocol:
        return _GuardedProtocol(self, inner)

    def handled(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None:
            self._handled.add(transport)

    def was_handled(self, transport: asyncio.BaseTransport) -> bool:
        return transport in self._handled

    @property
    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        guard = self

        @web.middleware
        async def mark_handled(request: web.Request, handler: Any) -> web.StreamResponse:
            guard.handled(request.transport)
            return await handler(request)

        return mark_handled


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; counts the address and enforces the handshake deadline."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._address: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if guard.open[address] >= guard.max_per_address:
            guard.refused += 1
            transport.abort()
            return
        self._address = address
        guard.open[address] += 1
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(guard.handshake_timeout_s, self._deadline, transport)
        self._inner.connection_made(transport)

    def _deadline(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.was_handled(transport) and not transport.is_closing():
            self._guard.timed_out += 1
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._address is None:
            return
        self._guard.open[self._address] -= 1
        if self._guard.open[self._address] <= 0:
            del self._guard.open[self._address]
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._address is not None else None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose accepted connections go through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, *args: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        guard = self._guard
        self._server = await asyncio.get_running_loop().create_server(
            lambda: guard.wrap(server()),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self.port

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])
