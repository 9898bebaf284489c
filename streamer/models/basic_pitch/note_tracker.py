"""Online note decisions from streaming basic-pitch posteriors: onsets as soon as they are determined.

A stream delivers final frames (frame i at i·256/22050 s; 88 pitch bins from MIDI 21) in blocks of any size, and
optionally a provisional tail computed as if the audio ended now. `NoteTracker` decides note starts and ends from
the final frames only, one frame at a time, so its decisions do not depend on how the frames were blocked; the
provisional tail only feeds `interim`, a best guess for screens that every call replaces.

The rules are basic-pitch's (`note_creation.output_to_notes_polyphonic`; `posteriors.window_notes` here), reordered
to run forwards in time with a bounded look-ahead:

- Candidates (onset_peaks.py): strict local maxima in time of the onset posterior, max-combined with the rescaled
  frame rise ("inferred onsets"), reaching onset_threshold. Offline the rise is rescaled by the whole posteriorgram's
  maxima; online by the stream's maxima so far. A candidate at frame t is seen with frame t + 1.
- Growth: from t + 1 a note sounds while its pitch's frame posterior has not stayed below frame_threshold for
  energy_tolerance frames; it ends after its last frame above. So an end is decided energy_tolerance frames after
  that frame, later than onsets: offsets have their own horizon.
- Confirmation: offline a note is kept when it lasts more than min_note_frames. Online a candidate is committed at
  the first frame where it has sounded confirm_frames past its onset (a frame ≥ t + confirm_frames above the
  threshold with no energy_tolerance gap before it) and dropped if it ends before. With confirm_frames =
  min_note_frames this is the offline length rule, settled at the earliest frame that settles it; smaller values
  commit sooner and keep notes the offline rule drops (some end up shorter than the minimum).
- Later onsets win: offline, onsets are processed latest first and a kept note clears the energy at its pitch and
  both neighbours, so an earlier note there ends where the later one starts, and is dropped if that leaves it no
  longer than min_note_frames. Online, committing a candidate ends every sounding note at its pitch and neighbours
  that started earlier (after its last frame above before the new onset, where the offline walk meets the cleared
  frames) and drops the undecided candidates there that started earlier or at the same frame. Commits in one frame
  go latest onset first, then highest pitch first (upstream's order). What differs: decisions are final, so a note
  committed before a later onset at its pitch or a neighbour is seen keeps its start and is only shortened. Offline,
  whether a note survives can depend on onsets arbitrarily far ahead (in a run of onsets spaced at most
  min_note_frames apart, the last one decides which of the others are kept), which no bounded look-ahead settles.
- Melodia trick (melodia.py): segments of free frame energy become notes once longer than min_note_frames, started
  at their first frame above (where the backward walk stops). A frame is free at a pitch when no note and no
  undecided candidate sits at that pitch or a neighbour. Offline, the strongest remaining energy of the whole file is
  grown first; online a frame is judged one frame late (once every candidate that could cover it is known), the
  first segment to reach the minimum length wins its neighbours, and ties in one frame go to the strongest. Also
  unlike offline: an undecided candidate blocks its neighbourhood until it is decided even if it is then dropped; a
  note blocks its neighbours until its end is decided (offline only up to its end); dropped segments clear nothing;
  and a segment begun at a pitch before a note starts there is forgotten (offline it can bridge the note and
  overlap it at the same pitch).
- Velocity: offline, 127 × the mean frame posterior over the whole note, unknown at onset time. Online, 127 × the
  mean over the frames from the onset to the commit frame (at least the onset frame and the next one). Against the
  whole note's value on the accuracy set: mean absolute error 9 velocity units, +1.5 bias, r 0.81 at confirm_frames
  1 (7, +5, 0.89 at 11; the frame posterior decays, so early means run high); the onset posterior does far worse.
- Interim notes: the undecided candidates, and the candidates that the provisional tail reveals (same onset rule,
  on a copy of the onset state), that have sounded at least one frame past their onset in the frames seen (when
  confirm_frames > 0), velocities over every frame seen from the onset. The other rules are not applied; every
  call replaces them, and only the final frames' decisions count.

Decisions are final. Each NoteStart gets exactly one later NoteEnd at its pitch, at a later frame; a pitch has at
most one sounding note. After each call no later NoteStart has a frame before `onset_horizon`, nor a NoteEnd before
`offset_horizon`, and onset_horizon trails the final frames by at most `lag_frames`. Memory per stream is bounded:
only the frames an undecided note can still read are kept.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np

from streamer.models.basic_pitch.frame_history import FrameHistory
from streamer.models.basic_pitch.melodia import MelodiaSegments, Segment
from streamer.models.basic_pitch.onset_peaks import OnsetPeaks
from streamer.models.basic_pitch.posteriors import ENERGY_TOLERANCE, MIDI_OFFSET

N_PITCHES = 88
# On the accuracy set (benchmarks/tracker_eval.py) 1 frame of confirmation already beats the offline onset F1, while
# 0 loses 2 points to onset peaks whose pitch never sounds.
DEFAULT_CONFIRM_FRAMES = 1
_END, _START = 0, 1  # sort order of events at one frame: a pitch's end before its next start


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_frames: int = 11  # round(127.70 ms × 86.13 frames/s), basic-pitch's default
    confirm_frames: int = DEFAULT_CONFIRM_FRAMES  # 0 … min_note_frames; see the module docstring
    infer_onsets: bool = True
    # Upstream's default. Online it cost 1.3 onset-F1 points on the accuracy set (the onset rules already keep most
    # of what it recovers offline) and it sets lag_frames (min_note_frames + energy_tolerance).
    melodia_trick: bool = True
    energy_tolerance: int = ENERGY_TOLERANCE

    def __post_init__(self) -> None:
        if not 0 <= self.confirm_frames <= self.min_note_frames:
            raise ValueError(f"confirm_frames must be within 0..min_note_frames, got {self.confirm_frames}")
        if self.energy_tolerance < 1 or self.min_note_frames < 0:
            raise ValueError("energy_tolerance must be ≥ 1 and min_note_frames ≥ 0")

    @property
    def lag_frames(self) -> int:
        """How far onset_horizon can trail the number of final frames.

        A candidate at t is seen with frame t + 1 and decided by frame t + confirm_frames + energy_tolerance − 1 (a
        last frame above at t + confirm_frames − 1, then a full gap). A melodia segment is judged one frame late and
        stays undecided until it spans min_note_frames or dies after a gap."""
        onsets = 1 if self.confirm_frames == 0 else self.confirm_frames + self.energy_tolerance - 1
        melodia = self.min_note_frames + self.energy_tolerance if self.melodia_trick else 0
        return max(onsets, melodia)


@dataclass(frozen=True, slots=True)
class NoteStart:
    frame: int
    pitch: int  # MIDI (bin + 21)
    velocity: int


@dataclass(frozen=True, slots=True)
class NoteEnd:
    frame: int  # the note's end (exclusive), after its start frame
    pitch: int


@dataclass(slots=True)
class Decisions:
    events: list[NoteStart | NoteEnd]  # non-decreasing frames; at one frame, ends before starts
    onset_horizon: int  # no later NoteStart will have frame < onset_horizon
    offset_horizon: int  # likewise for NoteEnd
    interim: list[NoteStart] = field(default_factory=list)  # provisional, replaced on every call (screens only)


@dataclass(slots=True, eq=False)  # identity: a candidate is found in lists by itself
class _Note:
    """An undecided onset candidate, or a sounding note."""

    start: int
    pitch: int  # bin
    last_above: int  # last frame ≥ frame_threshold after start (start itself when none yet)
    above: list[int] = field(default_factory=list)  # its recent frames above the threshold (for cuts)


class NoteTracker:
    """Per-stream online note decisions; see the module docstring for the rules."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.lag_frames = config.lag_frames
        self._peaks = OnsetPeaks(N_PITCHES, config.onset_threshold, config.infer_onsets)
        self._history = FrameHistory(N_PITCHES)
        self._segments = (
            MelodiaSegments(config.min_note_frames, config.energy_tolerance) if config.melodia_trick else None
        )
        self._n = 0  # final frames consumed
        self._pending: list[_Note] = []
        self._sounding: dict[int, _Note] = {}
        # Candidates and notes at each pitch bin or a neighbour (index bin + 1): a melodia frame is free at 0.
        self._cover = [0] * (N_PITCHES + 2)
        self._previous_above: list[int] = []  # bins above frame_threshold at frame n − 1 (melodia runs a frame late)
        self._events: list[tuple[int, int, int, NoteStart | NoteEnd]] = []
        self._finished = False

    def push(
        self,
        start_frame: int,
        note: np.ndarray,
        onset: np.ndarray,
        provisional_note: np.ndarray | None = None,
        provisional_onset: np.ndarray | None = None,
    ) -> Decisions:
        """Consume final frames [start_frame, start_frame + len(note)) (frame and onset posteriors, (frames, 88)),
        and optionally the provisional frames that follow them (for `interim` only)."""
        if self._finished:
            raise ValueError("push after finish")
        if start_frame != self._n:
            raise ValueError(f"frames must be contiguous: expected start_frame {self._n}, got {start_frame}")
        note, onset = _posteriors(note, onset)
        if (provisional_note is None) != (provisional_onset is None):
            raise ValueError("give both provisional_note and provisional_onset, or neither")
        # Checked before any frame is consumed: a refused call changes nothing.
        tail = note[:0], onset[:0]
        if provisional_note is not None and provisional_onset is not None:
            tail = _posteriors(provisional_note, provisional_onset)
        onset_horizon = self._consume(note, onset)
        offset_horizon = self._offset_horizon(onset_horizon)
        return Decisions(self._take_events(), onset_horizon, offset_horizon, self._interim(*tail))

    @property
    def frames(self) -> int:
        """Final frames consumed so far."""
        return self._n

    @property
    def held_frames(self) -> int:
        """The most frames any per-stream buffer holds (posteriors, a note's recent frames above the threshold):
        bounded whatever the stream's length."""
        notes = (*self._sounding.values(), *self._pending)
        return max(len(self._history), *(len(n.above) for n in notes), 0)

    def finish(self) -> Decisions:
        """End of stream: undecided candidates and segments are dropped (they did not last long enough), every
        sounding note ends after its last frame above, and both horizons move to the end."""
        if self._finished:
            raise ValueError("finish called twice")
        self._finished = True
        if self._n > 0:
            self._melodia_step(self._n - 1)
        for candidate in list(self._pending):
            self._drop(candidate)
        if self._segments is not None:
            self._segments.clear()
        for note in list(self._sounding.values()):
            self._end(note, note.last_above + 1)
        return Decisions(self._take_events(), self._n, self._n, [])

    # -- frame by frame -----------------------------------------------------------------------------------------

    def _consume(self, note: np.ndarray, onset: np.ndarray) -> int:
        """Run the frames through the rules; returns the onset horizon after them."""
        if len(note) == 0:
            return self._onset_horizon()
        first = self._n
        self._history.append(note)
        peak_t, peak_p = self._peaks.push(note, onset)
        above_t, above_p = np.nonzero(note >= self.config.frame_threshold)
        above = _by_frame(above_t, above_p, len(note))
        peaks = _by_frame(peak_t + 1 - first, peak_p, len(note))  # a candidate at t is seen with frame t + 1
        for i in range(len(note)):
            self._n = first + i + 1
            self._step(first + i, above[i], peaks[i])
        onset_horizon = self._onset_horizon()
        self._forget(onset_horizon)
        return onset_horizon

    def _step(self, f: int, above: list[int], new_peaks: list[int]) -> None:
        """Frame f is final; `above`: its bins at or above frame_threshold; `new_peaks`: candidates at f − 1."""
        for pitch in new_peaks:
            self._pending.append(_Note(f - 1, pitch, f - 1))
            self._add_cover(pitch, 1)
        if f >= 1:
            self._melodia_step(f - 1)
        self._previous_above = above
        if above:
            above_set = set(above)
            for note in (*self._sounding.values(), *self._pending):
                if note.pitch in above_set:
                    note.last_above = f
                    note.above.append(f)
        if self._pending:
            self._decide(f)
        tolerance = self.config.energy_tolerance
        for note in [n for n in self._sounding.values() if f - n.last_above >= tolerance]:
            self._end(note, note.last_above + 1)

    def _decide(self, f: int) -> None:
        confirm, tolerance = self.config.confirm_frames, self.config.energy_tolerance
        ready = [c for c in self._pending if c.last_above - c.start >= confirm]
        for candidate in sorted(ready, key=_latest_first):
            if candidate in self._pending:  # not dropped by a later neighbour committed just before
                self._commit(candidate, f)
        for candidate in [c for c in self._pending if f - c.last_above >= tolerance]:
            self._drop(candidate)

    def _commit(self, candidate: _Note, f: int) -> None:
        pitch, start = candidate.pitch, candidate.start
        self._pending.remove(candidate)
        for other in [c for c in self._pending if abs(c.pitch - pitch) <= 1 and c.start <= start]:
            self._drop(other)
        for neighbour in (pitch - 1, pitch, pitch + 1):
            note = self._sounding.get(neighbour)
            if note is not None and note.start < start:
                self._end(note, self._last_above_before(note, start) + 1)
        # A note committed earlier at this pitch started before `start` (a later one would have dropped this one).
        assert pitch not in self._sounding, "two sounding notes at one pitch"
        if self._segments is not None:
            self._segments.discard(pitch)
        self._emit(start, _START, NoteStart(start, pitch + MIDI_OFFSET, self._velocity(pitch, start, f + 1)))
        self._sounding[pitch] = candidate  # the candidate's cover becomes the note's

    def _drop(self, candidate: _Note) -> None:
        self._pending.remove(candidate)
        self._add_cover(candidate.pitch, -1)

    def _end(self, note: _Note, end: int) -> None:
        del self._sounding[note.pitch]
        self._add_cover(note.pitch, -1)
        self._emit(end, _END, NoteEnd(end, note.pitch + MIDI_OFFSET))

    def _last_above_before(self, note: _Note, frame: int) -> int:
        """The note's last frame above the threshold before `frame`, its start when none: where the offline walk
        stops when a later note has cleared the pitch from `frame` on. The note still sounds at `frame`, so that
        frame is within energy_tolerance before it, where `_forget` keeps `above`."""
        i = bisect_left(note.above, frame)
        return note.above[i - 1] if i else note.start

    def _melodia_step(self, frame: int) -> None:
        if self._segments is None:
            return
        free = [p for p in self._previous_above if self._cover[p + 1] == 0]
        for segment in self._segments.step(frame, free, self._history.row(frame)):
            self._start_melodia(segment, frame)

    def _start_melodia(self, segment: Segment, frame: int) -> None:
        pitch, start = segment.pitch, segment.start
        self._emit(start, _START, NoteStart(start, pitch + MIDI_OFFSET, self._velocity(pitch, start, frame + 1)))
        self._sounding[pitch] = _Note(start, pitch, segment.last_above, [segment.last_above])
        self._add_cover(pitch, 1)

    def _velocity(self, pitch: int, start: int, stop: int) -> int:
        """127 × the mean frame posterior over frames [start, stop) (at least two), as a MIDI velocity."""
        stop = min(max(stop, start + 2), self._history.end)
        amplitude = float(self._history.column(pitch, start, stop).sum()) / (stop - start)
        return min(127, max(1, round(127 * amplitude)))

    def _add_cover(self, pitch: int, delta: int) -> None:
        self._cover[pitch] += delta
        self._cover[pitch + 1] += delta
        self._cover[pitch + 2] += delta

    def _emit(self, frame: int, order: int, event: NoteStart | NoteEnd) -> None:
        self._events.append((frame, order, len(self._events), event))

    def _take_events(self) -> list[NoteStart | NoteEnd]:
        events = [item[3] for item in sorted(self._events, key=lambda item: item[:3])]
        self._events = []
        return events

    # -- horizons, memory, interim ------------------------------------------------------------------------------

    def _onset_horizon(self) -> int:
        """Unseen candidates and new segments start at frame n − 1 or later; undecided ones at their start."""
        horizon = max(self._n - 1, 0)
        for candidate in self._pending:
            horizon = min(horizon, candidate.start)
        if self._segments is not None:
            earliest = self._segments.earliest_start()
            if earliest is not None:
                horizon = min(horizon, earliest)
        return horizon

    def _offset_horizon(self, onset_horizon: int) -> int:
        offset_horizon = onset_horizon + 1  # a note not started yet ends after its start
        for note in self._sounding.values():
            # Its earliest possible end: after its last frame above so far, or, cut by a later onset (at
            # onset_horizon or after, and after its start), after its last frame above before that onset.
            cut = max(onset_horizon, note.start + 1)
            end = note.last_above + 1 if note.last_above < cut else self._last_above_before(note, cut) + 1
            offset_horizon = min(offset_horizon, end)
        return min(offset_horizon, self._n)

    def _forget(self, onset_horizon: int) -> None:
        """Drop what no undecided note can read: velocities read from onset_horizon on, cuts and the offset horizon
        up to energy_tolerance frames before onset_horizon or before the end."""
        tolerance = self.config.energy_tolerance
        keep = min(onset_horizon, self._n - tolerance) - tolerance - 1
        self._history.drop_before(keep)
        for note in (*self._sounding.values(), *self._pending):
            if note.above and note.above[0] < keep:
                del note.above[: bisect_left(note.above, keep)]

    def _interim(self, note: np.ndarray, onset: np.ndarray) -> list[NoteStart]:
        """Undecided candidates, and the candidates the provisional frames reveal, that have sounded past their
        onset in the frames seen (unless confirm_frames is 0), with velocities over every frame seen from their
        onset. A best guess, not the rules in full: running them over the tail on a copy of the tracker at every
        call would cost about twice the tracker itself."""
        tail_t, tail_p = self._peaks.copy().push(note, onset)
        t = np.concatenate(([c.start for c in self._pending], tail_t)).astype(np.intp)
        p = np.concatenate(([c.pitch for c in self._pending], tail_p)).astype(np.intp)
        if len(t) == 0:
            return []
        first = int(t.min())
        seen = np.concatenate((self._history.rows(first, self._n), note))
        at = t - first
        if self.config.confirm_frames > 0:
            # Without this, 40 % of interim notes on simulated tails were never committed; with it, 17 %.
            above = np.cumsum(seen >= self.config.frame_threshold, axis=0)
            grown = above[-1, p] > above[at, p]
            t, p, at = t[grown], p[grown], at[grown]
        total = np.cumsum(seen, axis=0)
        before = np.where(at > 0, total[np.maximum(at - 1, 0), p], 0)
        velocity = np.clip(np.rint(127 * (total[-1, p] - before) / (len(seen) - at)), 1, 127).astype(int)
        interim = [
            NoteStart(a, b + MIDI_OFFSET, v) for a, b, v in zip(t.tolist(), p.tolist(), velocity.tolist(), strict=True)
        ]
        return sorted(interim, key=lambda n: (n.frame, n.pitch))


def _latest_first(candidate: _Note) -> tuple[int, int]:
    """Upstream's order: onsets latest first, then highest pitch first (the later note wins)."""
    return (-candidate.start, -candidate.pitch)


def _posteriors(note: np.ndarray, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    note = np.asarray(note, dtype=np.float32)
    onset = np.asarray(onset, dtype=np.float32)
    if note.ndim != 2 or note.shape[1] != N_PITCHES or note.shape != onset.shape:
        raise ValueError(f"posteriors must both be (frames, {N_PITCHES}); got {note.shape} and {onset.shape}")
    return note, onset


def _by_frame(t: np.ndarray, p: np.ndarray, n_frames: int) -> list[list[int]]:
    """Pitch bins grouped by frame 0 … n_frames − 1 (t sorted ascending)."""
    if len(t) == 0:
        return [[] for _ in range(n_frames)]
    if n_frames == 1:
        return [p.tolist()]
    bounds = np.searchsorted(t, np.arange(n_frames + 1)).tolist()
    pitches = p.tolist()
    return [pitches[bounds[i] : bounds[i + 1]] for i in range(n_frames)]
