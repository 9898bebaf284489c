"""The online note tracker against offline note creation, on the same whole-file basic-pitch posteriors.

Posteriors come from the shipped ONNX model run over each file of the accuracy set (benchmarks/evalset.py) as
overlapping 2 s windows, central frames kept (benchmarks/whole_file_posteriors.py). On them:

1. accuracy: offline `window_notes` over the whole file vs `NoteTracker` at several confirm_frames, scored with the
   accuracy bench's mir_eval metrics (onset F1 at 50 ms, onset+offset F1), and the decision delay: frames from a
   note's onset frame to the frame whose arrival made the tracker return its NoteStart, frames arriving one at a
   time (likewise for ends, from the end frame);
2. velocity: the tracker's causal estimate at commit time, and a few alternatives, against basic-pitch's
   definition (127 × mean frame posterior over the whole note) applied to the same note;
3. interim notes: provisional tails simulated as the network would give them, each step's tail computed by the ONNX
   model on a window that ends where the audio "ends now" (`--provisional-frames` frames after the final ones), and
   with the final frames themselves as an oracle tail: how often an interim note is later committed, and how much
   earlier it appeared;
4. speed: CPU time of the tracker per stream per second of audio, at several block sizes.

Run: .venv/bin/python -m benchmarks.tracker_eval [--confirm 0 1 2 3 4 6 8 11] [--default 1] [--interim-items 6]
(first run renders the set with FluidSynth and computes posteriors; both are cached).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.accuracy import score
from benchmarks.common import machine, percentile, table
from benchmarks.evalset import Item, SetSettings, build_set, cache_root
from benchmarks.whole_file_posteriors import WINDOW_FRAMES, cached_posteriors
from streamer.audio.resample import resample
from streamer.models.basic_pitch.model import FFT_HOP, FRAME_SECONDS, SAMPLE_RATE, WINDOW_SAMPLES, BasicPitch
from streamer.models.basic_pitch.note_tracker import (
    DEFAULT_CONFIRM_FRAMES,
    N_PITCHES,
    NoteEnd,
    NoteStart,
    NoteTracker,
    TrackerConfig,
)
from streamer.models.basic_pitch.onset_peaks import OnsetPeaks
from streamer.models.basic_pitch.posteriors import MIDI_OFFSET, NoteRules, window_notes
from streamer.notes import Note

DEFAULT_CONFIRMS = (0, 1, 2, 3, 4, 6, 8, 11)
SPEED_BLOCKS = (1, 4, 8, 16)
SPEED_TAIL = 10  # provisional frames given with every block in the speed run
SPEED_REPEATS = 3  # the fastest of these runs is reported (the machine is shared)
MATCH_FRAMES = 2  # an interim note and a NoteStart at one pitch this close are the same note
MS = 1000 * FRAME_SECONDS


@dataclass(frozen=True, slots=True)
class Posteriors:
    item: Item
    frames: np.ndarray
    onsets: np.ndarray
    audio: np.ndarray  # at the model rate, for simulated provisional tails


@dataclass
class TrackedNote:
    start: int
    end: int
    pitch: int
    velocity: int
    start_decided: int  # frame whose arrival returned the NoteStart
    end_decided: int
    melodia: bool  # no onset candidate at its start: a melodia-trick note


@dataclass
class Run:
    notes: list[TrackedNote]
    interim: list[tuple[int, list[NoteStart]]]  # (final frames so far, interim notes) per push


def load(items: Sequence[Item], model: BasicPitch) -> list[Posteriors]:
    cache = cache_root() / "tracker_eval"
    out = []
    for item in items:
        audio, rate = item.audio()
        frames, onsets = cached_posteriors(model, item.audio_path, audio, rate, cache)
        out.append(Posteriors(item, frames, onsets, resample(audio, rate, SAMPLE_RATE)))
    return out


# -- runs ---------------------------------------------------------------------------------------------------------


def offline_notes(p: Posteriors, rules: NoteRules) -> list[Note]:
    """window_notes over the whole file; a note open at the file's start or end starts at 0 or ends at the end."""
    found = window_notes(p.frames, p.onsets, FRAME_SECONDS, rules)
    end = len(p.frames) * FRAME_SECONDS
    return [Note(n.onset or 0.0, end if n.offset is None else n.offset, n.pitch, n.velocity) for n in found]


def track(
    p: Posteriors, config: TrackerConfig, block: int = 1, tails: Sequence[tuple[np.ndarray, np.ndarray]] | None = None
) -> Run:
    """Feed the final frames in blocks (with the k-th block, tails[k] as provisional frames if given)."""
    tracker = NoteTracker(config)
    peak_t, peak_p = OnsetPeaks(N_PITCHES, config.onset_threshold, config.infer_onsets).push(p.frames, p.onsets)
    candidates = set(zip(peak_t.tolist(), (peak_p + MIDI_OFFSET).tolist(), strict=True))
    open_: dict[int, tuple[NoteStart, int]] = {}
    notes: list[TrackedNote] = []
    interim = []

    def take(events: Sequence[NoteStart | NoteEnd], decided: int) -> None:
        for e in events:
            if isinstance(e, NoteStart):
                open_[e.pitch] = (e, decided)
            else:
                start, start_decided = open_.pop(e.pitch)
                melodia = (start.frame, e.pitch) not in candidates
                notes.append(
                    TrackedNote(start.frame, e.frame, e.pitch, start.velocity, start_decided, decided, melodia)
                )

    for k, pos in enumerate(range(0, len(p.frames), block)):
        tail = tails[k] if tails is not None else (None, None)
        d = tracker.push(pos, p.frames[pos : pos + block], p.onsets[pos : pos + block], *tail)
        take(d.events, tracker.frames - 1)
        interim.append((tracker.frames, d.interim))
    take(tracker.finish().events, len(p.frames))
    return Run(sorted(notes, key=lambda n: (n.start, n.pitch)), interim)


def as_notes(notes: Sequence[TrackedNote]) -> list[Note]:
    return [Note(n.start * FRAME_SECONDS, n.end * FRAME_SECONDS, n.pitch, n.velocity) for n in notes]


def onset_agreement(a: Sequence[Note], b: Sequence[Note]) -> float:
    """Share of a's notes with a note of b at the same pitch and onset frame (±1)."""
    keys = {(round(n.onset / FRAME_SECONDS) + d, n.pitch) for n in b for d in (-1, 0, 1)}
    return sum((round(n.onset / FRAME_SECONDS), n.pitch) in keys for n in a) / max(1, len(a))


# -- accuracy and delay -------------------------------------------------------------------------------------------


def points(x: float) -> str:
    return f"{100 * x:.1f}"


def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def accuracy_rows(data: Sequence[Posteriors], confirms: Sequence[int], default: int) -> list[list[object]]:
    offline = [offline_notes(p, NoteRules()) for p in data]
    rows = [_accuracy_row("offline window_notes", data, offline, None, None)]
    plain = NoteRules(melodia_trick=False)
    rows.append(_accuracy_row("offline, melodia trick off", data, [offline_notes(p, plain) for p in data], None, None))
    variants = [(f"tracker confirm={c}", TrackerConfig(confirm_frames=c)) for c in confirms]
    variants += [
        (f"tracker confirm={default}, melodia trick off", TrackerConfig(confirm_frames=default, melodia_trick=False)),
        (f"tracker confirm={default}, inferred onsets off", TrackerConfig(confirm_frames=default, infer_onsets=False)),
    ]
    for label, config in variants:
        runs = [track(p, config) for p in data]
        rows.append(_accuracy_row(label, data, [as_notes(r.notes) for r in runs], runs, offline))
    return rows


ACCURACY_HEADERS = (
    "method", "onset P / R / F1", "onset+off F1", "piano / ensemble F1", "clean / noisy F1",
    "onset delay p50/p95/max (frames)", "p50 / p95 (ms)", "melodia notes: share, delay p50", "offset delay p50/p95",
    "offline kept / tracker in offline",
)  # fmt: skip


def _accuracy_row(
    label: str,
    data: Sequence[Posteriors],
    notes: Sequence[Sequence[Note]],
    runs: Sequence[Run] | None,
    offline: Sequence[Sequence[Note]] | None,
) -> list[object]:
    scores = [score(p.item.reference(), n) for p, n in zip(data, notes, strict=True)]

    def f1(keep: str) -> str:
        return points(
            mean([s.onset.f1 for p, s in zip(data, scores, strict=True) if keep in (p.item.group, p.item.variant)])
        )

    row: list[object] = [
        label,
        " / ".join(points(mean([getattr(s.onset, k) for s in scores])) for k in ("precision", "recall", "f1")),
        points(mean([s.offset.f1 for s in scores])),
        f"{f1('piano')} / {f1('ensemble')}",
        f"{f1('clean')} / {f1('noisy')}",
    ]
    if runs is None or offline is None:
        return [*row, "—", "—", "—", "—", "—"]
    onset_delays = [n.start_decided - n.start for r in runs for n in r.notes if not n.melodia]
    melodia = [n.start_decided - n.start for r in runs for n in r.notes if n.melodia]
    offset_delays = [n.end_decided - n.end for r in runs for n in r.notes]
    p50, p95 = percentile(onset_delays, 50), percentile(onset_delays, 95)
    kept = mean([onset_agreement(o, n) for o, n in zip(offline, notes, strict=True)])
    inside = mean([onset_agreement(n, o) for o, n in zip(offline, notes, strict=True)])
    return [
        *row,
        f"{p50:.0f} / {p95:.0f} / {max(onset_delays)}",
        f"{p50 * MS:.0f} / {p95 * MS:.0f}",
        f"{100 * len(melodia) / (len(melodia) + len(onset_delays)):.1f} %, {percentile(melodia, 50):.0f}",
        f"{percentile(offset_delays, 50):.0f} / {percentile(offset_delays, 95):.0f}",
        f"{points(kept)} / {points(inside)}",
    ]


# -- velocity -----------------------------------------------------------------------------------------------------


def velocity_rows(data: Sequence[Posteriors], confirms: Sequence[int]) -> list[list[object]]:
    """Causal velocity estimates against 127 × the mean frame posterior over the whole (same) note."""
    rows = []
    for confirm in confirms:
        estimates: dict[str, list[float]] = {}
        full: list[float] = []
        for p in data:
            for n in track(p, TrackerConfig(confirm_frames=confirm)).notes:
                if n.melodia:
                    continue
                bin_, stop = n.pitch - MIDI_OFFSET, n.start_decided + 1
                column = p.frames[:, bin_]
                full.append(127 * float(column[n.start : n.end].mean()))
                for name, value in (
                    ("tracker: mean onset→commit", n.velocity),
                    ("mean onset+1→commit", 127 * float(column[n.start + 1 : max(stop, n.start + 2)].mean())),
                    ("max onset→commit", 127 * float(column[n.start : stop].max())),
                    ("onset posterior", 127 * float(p.onsets[n.start, bin_])),
                ):
                    estimates.setdefault(name, []).append(value)
        for name, values in estimates.items():
            error = np.array(values) - np.array(full)
            r = float(np.corrcoef(values, full)[0, 1]) if len(full) > 1 else float("nan")
            rows.append([confirm, name, len(full), f"{np.abs(error).mean():.1f}", f"{error.mean():+.1f}", f"{r:.2f}"])
    return rows


VELOCITY_HEADERS = ("confirm", "estimate", "notes", "MAE (velocity)", "bias", "Pearson r")


# -- interim notes ------------------------------------------------------------------------------------------------


def onnx_tails(model: BasicPitch, p: Posteriors, block: int, ahead: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each block of final frames [k·block, (k+1)·block), the provisional frames [(k+1)·block, … + ahead) as
    the model computes them when the audio ends with the last of those frames (zeros after it)."""
    tails = []
    windows = []
    n = len(p.frames)
    for stop in range(block, n + block, block):
        final = min(stop, n)
        last = min(final + ahead, n)  # the audio "now": end of frame last - 1
        first = last - (WINDOW_FRAMES - 1)  # window frame 171 is at `last`
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        lo, hi = first * FFT_HOP, last * FFT_HOP
        piece = p.audio[max(lo, 0) : min(hi, len(p.audio))]
        window[max(0, -lo) : max(0, -lo) + len(piece)] = piece
        windows.append((window, final - first, last - first))
    for b in range(0, len(windows), 8):
        batch = windows[b : b + 8]
        frames, onsets = model.posteriors(np.stack([w for w, _, _ in batch]))
        for i, (_, a, z) in enumerate(batch):
            tails.append((frames[i, a:z], onsets[i, a:z]))
    return tails


def oracle_tails(p: Posteriors, block: int, ahead: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n = len(p.frames)
    return [
        (p.frames[min(s, n) : min(s, n) + ahead], p.onsets[min(s, n) : min(s, n) + ahead])
        for s in range(block, n + block, block)
    ]


def interim_row(label: str, runs: Sequence[Run]) -> list[object]:
    """Distinct interim notes (pitch, onset ±MATCH_FRAMES merged across calls): share later committed, frames from
    first appearance to commit, first appearance after the onset; and share of commits that were announced."""
    confirmed, earlier, after_onset, announced, commits, total = 0, [], [], 0, 0, 0
    for run in runs:
        starts = [(n.start, n.pitch, n.start_decided) for n in run.notes]
        seen: dict[tuple[int, int], int] = {}  # (onset, pitch) → frames when first shown
        for frames_so_far, notes in run.interim:
            for n in notes:
                if not any(abs(n.frame - f) <= MATCH_FRAMES and n.pitch == q for f, q in seen):
                    seen[(n.frame, n.pitch)] = frames_so_far
        total += len(seen)
        for (frame, pitch), shown in seen.items():
            after_onset.append(shown - 1 - frame)
            match = [d for s, q, d in starts if q == pitch and abs(s - frame) <= MATCH_FRAMES]
            if match:
                confirmed += 1
                earlier.append(min(match) - (shown - 1))
        for s, q, d in starts:
            commits += 1
            announced += any(
                q == pitch and abs(s - f) <= MATCH_FRAMES and shown - 1 < d for (f, pitch), shown in seen.items()
            )
    return [
        label,
        total,
        points(confirmed / max(1, total)),
        f"{percentile(after_onset, 50):.0f} / {percentile(after_onset, 95):.0f}",
        f"{percentile(earlier, 50):.0f} / {percentile(earlier, 95):.0f}",
        points(announced / max(1, commits)),
    ]


INTERIM_HEADERS = (
    "provisional tail", "interim notes", "later committed (%)", "shown after onset p50/p95 (frames)",
    "shown before commit p50/p95 (frames)", "commits announced first (%)",
)  # fmt: skip


# -- speed --------------------------------------------------------------------------------------------------------


def speed_rows(data: Sequence[Posteriors], config: TrackerConfig) -> list[list[object]]:
    seconds = sum(len(p.frames) for p in data) * FRAME_SECONDS
    rows = []
    for block in SPEED_BLOCKS:
        row: list[object] = [block]
        for ahead in (0, SPEED_TAIL):
            tails = [oracle_tails(p, block, ahead) if ahead else None for p in data]
            best = float("inf")
            for _ in range(SPEED_REPEATS):
                began = time.process_time()
                for p, t in zip(data, tails, strict=True):
                    _feed(p, config, block, t)
                best = min(best, time.process_time() - began)
            row.append(f"{1e6 * best / seconds:.0f}")
        rows.append(row)
    began = time.process_time()
    for p in data:
        window_notes(p.frames, p.onsets, FRAME_SECONDS, NoteRules())
    rows.append(["offline window_notes (whole file)", f"{1e6 * (time.process_time() - began) / seconds:.0f}", "—"])
    return rows


def _feed(p: Posteriors, config: TrackerConfig, block: int, tails: Sequence | None) -> None:
    tracker = NoteTracker(config)
    for k, pos in enumerate(range(0, len(p.frames), block)):
        tail = tails[k] if tails is not None else (None, None)
        tracker.push(pos, p.frames[pos : pos + block], p.onsets[pos : pos + block], *tail)
    tracker.finish()


SPEED_HEADERS = ("block (frames)", "CPU µs per audio s", f"… with {SPEED_TAIL} provisional frames per call")


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--confirm", type=int, nargs="+", default=list(DEFAULT_CONFIRMS))
    parser.add_argument(
        "--default",
        type=int,
        default=DEFAULT_CONFIRM_FRAMES,
        help="confirm_frames of the variant, velocity, interim and speed runs",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each piece of the set")
    parser.add_argument("--interim-items", type=int, default=6, help="items for the ONNX provisional tails (slow)")
    parser.add_argument("--interim-block", type=int, default=4, help="final frames per call in the interim runs")
    parser.add_argument("--provisional-frames", type=int, default=10, help="provisional frames after the final ones")
    args = parser.parse_args(argv)

    model = BasicPitch()
    data = load(build_set(SetSettings(seconds=args.seconds)), model)
    default = TrackerConfig(confirm_frames=args.default)
    print(f"Machine: {machine()}")
    print(
        f"{len(data)} items, {sum(len(p.frames) for p in data) * FRAME_SECONDS:.0f} s of audio; a frame is "
        f"{MS:.1f} ms. F1 in points, mean over items. Delays: frames from a note's onset (end) frame to the frame "
        "whose arrival returned its NoteStart (NoteEnd), frames pushed one at a time. Last column: share of offline "
        "onsets the tracker also has (pitch, ±1 frame) / share of the tracker's onsets offline also has.\n"
    )
    print(table(ACCURACY_HEADERS, accuracy_rows(data, args.confirm, args.default)))
    print(
        "\nVelocity of onset notes (melodia notes left out) at commit time against 127 × the mean posterior over "
        "the whole note (basic-pitch's velocity, unknown until the note ends)"
    )
    print(table(VELOCITY_HEADERS, velocity_rows(data, sorted({args.default, max(args.confirm)}))))
    print(
        f"\nInterim notes, confirm {args.default}, {args.interim_block} final frames per call, "
        f"{args.provisional_frames} provisional frames after them"
    )
    rows = []
    block, ahead = args.interim_block, args.provisional_frames
    subset = data[: args.interim_items]
    rows.append(interim_row("none (undecided candidates only)", [track(p, default, block) for p in subset]))
    rows.append(
        interim_row(
            f"ONNX, audio ending now ({len(subset)} items)",
            [track(p, default, block, onnx_tails(model, p, block, ahead)) for p in subset],
        )
    )
    rows.append(
        interim_row(
            f"oracle: the final frames ({len(subset)} items)",
            [track(p, default, block, oracle_tails(p, block, ahead)) for p in subset],
        )
    )
    print(table(INTERIM_HEADERS, rows))
    print(f"\nSpeed, confirm {args.default} (CPU time, fastest of {SPEED_REPEATS}; one stream, all items)")
    print(table(SPEED_HEADERS, speed_rows(data, default)))


if __name__ == "__main__":
    main()
