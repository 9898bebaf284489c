"""Who may open a session: the Host it names, a bearer token (header, `?token=` or a subprotocol), browser Origin.

DNS rebinding: a hostile web page can make its own host name resolve to 127.0.0.1 and then talk to a local server
as a "same-origin" page. Its requests name its own host in `Host`, so a request is only served when `Host` is an IP
literal, `localhost`, the address the server is bound to, or listed in `[server] allowed_hosts`.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from streamer.config import AuthConfig, ServerConfig
from streamer.errors import Unauthorized

SUBPROTOCOL = "streamer.v1"
TOKEN_SUBPROTOCOL_PREFIX = "token."  # browsers cannot set headers: new WebSocket(url, ["streamer.v1", "token.T"])
LOCAL_NAMES = frozenset({"localhost", "localhost."})


def offered_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if "token" in request.query:
        return request.query["token"]
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    return None


def check_host(request: web.Request, server: ServerConfig) -> Unauthorized | None:
    """None when the request's Host header names this server (see the module's note on DNS rebinding)."""
    host = request.headers.get("Host")
    if host is None or "*" in server.allowed_hosts:
        return None  # no Host: not a browser (HTTP/1.0 health checks)
    name = _host_name(host)
    if name in LOCAL_NAMES or name == server.host.lower() or name in {h.lower() for h in server.allowed_hosts}:
        return None
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        return Unauthorized(f"host {host!r} is not this server's; add it to [server] allowed_hosts")


def check_token(request: web.Request, auth: AuthConfig) -> Unauthorized | None:
    if not auth.token:
        return None
    token = offered_token(request)
    if token is None:
        return Unauthorized("this server needs a token: 'Authorization: Bearer …', ?token=… or a token.… subprotocol")
    # Header bytes that are not UTF-8 arrive as surrogate escapes; they can only be a wrong token.
    offered = token.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(offered, auth.token.encode("utf-8")):
        return Unauthorized("wrong token")
    return None


def check_access(request: web.Request, server: ServerConfig, auth: AuthConfig) -> Unauthorized | None:
    """None when the request may open a session, else the error to answer with."""
    refusal = check_host(request, server)
    if refusal is not None:
        return refusal
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(origin, request, auth.allowed_origins):
        return Unauthorized(f"origin {origin!r} is not allowed; add it to [auth] allowed_origins")
    return check_token(request, auth)


def _host_name(host: str) -> str:
    """'example.com:8765' → 'example.com'; '[::1]:8765' → '::1'."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _origin_allowed(origin: str, request: web.Request, allowed: list[str]) -> bool:
    """Browsers send Origin; by default only pages served by this server (same scheme, host and port) may
    connect. Behind a TLS-terminating proxy the page is https while the request reaching us is http."""
    if "*" in allowed or origin in allowed:
        return True
    parts = urlsplit(origin)
    schemes = {request.scheme}
    if request.headers.get("X-Forwarded-Proto", "").lower() == "https":
        schemes.add("https")
    return parts.scheme in schemes and parts.netloc == request.host
