"""Transcription accuracy and latency on real music, offline and streamed through the real server.

For every available model and hop, each piece of the evaluation set (benchmarks/evalset.py: music21 corpus scores
rendered with FluidSynth, clean and noisy/reverberant; or your own folder of audio + MIDI pairs) is transcribed
(1) offline, with the server's own windowing and stitching (`transcribe_array`), timing the compute for the
real-time factor, and (2) streamed to `streamer serve` in its own process over loopback, paced at `--speed` × real
time (0: as fast as the server takes it, with backpressure and no skipped windows). Both are scored against the
reference MIDI with mir_eval's note metrics (50 ms onset tolerance; onset only, and with offsets), drums left out
and programs ignored (pitch and timing only). The streaming penalty is streaming F1 − offline F1 (onset only, same
model and hop). Onset-to-event latency is measured only at real-time pace (`--speed 1`).

Run: .venv/bin/python -m benchmarks.accuracy [--speed 1] [--hops 1.0 0.5 0.25] [--seconds 20] [--folder DIR]
(needs the `bench` extra, `pip install -e ".[bench]"`, and fluidsynth + fluid-soundfont-gm for the built-in set).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import machine, onset_latencies, percentile, server_process, table
from benchmarks.evalset import (
    CLEAN,
    DEFAULT_SECONDS,
    NOISY,
    PIECES,
    Item,
    SetSettings,
    build_set,
    cache_root,
    user_set,
)
from streamer.client.stream import stream_audio
from streamer.config import load_config
from streamer.errors import StreamerError
from streamer.models.base import Model
from streamer.models.registry import MODELS, load_model
from streamer.notes import Note
from streamer.offline import transcribe_array
from streamer.stitch import events_to_notes

ONSET_TOLERANCE_S = 0.05  # mir_eval's standard onset window
# mir_eval refuses notes without duration; such a note (a repeated key ended at its own onset) still counts as an
# onset, so it is scored as lasting this long.
MIN_DURATION_S = 0.001
DEFAULT_HOPS = (1.0, 0.5, 0.25)
ALL = "all"


@dataclass(frozen=True, slots=True)
class Prf:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True, slots=True)
class Scores:
    onset: Prf  # a note is right when its pitch and onset (±50 ms) are
    offset: Prf  # ... and its offset too (±50 ms or 20 % of the note, whichever is larger)


@dataclass(frozen=True, slots=True)
class PieceResult:
    """One item of the set transcribed by one model at one hop, offline and streaming."""

    model: str
    hop: float
    item: Item
    audio_s: float
    offline: Scores
    compute_s: float  # offline wall time, whole pipeline
    streaming: Scores
    speed: float
    latencies: list[float] | None  # None: not measured (streamed faster than real time)
    skipped_windows: int
    lagging: int


def score(reference: Sequence[Note], estimate: Sequence[Note]) -> Scores:
    """mir_eval note precision/recall/F1 of `estimate` against `reference`, onset only and with offsets."""
    from mir_eval.transcription import precision_recall_f1_overlap

    ref_intervals, ref_pitches = _mir_eval_arrays(reference)
    est_intervals, est_pitches = _mir_eval_arrays(estimate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns on an empty side and scores it 0, which is right here
        onset = precision_recall_f1_overlap(
            ref_intervals, ref_pitches, est_intervals, est_pitches, onset_tolerance=ONSET_TOLERANCE_S, offset_ratio=None
        )
        offset = precision_recall_f1_overlap(
            ref_intervals, ref_pitches, est_intervals, est_pitches, onset_tolerance=ONSET_TOLERANCE_S
        )
    return Scores(Prf(*onset[:3]), Prf(*offset[:3]))


def _mir_eval_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    from mir_eval.util import midi_to_hz

    pitched = [n for n in notes if not n.is_drum]
    intervals = np.array([[n.onset, max(n.offset, n.onset + MIN_DURATION_S)] for n in pitched]).reshape(-1, 2)
    return intervals, midi_to_hz(np.array([n.pitch for n in pitched], dtype=float))


def transcribe_offline(model: Model, audio: np.ndarray, rate: int, hop: float | None) -> tuple[list[Note], float]:
    """Notes of the offline reference and the offline pipeline's wall time in seconds.

    Windowed models: the server's own pipeline (windows and stitching), offline. Streaming models: the reference is
    the whole file through the exact network in one pass (no look-ahead limit, the file's own normalisation) and
    basic-pitch's offline note creation, which is what streaming gives up accuracy against; the time is still the
    streaming pipeline's, offline."""
    began = time.perf_counter()
    events, _ = transcribe_array(model, audio, rate, hop_s=hop)
    elapsed = time.perf_counter() - began
    if not model.spec.streaming:
        return events_to_notes(events), elapsed
    return one_pass_notes(model, audio, rate), elapsed


def one_pass_notes(model: Model, audio: np.ndarray, rate: int) -> list[Note]:
    from benchmarks.lookahead_curve import notes_of, whole_file
    from streamer.audio.resample import resample
    from streamer.models.basic_pitch.network import WindowNetwork
    from streamer.models.basic_pitch.posteriors import NoteRules

    tracker = model.tracker_config  # type: ignore[attr-defined]
    rules = NoteRules(tracker.onset_threshold, tracker.frame_threshold, tracker.min_note_frames,
                      tracker.infer_onsets, tracker.melodia_trick)  # fmt: skip
    network = WindowNetwork(model.network.weights)  # type: ignore[attr-defined]
    note, onset = whole_file(network, resample(audio, rate, model.spec.sample_rate))
    return notes_of(note, onset, rules)


async def bench_model(
    model: Model, url: str, items: Sequence[Item], hops: Sequence[float], speed: float
) -> list[PieceResult]:
    """Every item at every hop, offline in this process and streamed to the server at `url` serving `model`."""
    results = []
    for hop in hops:
        for item in items:
            audio, rate = item.audio()
            reference = item.reference()
            ask = None if model.spec.streaming else hop
            offline, compute_s = transcribe_offline(model, audio, rate, ask)
            streamed = await stream_audio(url, audio[:, None], rate, speed=speed, model=model.spec.name, hop=ask)
            if streamed.done is None:
                raise RuntimeError(f"{item.name}: stream ended without done: {streamed.errors}")
            print(f"  hop {hop:g}: {item.name} ({item.variant}) offline {compute_s:.1f} s", flush=True)
            results.append(
                PieceResult(
                    model=model.spec.name,
                    hop=hop,
                    item=item,
                    audio_s=len(audio) / rate,
                    offline=score(reference, offline),
                    compute_s=compute_s,
                    streaming=score(reference, events_to_notes(streamed.events)),
                    speed=speed,
                    latencies=onset_latencies(reference, streamed.events, streamed.arrivals) if speed == 1 else None,
                    skipped_windows=streamed.done.skipped_windows,
                    lagging=len(streamed.lagging),
                )
            )
    return results


def usable_hops(model: Model, hops: Sequence[float]) -> list[float]:
    if model.spec.streaming:  # blocks of its own: one setting
        return [model.spec.default_hop_s]
    return [h for h in hops if model.spec.min_hop_s <= h <= model.spec.max_hop_s]


def load_available(names: Sequence[str]) -> tuple[dict[str, Model], dict[str, str]]:
    """The models that load here, and why each other one does not (a missing checkpoint, torch not installed)."""
    config = load_config()
    loaded: dict[str, Model] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = load_model(name, config.model_options(name))
        except StreamerError as e:
            missing[name] = e.message
        except ImportError as e:
            missing[name] = f"not installed ({e.name})"
    return loaded, missing


# ---- report ------------------------------------------------------------------------------------------------------


def _points(value: float) -> str:
    return f"{100 * value:.1f}"


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summary_rows(results: Sequence[PieceResult]) -> list[list[object]]:
    """Per model, hop, group (piano/ensemble/user, then all) and variant: mean F1s (points), penalty, latency, RTF."""
    rows: list[list[object]] = []
    keys = sorted({(r.model, r.hop) for r in results}, key=lambda k: (k[0], -k[1]))
    for model, hop in keys:
        mine = [r for r in results if (r.model, r.hop) == (model, hop)]
        groups = sorted({(r.item.group, r.item.variant) for r in mine}, key=lambda g: (g[0], g[1] != CLEAN))
        for group, variant in [*groups, (ALL, ALL)]:
            part = [r for r in mine if group == ALL or (r.item.group, r.item.variant) == (group, variant)]
            rows.append(_summary_row(model, hop, f"{group}/{variant}" if group != ALL else ALL, part))
    return rows


def _summary_row(model: str, hop: float, label: str, part: Sequence[PieceResult]) -> list[object]:
    offline_f1 = _mean([r.offline.onset.f1 for r in part])
    streaming_f1 = _mean([r.streaming.onset.f1 for r in part])
    measured = [r.latencies for r in part if r.latencies is not None]
    latencies = [x for lat in measured for x in lat]
    latency = (f"{percentile(latencies, 50):.3f}", f"{percentile(latencies, 95):.3f}") if measured else ("n/m", "n/m")
    return [
        model,
        f"{hop:g}",
        label,
        len(part),
        _points(offline_f1),
        _points(_mean([r.offline.offset.f1 for r in part])),
        _points(streaming_f1),
        _points(_mean([r.streaming.offset.f1 for r in part])),
        f"{100 * (streaming_f1 - offline_f1):+.1f}",
        *latency,
        f"{sum(r.compute_s for r in part) / sum(r.audio_s for r in part):.3f}",
        sum(r.skipped_windows for r in part),
    ]


SUMMARY_HEADERS = (
    "model", "hop (s)", "set", "pieces", "offline F1", "offline F1 +off", "stream F1", "stream F1 +off",
    "penalty", "latency p50 (s)", "latency p95 (s)", "RTF", "skipped windows",
)  # fmt: skip

PIECE_HEADERS = (
    "model", "hop (s)", "piece", "variant", "offline P", "offline R", "offline F1", "offline F1 +off",
    "stream P", "stream R", "stream F1", "stream F1 +off", "skipped",
)  # fmt: skip


def piece_rows(results: Sequence[PieceResult]) -> list[list[object]]:
    return [
        [
            r.model,
            f"{r.hop:g}",
            r.item.name,
            r.item.variant,
            _points(r.offline.onset.precision),
            _points(r.offline.onset.recall),
            _points(r.offline.onset.f1),
            _points(r.offline.offset.f1),
            _points(r.streaming.onset.precision),
            _points(r.streaming.onset.recall),
            _points(r.streaming.onset.f1),
            _points(r.streaming.offset.f1),
            r.skipped_windows,
        ]
        for r in results
    ]


def report(
    results: Sequence[PieceResult], missing: dict[str, str], speed: float, per_piece: bool, set_label: str
) -> str:
    pace = "real-time pace" if speed == 1 else ("as fast as possible (--speed 0)" if speed == 0 else f"{speed:g}×")
    lines = [
        f"Machine: {machine()}",
        f"Set: {set_label}. Streaming: {pace}"
        + ("" if speed == 1 else "; latency not measured (n/m): it needs real-time pace (--speed 1)."),
        "F1 in points (0-100), mean over pieces; +off: onsets and offsets; penalty: stream F1 − offline F1 (onset "
        "only); latency: note onset in the audio to its note_on at the client, pooled over pieces; RTF: offline "
        "compute seconds per audio second.",
        "",
        table(SUMMARY_HEADERS, summary_rows(results)),
    ]
    if per_piece:
        lines += ["", table(PIECE_HEADERS, piece_rows(results))]
    for name, why in missing.items():
        lines.append(f"\n{name}: unavailable ({why})")
    return "\n".join(lines)


# ---- command -----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["basic-pitch"],
        help=f"any of {', '.join(MODELS)} (default: basic-pitch; transkun takes hours on a CPU at live hops)",
    )  # fmt: skip
    parser.add_argument("--hops", type=float, nargs="+", default=list(DEFAULT_HOPS))
    parser.add_argument("--speed", type=float, default=1.0, help="× real time for streaming; 0 = as fast as possible")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="excerpt length per piece")
    parser.add_argument("--pieces", nargs="+", default=[p.name for p in PIECES], help="subset of the built-in set")
    parser.add_argument("--variants", nargs="+", choices=[CLEAN, NOISY], default=[CLEAN, NOISY])
    parser.add_argument("--folder", type=Path, help="your own set instead: song.wav + song.mid pairs")
    parser.add_argument("--cache", type=Path, default=None, help=f"default {cache_root()}")
    parser.add_argument("--per-piece", action="store_true", help="also print every piece's scores")
    return parser


async def evaluate(
    items: Sequence[Item], model_names: Sequence[str], hops: Sequence[float], speed: float
) -> tuple[list[PieceResult], dict[str, str]]:
    """Every available model on `items` at each of `hops` it accepts; and why the other models were left out."""
    models, missing = load_available(model_names)
    results: list[PieceResult] = []
    for name, model in models.items():
        usable = usable_hops(model, hops)
        if not usable:
            missing[name] = f"no hop of {list(hops)} within {model.spec.min_hop_s:g}-{model.spec.max_hop_s:g} s"
            continue
        print(f"{name}: hops {', '.join(f'{h:g}' for h in usable)}, {len(items)} items", flush=True)
        with server_process("--model", name) as (url, _):
            results += await bench_model(model, url, items, usable, speed)
    return results, missing


async def run(args: argparse.Namespace) -> str:
    if args.folder:
        items = user_set(args.folder)
        set_label = f"{len(items)} pairs from {args.folder}"
    else:
        settings = SetSettings(seconds=args.seconds, pieces=tuple(args.pieces))
        items = [i for i in build_set(settings, args.cache) if i.variant in args.variants]
        set_label = (
            f"{len(settings.pieces)} music21-corpus excerpts of {settings.seconds:g} s ({', '.join(args.variants)}; "
            f"noisy: SNR {settings.snr_db:g} dB, synthetic room RT60 {settings.rt60_s:g} s), FluidSynth + FluidR3_GM"
        )
    results, missing = await evaluate(items, args.models, args.hops, args.speed)
    return report(results, missing, args.speed, args.per_piece, set_label)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
