"""Transkun: window, hop and commit margin by measurement, and its speed on this machine.

`accuracy`: the piano pieces of the evaluation set (benchmarks/evalset.py, rendered with FluidSynth) transcribed
through the server's own windowing and stitching (`transcribe_array`) for every window length, hop and commit
margin asked for, scored with mir_eval (50 ms onsets; onset only, and with offsets); next to Transkun's own
whole-file transcription of the same audio (the `transkun` wheel's code, 16 s segments with an 8 s step). Windows
are cached per window length: hops and margins are whole multiples of one grid (`--grid`, in frames), so every
setting's windows start on that grid and each window is computed once for all settings.

`speed`: compute seconds per window (min and median of `--repeats`) for the reference implementation and ours with
each option (threads, batching, dtype, int8), the real-time factor of one stream at `--hop` (compute seconds per
audio second) and how many streams this machine holds in real time. The machine's load is printed: others may share it.

Run: .venv/bin/python -m benchmarks.transkun_bench accuracy [--hops 0.5 1] [--margins 0.25 0.5] [--variants clean noisy]
     .venv/bin/python -m benchmarks.transkun_bench speed [--window 16] [--hop 2]
(needs `pip install --no-deps transkun==2.0.1` and `pip install pretty_midi` for the reference, and the `bench` extra).
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from benchmarks.accuracy import Scores, score
from benchmarks.common import machine, table
from benchmarks.evalset import CLEAN, DEFAULT_SECONDS, NOISY, PIANO_SET, Item, SetSettings, build_set
from streamer.audio.windows import Window
from streamer.models.base import Model, WindowRequest
from streamer.models.transkun import TranskunModel, TranskunOptions, load_network
from streamer.models.transkun.spec import (
    CONTINUATION_TOLERANCE_S,
    FRAME_HOP,
    HIGHEST_KEY,
    LOWEST_KEY,
    SAMPLE_RATE,
)
from streamer.notes import Note, WindowNote
from streamer.offline import transcribe_array
from streamer.stitch import events_to_notes

FRAME_S = FRAME_HOP / SAMPLE_RATE
DEFAULT_GRID = 11  # frames (0.255 s): hops and margins are multiples of it
DEFAULT_WINDOWS = (16.0,)
DEFAULT_HOPS = (0.5, 1.0, 2.0)
DEFAULT_MARGINS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
JITTER_WINDOWS_S = 1.1  # onsets are compared between windows whose starts are this close
ONSET_MATCH_S = 0.05


def piano_items(variants: Sequence[str], seconds: float) -> list[Item]:
    return [i for i in build_set(SetSettings(seconds=seconds)) if i.group == PIANO_SET and i.variant in variants]


def piano_notes(notes: Sequence[Note]) -> list[Note]:
    """Keys only: pedals (a control number, or pitch 0 where events carry no control) are not scored."""
    return [n for n in notes if getattr(n, "control", None) is None and LOWEST_KEY <= n.pitch <= HIGHEST_KEY]


class CachedWindows(Model):
    """A model whose window results are kept by (window start, valid samples): one audio item at a time."""

    def __init__(self, model: TranskunModel) -> None:
        self.model = model
        self.spec = model.spec
        self.max_batch = model.max_batch
        self.cache: dict[tuple[int, int], list[WindowNote]] = {}
        self.computed = 0

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        todo = [w for w in batch if (w.start, w.valid) not in self.cache]
        for window, notes in zip(todo, self.model.transcribe_windows(todo, [None] * len(todo)), strict=True):
            self.cache[(window.start, window.valid)] = notes
        self.computed += len(todo)
        return [self.cache[(w.start, w.valid)] for w in batch]


def on_grid(seconds: float, grid: int) -> float:
    """The nearest whole multiple of `grid` frames, in seconds (at least one grid step)."""
    return max(1, round(seconds / (grid * FRAME_S))) * grid * FRAME_S


@dataclass(frozen=True, slots=True)
class Row:
    window: float
    hop: float
    margin: float
    scores: list[Scores]


def run_accuracy(args: argparse.Namespace) -> str:
    from tools.transkun_reference import reference_model, reference_transcribe

    items = piano_items(args.variants, args.seconds)
    audio = {i: i.audio() for i in items}
    truth = {i: i.reference() for i in items}
    for item, (_, rate) in audio.items():
        if rate != SAMPLE_RATE:
            raise SystemExit(f"{item.audio_path}: {rate} Hz; the set is rendered at {SAMPLE_RATE}")
    reference = reference_model()
    own: list[Scores] = []
    for item in items:
        notes = reference_transcribe(reference, audio[item][0])
        own.append(score(truth[item], [Note(n.start, n.end, n.pitch, n.velocity) for n in notes if n.pitch > 0]))
    del reference
    network = load_network()
    rows: list[Row] = []
    jitter: list[float] = []
    hops = sorted({on_grid(h, args.grid) for h in args.hops})
    margins = sorted({on_grid(m, args.grid) for m in args.margins})
    for window_s in args.windows:
        model = TranskunModel(network, TranskunOptions(window=window_s, threads=args.threads))
        settings = [(h, m) for h, m in itertools.product(hops, margins) if h + m <= model.spec.window_s]
        per_setting: dict[tuple[float, float], list[Scores]] = {s: [] for s in settings}
        for item in items:
            cached = CachedWindows(model)
            began = time.perf_counter()
            for hop, margin in settings:
                events, _ = transcribe_array(cached, audio[item][0], SAMPLE_RATE, hop_s=hop, commit_margin_s=margin)
                per_setting[(hop, margin)].append(score(truth[item], piano_notes(events_to_notes(events))))
            took = time.perf_counter() - began
            jitter += onset_jitter(cached.cache)
            print(
                f"window {model.spec.window_s:.2f} s, {item.name} {item.variant}: {cached.computed} windows in "
                f"{took:.0f} s",
                flush=True,
            )
        rows += [Row(model.spec.window_s, h, m, s) for (h, m), s in per_setting.items()]
    return accuracy_report(rows, own, items, args) + "\n\n" + jitter_report(jitter)


def onset_jitter(windows: dict[tuple[int, int], list[WindowNote]], near_s: float = JITTER_WINDOWS_S) -> list[float]:
    """How far apart two overlapping windows (starts at most `near_s` apart) place the same key's onset: for each
    onset one window saw, the nearest onset of that key the other saw, if within 50 ms."""
    gaps = []
    starts = sorted(windows)
    for i, (a, _) in enumerate(starts):
        for b, valid in starts[i + 1 :]:
            if (b - a) / SAMPLE_RATE > near_s:
                break
            theirs = [(n.pitch, b / SAMPLE_RATE + n.onset) for n in windows[(b, valid)] if n.onset is not None]
            for n in windows[starts[i]]:
                if n.onset is None or n.control is not None:
                    continue
                at = a / SAMPLE_RATE + n.onset
                near = [abs(t - at) for pitch, t in theirs if pitch == n.pitch and abs(t - at) <= ONSET_MATCH_S]
                if near:
                    gaps.append(min(near))
    return gaps


def jitter_report(gaps: Sequence[float]) -> str:
    if not gaps:
        return "onset jitter between overlapping windows: no onset seen twice"
    ms = np.array(gaps) * 1000
    return (
        f"onset jitter between overlapping windows (same key, {len(ms)} pairs): median {np.median(ms):.1f} ms, "
        f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms (stitcher tolerance "
        f"{1000 * CONTINUATION_TOLERANCE_S:.0f} ms)"
    )


def accuracy_report(rows: Sequence[Row], own: Sequence[Scores], items: Sequence[Item], args: argparse.Namespace) -> str:
    own_onset = statistics.mean(s.onset.f1 for s in own)
    own_offset = statistics.mean(s.offset.f1 for s in own)
    lines = [
        f"Transkun accuracy through the streaming path: {len(items)} piano items of {args.seconds:g} s "
        f"({' and '.join(args.variants)}), mean F1 over items; machine: {machine()}",
        f"Transkun's own whole-file transcription (16 s segments, 8 s step): onset F1 {own_onset:.3f}, "
        f"onset+offset F1 {own_offset:.3f}",
        "",
    ]
    headers = [
        "window s",
        "hop s",
        "margin s",
        "onset F1",
        "Δ own (pts)",
        "worst item",
        "onset+offset F1",
        "commit latency s",
    ]
    body = []
    for row in sorted(rows, key=lambda r: (-r.window, r.hop, r.margin)):
        onset = statistics.mean(s.onset.f1 for s in row.scores)
        body.append(
            [
                f"{row.window:.2f}",
                f"{row.hop:.2f}",
                f"{row.margin:.2f}",
                onset,
                f"{100 * (onset - own_onset):+.1f}",
                min(s.onset.f1 for s in row.scores),
                statistics.mean(s.offset.f1 for s in row.scores),
                f"{row.margin:.2f}–{row.margin + row.hop:.2f}",
            ]
        )
    lines.append(table(headers, body))
    return "\n".join(lines)


# ---- speed


@dataclass(frozen=True, slots=True)
class Timing:
    label: str
    seconds: list[float]  # per window
    notes: int

    @property
    def best(self) -> float:
        return min(self.seconds)


def timed(label: str, repeats: int, windows: int, run: Callable[[], int]) -> Timing:
    run()  # warm-up: first-call allocations and cached embeddings
    seconds, notes = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        notes = run()
        seconds.append((time.perf_counter() - began) / windows)
    print(f"{label}: {min(seconds):.2f} s per window", flush=True)
    return Timing(label, seconds, notes)


def run_speed(args: argparse.Namespace) -> str:
    warnings.filterwarnings("ignore", category=UserWarning)  # torch's notice that int8 helpers are deprecated
    item = piano_items([CLEAN], args.seconds)[0]
    audio, _ = item.audio()
    network = load_network()
    base = TranskunOptions(window=args.window)
    size = TranskunModel(network, base).spec.window_samples
    window = np.zeros(size, dtype=np.float32)
    window[: min(size, len(audio))] = audio[:size]
    load_before = os.getloadavg()
    timings: list[Timing] = []

    def ours(label: str, options: TranskunOptions, batch: int = 1) -> None:
        model = TranskunModel(load_network() if options.quantize else network, options)
        requests = [WindowRequest(window, 0, size) for _ in range(batch)]
        states = [None] * batch
        timings.append(timed(label, args.repeats, batch, lambda: len(model.transcribe_windows(requests, states)[0])))

    default_threads = torch.get_num_threads()
    if args.reference:
        from tools.transkun_reference import reference_model, reference_window

        reference = reference_model()
        timings.append(
            timed(
                f"reference (transkun 2.0.1), {default_threads} threads",
                args.repeats,
                1,
                lambda: len(reference_window(reference, window)),
            )
        )
        del reference
    for threads in sorted({1, default_threads}):
        ours(f"ours, float32, {threads} thread(s)", replace(base, threads=threads))
    torch.set_num_threads(default_threads)
    ours(f"ours, float32, {default_threads} threads, 2 windows per batch", replace(base, max_batch=2), batch=2)
    ours(f"ours, bfloat16, {default_threads} threads", replace(base, dtype="bfloat16"))
    ours(f"ours, int8 dynamic, {default_threads} threads", replace(base, quantize=True))
    load_after = os.getloadavg()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = speed_report(timings, size / SAMPLE_RATE, args.hop, load_before, load_after)
    return f"{report}\n\npeak resident memory of this process (every configuration above): {peak_mib:.0f} MiB"


def speed_report(
    timings: Sequence[Timing], window_s: float, hop: float, before: tuple[float, ...], after: tuple[float, ...]
) -> str:
    headers = [
        "configuration",
        "s per window (min)",
        "median",
        "notes",
        f"RTF per stream at hop {hop:g} s",
        "real-time streams",
    ]
    body = []
    for t in timings:
        rtf = t.best / hop
        body.append([t.label, t.best, statistics.median(t.seconds), t.notes, rtf, int(1 / rtf) if rtf else 0])
    return "\n".join(
        [
            f"Transkun compute per {window_s:.2f} s window, {machine()}; 1-min load average {before[0]:.2f} before, "
            f"{after[0]:.2f} after (other processes share the machine). RTF = compute s per audio s of one stream.",
            "",
            table(headers, body),
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    accuracy = sub.add_parser("accuracy", help="F1 per window, hop and margin vs Transkun's own transcription")
    accuracy.add_argument("--windows", type=float, nargs="+", default=DEFAULT_WINDOWS)
    accuracy.add_argument("--hops", type=float, nargs="+", default=DEFAULT_HOPS)
    accuracy.add_argument("--margins", type=float, nargs="+", default=DEFAULT_MARGINS)
    accuracy.add_argument("--grid", type=int, default=DEFAULT_GRID, help="frames; hops and margins are multiples")
    accuracy.add_argument("--variants", nargs="+", choices=(CLEAN, NOISY), default=[CLEAN], help="renderings")
    accuracy.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="excerpt length of each piece")
    accuracy.add_argument("--threads", type=int, default=0)
    speed = sub.add_parser("speed", help="compute per window and real-time streams")
    speed.add_argument("--window", type=float, default=0.0, help="seconds; 0: the model's default")
    speed.add_argument("--hop", type=float, default=2.0)
    speed.add_argument("--repeats", type=int, default=5)
    speed.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    speed.add_argument("--no-reference", dest="reference", action="store_false")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(run_accuracy(args) if args.command == "accuracy" else run_speed(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
