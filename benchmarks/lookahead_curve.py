"""What basic-pitch's streaming network gives up for its look-ahead and causal normalisation: onset F1 by setting.

Every item of the accuracy set (benchmarks/evalset.py: music21 scores rendered with FluidSynth, clean and noisy)
is resampled to 22,050 Hz; its whole-file posteriors go through the project's offline note creation
(`posteriors.window_notes`, with basic-pitch's default thresholds) and are scored with mir_eval (50 ms onset
tolerance; onset only, and with offsets). Posteriors come from:

- offline, windowed: the exact network on 2 s windows every 142 frames, 15 frames trimmed at each window edge
  (basic-pitch's own inference.py, but with a whole-frame hop), each window normalised by its own min/max;
- offline, whole file: the exact network once over the whole file, normalised by the file's min/max;
- streaming: `StreamingNetwork.one_pass` for each setting of the grid (look-ahead, conv future taps, low-pass future
  taps, normalisation span, gain compensation). one_pass is exactly what the streamed evaluation returns.

Run: .venv/bin/python -m benchmarks.lookahead_curve [--lookahead-ms 50 100 150 200 300 500] [--conv-future 0 1 2 3]
     [--filter-future 8] [--norm-frames 86] [--compensate off] [--fold on] [--pieces …] [--variants clean noisy]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads BLAS: small matmuls thrash with threads

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.accuracy import Scores, score
from benchmarks.common import machine, table
from benchmarks.evalset import CLEAN, NOISY, PIECES, SetSettings, build_set
from streamer.audio.resample import resample
from streamer.models.basic_pitch.cqt import FRAME_SAMPLES, SAMPLE_RATE
from streamer.models.basic_pitch.incremental import StreamingConfig, StreamingNetwork
from streamer.models.basic_pitch.network import WINDOW_FRAMES, WINDOW_SAMPLES, WindowNetwork
from streamer.models.basic_pitch.posteriors import ENERGY_TOLERANCE, NoteRules, window_notes
from streamer.models.basic_pitch.weights import Weights, load_weights
from streamer.notes import Note

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE
EDGE_FRAMES = 15  # basic-pitch's inference trims this many frames at each window edge (30 frames of overlap)
WINDOW_HOP_FRAMES = WINDOW_FRAMES - 2 * EDGE_FRAMES
Posteriors = tuple[np.ndarray, np.ndarray]  # note, onset: (frames, 88)


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    variant: str
    audio: np.ndarray  # 22,050 Hz
    reference: list[Note]


def notes_of(note: np.ndarray, onset: np.ndarray, rules: NoteRules) -> list[Note]:
    """Whole-file note creation with window_notes: silence is padded at both ends so that no note touches an
    edge (window_notes leaves edge notes open for a stitcher; a whole file has nothing to stitch)."""
    pad = ((ENERGY_TOLERANCE + 1, ENERGY_TOLERANCE + 1), (0, 0))
    found = window_notes(np.pad(note, pad), np.pad(onset, pad), FRAME_S, rules)
    shift = (ENERGY_TOLERANCE + 1) * FRAME_S
    out = []
    for n in found:
        assert n.onset is not None and n.offset is not None
        out.append(Note(n.onset - shift, n.offset - shift, n.pitch, n.velocity))
    return out


def windowed(net: WindowNetwork, audio: np.ndarray) -> Posteriors:
    """basic-pitch's offline inference with a whole-frame hop: windows start every 142 frames from frame −15."""
    n = -(-len(audio) // FRAME_SAMPLES)
    padded = np.concatenate([np.zeros(EDGE_FRAMES * FRAME_SAMPLES, np.float32), audio])
    hop = WINDOW_HOP_FRAMES * FRAME_SAMPLES
    starts = range(0, max(len(padded) - EDGE_FRAMES * FRAME_SAMPLES, 1), hop)
    notes, onsets = [], []
    for start in starts:
        window = np.zeros(WINDOW_SAMPLES, np.float32)
        part = padded[start : start + WINDOW_SAMPLES]
        window[: len(part)] = part
        _, note, onset = net.posteriors(window[None])
        notes.append(note[0, EDGE_FRAMES:-EDGE_FRAMES])
        onsets.append(onset[0, EDGE_FRAMES:-EDGE_FRAMES])
    return np.concatenate(notes)[:n], np.concatenate(onsets)[:n]


def whole_file(net: WindowNetwork, audio: np.ndarray) -> Posteriors:
    """The exact network once over the whole file (its CQT edges reflected, min/max over the whole file)."""
    n = -(-len(audio) // FRAME_SAMPLES)
    padded = np.zeros(n * FRAME_SAMPLES, np.float32)
    padded[: len(audio)] = audio
    _, note, onset = net.posteriors(padded[None])
    return note[0, :n], onset[0, :n]


def evaluate(clips: Sequence[Clip], run: Callable[[np.ndarray], Posteriors], rules: NoteRules) -> list[Scores]:
    return [score(c.reference, notes_of(*run(c.audio), rules)) for c in clips]


def row(label: Sequence[object], scores: Sequence[Scores], clips: Sequence[Clip], seconds: float) -> list[object]:
    def mean(variant: str | None, f: Callable[[Scores], float]) -> str:
        values = [f(s) for s, c in zip(scores, clips, strict=True) if variant is None or c.variant == variant]
        return f"{100 * np.mean(values):.1f}" if values else "-"

    return [
        *label,
        mean(None, lambda s: s.onset.f1),
        mean(CLEAN, lambda s: s.onset.f1),
        mean(NOISY, lambda s: s.onset.f1),
        mean(None, lambda s: s.offset.f1),
        f"{seconds:.0f}",
    ]


HEADERS = (
    "posteriors", "look-ahead (ms)", "conv future", "filter future", "norm frames", "compensate", "fold",
    "onset F1", "clean", "noisy", "onset+offset F1", "eval s",
)  # fmt: skip
ON_OFF = ("on", "off")


def clips_of(args: argparse.Namespace) -> list[Clip]:
    items = build_set(SetSettings(seconds=args.seconds, pieces=tuple(args.pieces)))
    clips = []
    for item in items:
        if item.variant not in args.variants:
            continue
        audio, rate = item.audio()
        clips.append(Clip(item.name, item.variant, resample(audio, rate, SAMPLE_RATE), item.reference()))
    return clips


def grid(args: argparse.Namespace) -> list[StreamingConfig]:
    configs = []
    for ms, conv, filt, norm, comp, fold in itertools.product(
        args.lookahead_ms, args.conv_future, args.filter_future, args.norm_frames, args.compensate, args.fold
    ):
        frames = max(1, round(ms / 1000 / FRAME_S))
        try:
            configs.append(
                StreamingConfig(
                    lookahead_frames=frames,
                    conv_future=conv,
                    filter_future=filt,
                    compensate=comp == "on",
                    fold=fold == "on",
                    norm_frames=norm,
                )
            )
        except ValueError:
            continue  # the convs alone look further ahead than this budget
    return configs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lookahead_curve", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--lookahead-ms", type=float, nargs="+", default=[50, 100, 150, 200, 300, 500])
    parser.add_argument("--conv-future", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--filter-future", type=int, nargs="+", default=[8])
    parser.add_argument("--norm-frames", type=int, nargs="+", default=[86])
    parser.add_argument("--compensate", nargs="+", choices=ON_OFF, default=["off"])
    parser.add_argument("--fold", nargs="+", choices=ON_OFF, default=["on"])
    parser.add_argument("--seconds", type=float, default=20.0, help="excerpt length per piece")
    parser.add_argument("--pieces", nargs="+", default=[p.name for p in PIECES])
    parser.add_argument("--variants", nargs="+", choices=[CLEAN, NOISY], default=[CLEAN, NOISY])
    parser.add_argument("--no-offline", action="store_true", help="skip the two offline references")
    args = parser.parse_args(argv)

    clips = clips_of(args)
    weights: Weights = load_weights()
    rules = NoteRules()
    rows: list[list[object]] = []
    if not args.no_offline:
        net = WindowNetwork(weights)
        for label, run in (("offline, 2 s windows", windowed), ("offline, whole file", whole_file)):
            began = time.perf_counter()
            scores = evaluate(clips, lambda audio, run=run: run(net, audio), rules)
            norm = "window" if "windows" in label else "file"
            rows.append(row([label, "-", 3, 128, norm, "-", "-"], scores, clips, time.perf_counter() - began))
            print(table(HEADERS, rows[-1:]), flush=True)
    for config in grid(args):
        began = time.perf_counter()
        streaming = StreamingNetwork(weights, config)
        scores = evaluate(clips, streaming.one_pass, rules)
        label = [
            "streaming",
            f"{1000 * config.lookahead_s:.0f}",
            config.conv_future,
            config.filter_future,
            config.norm_frames,
            *("on" if flag else "off" for flag in (config.compensate, config.fold)),
        ]
        rows.append(row(label, scores, clips, time.perf_counter() - began))
        print(table(HEADERS, rows[-1:]), flush=True)
    print()
    print(f"Machine: {machine()}")
    print(
        f"Set: {len(clips)} items ({', '.join(args.variants)}) of {args.seconds:g} s; F1 in points, mean over items; "
        "note creation: posteriors.window_notes on whole-file posteriors, default NoteRules."
    )
    print(table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
