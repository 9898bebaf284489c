"""Online "melodia trick": notes grown from frame energy that no onset explains.

Offline (basic-pitch `note_creation`), after the onset notes, the strongest remaining frame energy above
frame_threshold repeatedly seeds a note grown forwards and backwards while the energy has not stayed below the
threshold for energy_tolerance frames; notes not longer than the minimum length are dropped, and every walked frame
is cleared at the pitch and its two neighbours. Seen frame by frame, such a note is a *segment*: a run of free frames
above the threshold at one pitch, bridged by gaps shorter than energy_tolerance, from its first frame above (where
the backward walk stops) to its last. A segment becomes a note the moment its span exceeds min_note_frames, and it
dies unnoticed once energy_tolerance frames pass without free energy. "Free" is the tracker's business (no note or
undecided onset at the pitch or a neighbour); this class only grows, confirms and forgets segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Segment:
    pitch: int  # bin
    start: int  # first frame above the threshold
    last_above: int
    peak: float  # strongest frame value: offline, the strongest energy is grown first


class MelodiaSegments:
    __slots__ = ("_min_note_frames", "_segments", "_tolerance")

    def __init__(self, min_note_frames: int, energy_tolerance: int) -> None:
        self._min_note_frames = min_note_frames
        self._tolerance = energy_tolerance
        self._segments: dict[int, Segment] = {}

    def step(self, frame: int, free_above: Sequence[int], row: np.ndarray) -> list[Segment]:
        """Advance to `frame`, where `free_above` are the free pitch bins at or above the frame threshold and `row`
        the frame's posteriors. Returns the segments that become notes now, strongest first; a confirmed segment
        wins its neighbours (their pending segments are dropped: cleared by its walk offline, they could only have
        become notes that overlap it)."""
        grown = []
        for pitch in free_above:
            value = float(row[pitch])
            segment = self._segments.get(pitch)
            if segment is None:
                segment = self._segments[pitch] = Segment(pitch, frame, frame, value)
            else:
                segment.last_above = frame
                segment.peak = max(segment.peak, value)
            if frame - segment.start >= self._min_note_frames:
                grown.append(segment)
        dead = [p for p, s in self._segments.items() if frame - s.last_above >= self._tolerance]
        for pitch in dead:
            del self._segments[pitch]
        confirmed = []
        for segment in sorted(grown, key=lambda s: (-s.peak, s.pitch)):
            if self._segments.get(segment.pitch) is not segment:
                continue  # dropped by a stronger neighbour confirmed just before
            confirmed.append(segment)
            for pitch in (segment.pitch - 1, segment.pitch, segment.pitch + 1):
                self._segments.pop(pitch, None)
        return confirmed

    def discard(self, pitch: int) -> None:
        """A note starts at `pitch`: a segment begun there before it must not bridge it (offline it would, and
        make two overlapping notes at one pitch)."""
        self._segments.pop(pitch, None)

    def earliest_start(self) -> int | None:
        return min((s.start for s in self._segments.values()), default=None)

    def clear(self) -> None:
        self._segments.clear()
