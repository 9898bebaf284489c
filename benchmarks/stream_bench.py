"""One stream at real-time pace: onset → note_on latency, and first sighting with interim results, per setting.

Every item of the accuracy set (benchmarks/evalset.py: music21 scores rendered with FluidSynth, piano and ensembles,
clean and noisy) is streamed at real-time pace (44.1 kHz s16le, 20 ms frames) over loopback to `streamer serve` in
its own process. For every reference note matched by a `note_on` (same pitch, onset within 50 ms): the latency is
its arrival at the client minus the note's onset in the audio. With interim results on, the first sighting is the
earliest arrival of either that `note_on` or an `interim` note of the same pitch within 50 ms of the onset.
Settings compared side by side in one run: the default (basic-pitch streaming), and the windowed ONNX path at the
hops given (the previous default was hop 0.5 s).

Run: .venv/bin/python -m benchmarks.stream_bench [--seconds 20] [--windowed-hops 0.5 0.1] [--pieces ...]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import machine, onset_latencies, percentile, server_process, table
from benchmarks.evalset import CLEAN, NOISY, PIECES, Item, SetSettings, build_set
from streamer import protocol as p
from streamer.client.stream import stream_audio
from streamer.notes import Note

ONSET_TOLERANCE_S = 0.05
WINDOWED = "[models.basic-pitch]\nstreaming = false\n[windowing]\nhop = {hop}\ncommit_margin = {margin}\n"


@dataclass
class Setting:
    label: str
    config: str  # TOML for the server
    interim: bool


@dataclass
class Measured:
    latencies: list[float] = field(default_factory=list)
    sightings: list[float] = field(default_factory=list)
    matched: int = 0
    notes: int = 0
    skipped: int = 0


def first_sightings(reference: list[Note], seen: list[tuple[float, float, int]]) -> list[float]:
    """For each reference note, the earliest arrival of a sighting (onset time, arrival, pitch) within 50 ms."""
    out = []
    for note in reference:
        arrivals = [
            a for onset, a, pitch in seen if pitch == note.pitch and abs(onset - note.onset) <= ONSET_TOLERANCE_S
        ]
        if arrivals:
            out.append(min(arrivals) - note.onset)
    return out


async def stream_item(url: str, item: Item, interim: bool) -> tuple[list[float], list[float], int]:
    audio, rate = item.audio()
    reference = [n for n in item.reference() if not n.is_drum]
    seen: list[tuple[float, float, int]] = []
    t0 = [0.0]

    def on_message(message: p.ServerMessage) -> None:
        if isinstance(message, p.Ready):
            t0[0] = time.monotonic()
        elif isinstance(message, p.Interim):
            now = time.monotonic() - t0[0]
            seen.extend((n.onset, now, n.pitch) for n in message.notes)
        elif isinstance(message, p.Events):
            now = time.monotonic() - t0[0]
            seen.extend((e.time, now, e.pitch) for e in message.events if isinstance(e, p.NoteOn))

    result = await stream_audio(url, audio[:, None], rate, speed=1.0, interim=interim, on_message=on_message)
    latencies = onset_latencies(reference, result.events, result.arrivals)
    skipped = result.done.skipped_windows if result.done else -1
    return latencies, first_sightings(reference, seen), skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--windowed-hops", type=float, nargs="*", default=[0.5, 0.1])
    parser.add_argument("--pieces", nargs="+", default=[piece.name for piece in PIECES])
    parser.add_argument("--variants", nargs="+", choices=[CLEAN, NOISY], default=[CLEAN, NOISY])
    args = parser.parse_args()

    every = build_set(SetSettings(seconds=args.seconds, pieces=tuple(args.pieces)))
    items = [i for i in every if i.variant in args.variants]
    settings = [Setting("streaming (default)", "", False), Setting("streaming + interim", "", True)]
    for hop in args.windowed_hops:
        margin = 0.15 if hop < 0.25 else 0.25
        label = f"windowed ONNX hop {hop:g} margin {margin:g}"
        settings.append(Setting(label, WINDOWED.format(hop=hop, margin=margin), False))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            measured = Measured()
            path = Path(tmp) / "bench.toml"
            path.write_text(setting.config)
            with server_process("--config", str(path)) as (url, _):
                for item in items:
                    latencies, sightings, skipped = asyncio.run(stream_item(url, item, setting.interim))
                    measured.latencies += latencies
                    measured.sightings += sightings
                    measured.notes += len([n for n in item.reference() if not n.is_drum])
                    measured.skipped += max(skipped, 0)
                    print(f"  {setting.label}: {item.name} ({item.variant}) {len(latencies)} notes", flush=True)
            lat, seen = measured.latencies, measured.sightings
            rows.append([
                setting.label, f"{len(lat)}/{measured.notes}",
                f"{percentile(lat, 50):.3f}", f"{percentile(lat, 95):.3f}", f"{max(lat, default=float('nan')):.3f}",
                f"{percentile(seen, 50):.3f}" if setting.interim else "-",
                f"{percentile(seen, 95):.3f}" if setting.interim else "-", measured.skipped,
            ])  # fmt: skip
    print(
        f"{len(items)} items of {args.seconds:g} s ({', '.join(args.variants)}) streamed one at a time at real-time "
        f"pace; machine: {machine()}"
    )
    headers = ["setting", "notes matched", "note_on p50 (s)", "note_on p95 (s)", "max (s)", "first sighting p50 (s)",
               "first sighting p95 (s)", "skipped"]  # fmt: skip
    print(table(headers, rows))


if __name__ == "__main__":
    main()
