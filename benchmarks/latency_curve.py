"""Onset F1 against look-ahead for the default model's whole streaming pipeline (network + online note decisions).

For each look-ahead (frames of audio after a frame before it is final), every item of the accuracy set (music21
scores rendered with FluidSynth, clean and noisy) goes through `transcribe_array` (the server's own session and
engine code, offline; it commits exactly what streaming commits) and is scored with mir_eval (50 ms onset tolerance;
onset only, and with offsets). Each look-ahead uses the conv future taps that scored best there (benchmarks/
lookahead_curve.py measured the network alone: 1 up to about 100 ms, 2 up to 250 ms, 3 beyond). The reference is
the whole file through the exact network in one pass with basic-pitch's offline note creation (the accuracy bench's
offline score for streaming models). The expected note_on latency is look-ahead + one frame (the note decision) +
half a block + half a client frame (20 ms) + a few ms of compute; docs/latency.md has the measured figures.

Run: .venv/bin/python -m benchmarks.latency_curve [--frames 4 9 13 15 17 19 22 26 34 43] [--seconds 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.accuracy import one_pass_notes, score
from benchmarks.common import machine, table
from benchmarks.evalset import CLEAN, NOISY, SetSettings, build_set
from streamer.models.basic_pitch import build_model
from streamer.offline import transcribe_array
from streamer.stitch import events_to_notes

FRAME_S = 256 / 22050
CLIENT_FRAME_S = 0.02


CONV_FRAMES = {0: 0, 1: 5, 2: 8, 3: 10}  # frames the convs look ahead with this many future taps per layer


def conv_future_for(frames: int) -> int:
    """The setting that scored best at this look-ahead, as long as it leaves the CQT a frame of its own."""
    ms = frames * FRAME_S * 1000
    preferred = 1 if ms < 120 else 2 if ms < 260 else 3
    return max(c for c in CONV_FRAMES if c <= preferred and CONV_FRAMES[c] < frames)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 9, 13, 15, 17, 19, 22, 26, 34, 43])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--block-frames", type=int, default=4)
    args = parser.parse_args(argv)

    items = build_set(SetSettings(seconds=args.seconds))
    clips = [(item, *item.audio()) for item in items]
    reference_model = build_model({})
    one_pass = {id(item): score(item.reference(), one_pass_notes(reference_model, audio, rate))
                for item, audio, rate in clips}  # fmt: skip
    rows = []
    for frames in args.frames:
        options = {"lookahead_frames": frames, "conv_future": conv_future_for(frames),
                   "block_frames": args.block_frames}  # fmt: skip
        model = build_model(options)
        scores = {CLEAN: [], NOISY: []}  # type: ignore[var-annotated]
        began = time.perf_counter()
        for item, audio, rate in clips:
            events, _ = transcribe_array(model, audio, rate)
            scores[item.variant].append(score(item.reference(), events_to_notes(events)))
        every = scores[CLEAN] + scores[NOISY]
        expected = model.spec.lookahead_s + FRAME_S + model.spec.window_s / 2 + CLIENT_FRAME_S / 2
        rows.append([
            frames, f"{model.spec.lookahead_s * 1000:.0f}", options["conv_future"], f"{expected:.3f}",
            *(f"{100 * np.mean([s.onset.f1 for s in group]):.1f}" for group in (scores[CLEAN], scores[NOISY], every)),
            f"{100 * np.mean([s.offset.f1 for s in every]):.1f}",
            f"{(time.perf_counter() - began) / sum(len(a) / r for _, a, r in clips):.3f}",
        ])  # fmt: skip
        print(f"  look-ahead {frames} frames done", flush=True)
    reference = [one_pass[id(item)] for item, _, _ in clips]
    by_variant = {v: [s for (item, _, _), s in zip(clips, reference, strict=True) if item.variant == v]
                  for v in (CLEAN, NOISY)}  # fmt: skip
    groups = (by_variant[CLEAN], by_variant[NOISY], reference)
    rows.append([
        "one pass", "whole file", "-", "-", *(f"{100 * np.mean([s.onset.f1 for s in group]):.1f}" for group in groups),
        f"{100 * np.mean([s.offset.f1 for s in reference]):.1f}", "-",
    ])  # fmt: skip
    print(f"{len(items)} items of {args.seconds:g} s; blocks of {args.block_frames} frames; machine: {machine()}")
    headers = ["look-ahead (frames)", "look-ahead (ms)", "conv future", "expected note_on latency (s)",
               "onset F1 clean", "onset F1 noisy", "onset F1 all", "onset+offset F1 all", "RTF (offline)"]  # fmt: skip
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
