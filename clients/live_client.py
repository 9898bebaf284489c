#!/usr/bin/env python3
"""Minimal live client: play into the microphone (or stream a file at real-time pace) and see the notes.

    python clients/live_client.py                       # default microphone (needs: pip install sounddevice)
    python clients/live_client.py --file song.wav       # a file, paced like a live performance
    python clients/live_client.py --url ws://gpu-box:8765/v1/stream --midi-port streamer   # notes into your DAW

Ctrl-C stops: the server commits what it heard and closes every note. If the server goes away mid-stream (it is
drained or crashes), the client resumes on another one through the same URL (a load balancer) and keeps one
timeline of notes; --no-resume ends instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import numpy as np

from streamer import protocol as p
from streamer.client.audio_file import read_audio
from streamer.client.display import format_event
from streamer.client.stream import DEFAULT_URL, Resume, ResumePolicy, stream_audio, stream_frames
from streamer.sinks.factory import client_sinks

FRAME_SECONDS = 0.02


async def microphone(rate: int, stop: asyncio.Event) -> AsyncIterator[np.ndarray]:
    import sounddevice  # optional: only the microphone needs it

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue()

    def captured(block: np.ndarray, _frames: int, _time: object, _status: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, block.copy())

    with sounddevice.InputStream(
        samplerate=rate, channels=1, dtype="float32", blocksize=int(rate * FRAME_SECONDS), callback=captured
    ):
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                yield await asyncio.wait_for(queue.get(), 0.2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--file", help="stream this file instead of the microphone")
    parser.add_argument("--rate", type=int, default=48000, help="microphone sample rate")
    parser.add_argument("--model")
    parser.add_argument("--midi-port", help="also play the notes on a virtual MIDI port of this name")
    parser.add_argument("--no-resume", action="store_true", help="end when the server goes away")
    args = parser.parse_args()

    sinks = client_sinks(args.midi_port)

    def show(message: p.ServerMessage) -> None:
        if isinstance(message, p.Error | p.Lagging | p.Ready | p.Done):
            print(p.encode(message), flush=True)

    def play(events: list[p.NoteEvent]) -> None:
        """The stream's one timeline: when it resumed on another server, that server's notes continue it."""
        for sink in sinks:
            sink.send(events)
        for event in events:
            print(format_event(event), flush=True)

    def resumed(r: Resume) -> None:
        print(f"resumed at {r.at:.3f}s ({r.reason}), {r.lost:.3f}s of audio lost", flush=True)

    options = {
        "model": args.model,
        "on_message": show,
        "on_events": play,
        "on_resume": resumed,
        "resume": None if args.no_resume else ResumePolicy(),
    }

    stop = asyncio.Event()
    # Ctrl-C ends the microphone stream: the client then sends `stop`, and the server commits and closes every note.
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    try:
        if args.file:
            data, rate = read_audio(args.file)
            await stream_audio(args.url, data, rate, speed=1.0, **options)  # type: ignore[arg-type]
        else:
            await stream_frames(args.url, microphone(args.rate, stop), args.rate, **options)  # type: ignore[arg-type]
    finally:
        for sink in sinks:
            sink.close()


if __name__ == "__main__":
    asyncio.run(main())
