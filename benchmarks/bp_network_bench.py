"""CPU cost of basic-pitch's network per second of audio per stream: the streaming numpy network vs windowed ONNX.

Streaming: `StreamingNetwork.step` on batches of 1, 8 and 16 streams (different audio each), for a few block sizes,
after the streams are past their start. Windowed: the shipped ONNX model on batches of 2 s windows; a server
re-running it every hop pays one window per stream per hop, i.e. (ms per window) / hop per audio second.

CPU time is process time (all threads); BLAS and onnxruntime run one thread each (OPENBLAS_NUM_THREADS=1 is set
before numpy loads unless already set: small matmuls on several threads cost many times more CPU). The machine is
shared, so each figure is the median of `--repeat` runs and the load average is printed.

Run: .venv/bin/python -m benchmarks.bp_network_bench [--seconds 6] [--batches 1 8 16] [--blocks 2 4 8] [--repeat 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from benchmarks.common import machine, table
from streamer.audio.test_signals import random_piece, render
from streamer.models.basic_pitch.cqt import SAMPLE_RATE
from streamer.models.basic_pitch.incremental import StreamingConfig, StreamingNetwork
from streamer.models.basic_pitch.network import WINDOW_SAMPLES
from streamer.models.basic_pitch.weights import load_weights

WARM_S = 1.0  # audio streamed before timing starts (past every stream's start-up)


def streamed_ms(net: StreamingNetwork, audio: np.ndarray, warm: int, timed: int, provisional: bool = False) -> float:
    """CPU milliseconds of `timed` steps of fresh streams (one per row of `audio`) after `warm` untimed steps;
    `provisional`: every stream also asks for its provisional tail."""
    b = net.block_samples
    states = [net.new_state() for _ in range(len(audio))]
    for k in range(warm):
        net.step(states, audio[:, k * b : (k + 1) * b])
    began = time.process_time()
    for k in range(warm, warm + timed):
        net.step(states, audio[:, k * b : (k + 1) * b], [provisional] * len(states))
    return 1000 * (time.process_time() - began)


def windowed_ms(posteriors: Callable[[np.ndarray], object], windows: np.ndarray, calls: int) -> float:
    """CPU milliseconds per call of the windowed model on a batch of windows."""
    posteriors(windows)
    began = time.process_time()
    for _ in range(calls):
        posteriors(windows)
    return 1000 * (time.process_time() - began) / calls


def audio_for(streams: int, seconds: float) -> np.ndarray:
    """(streams, samples): different music plus noise per stream."""
    rng = np.random.default_rng(0)
    n = int(seconds * SAMPLE_RATE)
    rows = [render(random_piece(seconds, seed=i, polyphony=3), SAMPLE_RATE, seconds) for i in range(streams)]
    return (np.stack(rows) + 1e-3 * rng.standard_normal((streams, n))).astype(np.float32)


def streaming_rows(args: argparse.Namespace) -> list[list[object]]:
    weights = load_weights()
    rows: list[list[object]] = []
    default = StreamingConfig().block_frames
    runs = [(block, batch, False) for block in args.blocks for batch in args.batches]
    runs += [(default, batch, True) for batch in args.batches]
    for block_frames, batch, provisional in runs:
        net = StreamingNetwork(weights, replace(StreamingConfig(), block_frames=block_frames))
        b = net.block_samples
        audio = audio_for(batch, WARM_S + args.seconds)
        warm, timed = int(WARM_S * SAMPLE_RATE) // b, int(args.seconds * SAMPLE_RATE) // b
        ms = float(np.median([streamed_ms(net, audio, warm, timed, provisional) for _ in range(args.repeat)]))
        per = ms / (timed * b / SAMPLE_RATE) / batch
        path = "streaming numpy" + (" + provisional tails" if provisional else "")
        block = f"{block_frames} ({1000 * b / SAMPLE_RATE:.0f} ms)"
        rows.append([path, batch, block, f"{ms / timed:.2f}", f"{per:.1f}", "-", "-"])
        print(table(HEADERS, rows[-1:]), flush=True)
    return rows


def onnx_rows(args: argparse.Namespace) -> list[list[object]]:
    from streamer.models.basic_pitch.model import BasicPitch

    model = BasicPitch(threads=1)
    rows: list[list[object]] = []
    for batch in args.batches:
        windows = audio_for(batch, WINDOW_SAMPLES / SAMPLE_RATE + 0.01)[:, :WINDOW_SAMPLES]
        ms = float(np.median([windowed_ms(model.posteriors, windows, 4) for _ in range(args.repeat)]))
        per_window = ms / batch
        rows.append(
            ["windowed ONNX", batch, "2 s window", f"{ms:.2f}", "-", f"{per_window / 0.1:.1f}",
             f"{per_window / 0.5:.1f}"]
        )  # fmt: skip
        print(table(HEADERS, rows[-1:]), flush=True)
    return rows


HEADERS = (
    "path", "streams per call", "block", "CPU ms per call", "CPU ms per audio s per stream",
    "… windowed at hop 0.1 s", "… windowed at hop 0.5 s",
)  # fmt: skip


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bp_network_bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="audio timed per stream")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 4, 8], help="block sizes in frames")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    before = load()
    rows = streaming_rows(args) + onnx_rows(args)
    print()
    print(f"Machine: {machine()}; load average before {before}, after {load()}")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; median of {args.repeat} runs")
    print(table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
