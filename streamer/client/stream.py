"""Stream audio to a server over WebSocket (the `websockets` client) and collect what comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from streamer import protocol as p
from streamer.client.audio_file import encode_pcm

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
FRAME_SECONDS = 0.02


@dataclass
class StreamResult:
    ready: p.Ready | None = None
    events: list[p.NoteEvent] = field(default_factory=list)
    # Wall-clock seconds since the first audio frame was sent, one per event: with real-time pacing, an event at
    # audio time t arriving at a has latency a − t / speed.
    arrivals: list[float] = field(default_factory=list)
    errors: list[p.Error] = field(default_factory=list)
    lagging: list[p.Lagging] = field(default_factory=list)
    done: p.Done | None = None
    close_code: int | None = None


async def stream_audio(
    url: str,
    data: np.ndarray,
    sample_rate: int,
    *,
    speed: float = 1.0,
    frame_seconds: float = FRAME_SECONDS,
    flush_every: float | None = None,
    **options: Any,
) -> StreamResult:
    """Send `data` ((frames, channels) float32) paced at `speed` × real time (0: as fast as the server takes it),
    then `stop`, and collect everything until `done` or close. `options` go to `stream_frames`."""
    frame = max(1, int(frame_seconds * sample_rate))

    async def frames() -> AsyncIterator[np.ndarray | None]:
        t0 = time.monotonic()
        next_flush = flush_every
        for i, pos in enumerate(range(0, len(data), frame)):
            if speed > 0:
                delay = t0 + i * frame / sample_rate / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            yield data[pos : pos + frame]
            if next_flush is not None and (pos + frame) / sample_rate >= next_flush:
                yield None  # a flush
                next_flush += flush_every or 0

    return await stream_frames(url, frames(), sample_rate, data.shape[1], **options)


async def stream_frames(
    url: str,
    frames: AsyncIterator[np.ndarray | None],
    sample_rate: int,
    channels: int = 1,
    *,
    encoding: str = "s16le",
    model: str | None = None,
    hop: float | None = None,
    midi_file: bool = False,
    interim: bool = False,
    resume_at: float = 0.0,
    on_message: Callable[[p.ServerMessage], None] | None = None,
    headers: dict[str, str] | None = None,
    ping_interval: float | None = 20.0,
) -> StreamResult:
    """Stream audio frames ((n, channels) float32; None sends a `flush`) as they come from `frames` (a file, a
    microphone), then `stop`; collect everything the server sends until `done` or close."""
    result = StreamResult()
    # No ping timeout: while the server throttles an upload, our pings wait behind the audio in flight
    # (docs/protocol.md).
    async with websockets.connect(
        url, max_size=None, additional_headers=headers, ping_interval=ping_interval, ping_timeout=None
    ) as ws:
        start = p.Start(
            sample_rate=sample_rate,
            encoding=encoding,  # type: ignore[arg-type]
            channels=channels,
            model=model,
            hop=hop,
            midi_file=midi_file,
            interim=interim,
            resume_at=resume_at,
        )
        await ws.send(p.encode(start))
        first = p.decode_server(await ws.recv())
        if on_message:
            on_message(first)
        if isinstance(first, p.Error):
            result.errors.append(first)
            await _wait_closed(ws, result)
            return result
        assert isinstance(first, p.Ready)
        result.ready = first
        receiver = asyncio.create_task(_receive(ws, result, time.monotonic(), on_message))
        try:
            async for chunk in frames:
                if receiver.done():
                    break
                await ws.send(p.encode(p.Flush()) if chunk is None else encode_pcm(chunk, encoding))
            if not receiver.done():
                await ws.send(p.encode(p.Stop()))
        except websockets.ConnectionClosed:
            pass
        await receiver
    return result


async def _receive(
    ws: websockets.ClientConnection,
    result: StreamResult,
    t0: float,
    on_message: Callable[[p.ServerMessage], None] | None,
) -> None:
    try:
        async for raw in ws:
            message = p.decode_server(raw)
            now = time.monotonic() - t0
            if on_message:
                on_message(message)
            if isinstance(message, p.Events):
                result.events.extend(message.events)
                result.arrivals.extend([now] * len(message.events))
            elif isinstance(message, p.Error):
                result.errors.append(message)
            elif isinstance(message, p.Lagging):
                result.lagging.append(message)
            elif isinstance(message, p.Done):
                result.done = message
    except websockets.ConnectionClosed:
        pass
    result.close_code = ws.close_code


async def _wait_closed(ws: websockets.ClientConnection, result: StreamResult) -> None:
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed:
        pass
    result.close_code = ws.close_code
