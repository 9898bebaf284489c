"""Default model on this machine: real-time factor per stream and onset-to-event latency at several hops.

For each hop: a seeded random two-voice piece is (1) transcribed offline to measure the real-time factor (compute
seconds per second of audio, whole pipeline) and (2) streamed at real-time pace over loopback to a server in its own
process, measuring for every correctly transcribed note the time from its onset in the audio to its note_on at the
client. Run: .venv/bin/python -m benchmarks.stream_bench [--seconds 20] [--hops 1.0 0.5 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.common import machine, onset_latencies, percentile, server_process, table
from streamer.audio.test_signals import random_piece, render
from streamer.client.stream import stream_audio
from streamer.models.basic_pitch import build_model
from streamer.offline import transcribe_array

RATE = 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hops", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    args = parser.parse_args()

    truth = random_piece(args.seconds, seed=1)
    audio = render(truth, RATE, args.seconds)
    model = build_model({})
    rows = []
    for hop in args.hops:
        t0 = time.perf_counter()
        transcribe_array(model, audio, RATE, hop_s=hop)
        rtf = (time.perf_counter() - t0) / args.seconds
        with server_process("--hop", str(hop)) as (url, _):
            result = asyncio.run(stream_audio(url, audio[:, None], RATE, speed=1.0))
        latencies = onset_latencies(truth, result.events, result.arrivals)
        rows.append(
            [
                hop,
                rtf,
                f"{len(latencies)}/{len(truth)}",
                percentile(latencies, 50),
                percentile(latencies, 95),
                max(latencies) if latencies else float("nan"),
            ]
        )
    print(f"basic-pitch, {args.seconds:g} s piece streamed at real-time pace; machine: {machine()}")
    print(table(["hop (s)", "RTF", "notes matched", "latency p50 (s)", "latency p95 (s)", "max (s)"], rows))


if __name__ == "__main__":
    main()
