"""Who may open a session: bearer token (header, `?token=` or a WebSocket subprotocol) and browser Origin."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from streamer.config import AuthConfig
from streamer.errors import Unauthorized

SUBPROTOCOL = "streamer.v1"
TOKEN_SUBPROTOCOL_PREFIX = "token."  # browsers cannot set headers: new WebSocket(url, ["streamer.v1", "token.T"])


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


def check_access(request: web.Request, auth: AuthConfig) -> Unauthorized | None:
    """None when the request may open a session, else the error to answer with."""
    origin = request.headers.get("Origin")
    if origin is not None and not _origin_allowed(origin, request.host, auth.allowed_origins):
        return Unauthorized(f"origin {origin!r} is not allowed; add it to [auth] allowed_origins")
    if auth.token:
        token = offered_token(request)
        if token is None:
            return Unauthorized(
                "this server needs a token: 'Authorization: Bearer …', ?token=… or a token.… subprotocol"
            )
        if not hmac.compare_digest(token.encode(), auth.token.encode()):
            return Unauthorized("wrong token")
    return None


def _origin_allowed(origin: str, host: str, allowed: list[str]) -> bool:
    """Browsers send Origin; by default only pages served by this server (same host and port) may connect."""
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == host
