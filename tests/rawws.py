"""A deliberately crude WebSocket client for hostile tests: raw bytes in headers, frames written by hand, a socket
that connects from another loopback address or never reads. Well-behaved tests use the `websockets` library."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big") if n else b""
    return header + key + masked


def upgrade_request(port: int, path: str = "/v1/stream", extra: bytes = b"", host: bytes | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + (host or f"127.0.0.1:{port}".encode()) + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect_from(address: str, port: int, rcvbuf: int | None = None) -> Streams:
    """A TCP connection to 127.0.0.1:`port` from the loopback address `address` (e.g. 127.0.0.2)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((address, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def handshake(port: int, extra: bytes = b"", host: bytes | None = None, address: str = "127.0.0.1",
                    rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:  # fmt: skip
    """Open a WebSocket by hand; returns the streams and the server's response head."""
    reader, writer = await connect_from(address, port, rcvbuf)
    writer.write(upgrade_request(port, extra=extra, host=host))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


async def read_frames(reader: asyncio.StreamReader, timeout: float = 10.0) -> list[tuple[int, bytes]]:
    """Server frames (unmasked) until the close frame or EOF."""
    frames: list[tuple[int, bytes]] = []
    while True:
        try:
            head = await asyncio.wait_for(reader.readexactly(2), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            return frames
        opcode, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(n)
        frames.append((opcode, payload))
        if opcode == CLOSE:
            return frames


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == CLOSE and len(payload) >= 2:
            return int(struct.unpack("!H", payload[:2])[0])
    return None
