"""The online note tracker: its rules on hand-made posteriors, agreement with the offline note creation where the
rules coincide, and its invariants (block sizes, horizons, pairing, bounded memory) on random posteriors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from streamer.models.basic_pitch.note_tracker import (
    N_PITCHES,
    Decisions,
    NoteEnd,
    NoteStart,
    NoteTracker,
    TrackerConfig,
)
from streamer.models.basic_pitch.posteriors import MIDI_OFFSET, NoteRules, window_notes

T = 11  # energy_tolerance
M = 11  # min_note_frames
PLAIN = {"infer_onsets": False, "melodia_trick": False}


@dataclass(frozen=True)
class Sketch:
    """A note drawn into posteriors: frame posterior `level` over [start, start + length) at `bin`, and an onset
    posterior peak at `start` unless `onset` is 0 (energy without an onset, for the melodia trick)."""

    bin: int
    start: int
    length: int
    level: float = 0.8
    onset: float = 0.9


def draw(n_frames: int, sketches: Sequence[Sketch]) -> tuple[np.ndarray, np.ndarray]:
    note = np.zeros((n_frames, N_PITCHES), dtype=np.float32)
    onset = np.zeros((n_frames, N_PITCHES), dtype=np.float32)
    for s in sketches:
        note[s.start : s.start + s.length, s.bin] = np.maximum(note[s.start : s.start + s.length, s.bin], s.level)
        if s.onset > 0:
            onset[s.start, s.bin] = max(onset[s.start, s.bin], s.onset)
    return note, onset


def run(
    note: np.ndarray, onset: np.ndarray, config: TrackerConfig, blocks: Sequence[int] | None = None
) -> list[tuple[int, Decisions]]:
    """Push the frames in blocks (default: one frame at a time), then finish. Returns (frames pushed, decisions)
    for every call; finish is reported with frames pushed + 1."""
    tracker = NoteTracker(config)
    out = []
    pos = 0
    for size in blocks or [1] * len(note):
        out.append((pos + size, tracker.push(pos, note[pos : pos + size], onset[pos : pos + size])))
        pos += size
    out.append((len(note) + 1, tracker.finish()))
    return out


def events(calls: Sequence[tuple[int, Decisions]]) -> list[NoteStart | NoteEnd]:
    return [e for _, d in calls for e in d.events]


def when(calls: Sequence[tuple[int, Decisions]], event: NoteStart | NoteEnd) -> int:
    """Frames pushed when `event` was returned."""
    return next(pushed for pushed, d in calls if event in d.events)


def notes(calls: Sequence[tuple[int, Decisions]]) -> list[tuple[int, int, int, int]]:
    """(start, end, MIDI pitch, velocity) of every note, pairing each start with its pitch's next end; a pitch's
    notes must not overlap."""
    sounding: dict[int, NoteStart] = {}
    last_end: dict[int, int] = {}
    found = []
    for e in events(calls):
        if isinstance(e, NoteStart):
            assert e.pitch not in sounding, f"{e}: pitch already sounding"
            assert e.frame >= last_end.get(e.pitch, 0), f"{e}: starts before the pitch's previous note ended"
            sounding[e.pitch] = e
        else:
            start = sounding.pop(e.pitch)
            last_end[e.pitch] = e.frame
            found.append((start.frame, e.frame, e.pitch, start.velocity))
    assert not sounding, f"never ended: {sounding}"
    return sorted(found)


def spans(calls: Sequence[tuple[int, Decisions]]) -> list[tuple[int, int, int]]:
    return [(s, e, p) for s, e, p, _ in notes(calls)]


# -- the rules on hand-made posteriors ---------------------------------------------------------------------------


@pytest.mark.parametrize("confirm", [0, 2, 4, 11])
def test_onset_committed_after_confirm_frames_and_end_after_the_gap(confirm: int) -> None:
    note, onset = draw(100, [Sketch(40, 20, 30)])
    calls = run(note, onset, TrackerConfig(confirm_frames=confirm, **PLAIN))
    assert spans(calls) == [(20, 50, 40 + MIDI_OFFSET)]
    start = next(e for e in events(calls) if isinstance(e, NoteStart))
    end = next(e for e in events(calls) if isinstance(e, NoteEnd))
    # The peak at 20 is seen with frame 21; the note has sounded `confirm` frames past it once frame 20 + confirm is.
    assert when(calls, start) == 20 + max(confirm, 1) + 1
    # Last frame above 49, then T frames below: decided with frame 49 + T.
    assert when(calls, end) == 49 + T + 1


@pytest.mark.parametrize(("confirm", "kept_from"), [(11, 12), (4, 5), (1, 2)])
def test_a_note_must_sound_confirm_frames_past_its_onset(confirm: int, kept_from: int) -> None:
    config = TrackerConfig(confirm_frames=confirm, **PLAIN)
    for length in (kept_from - 1, kept_from):
        note, onset = draw(80, [Sketch(40, 20, length)])
        kept = spans(run(note, onset, config))
        assert kept == ([(20, 20 + length, 61)] if length >= kept_from else []), length


@pytest.mark.parametrize("length", [11, 12, 13])
def test_full_confirmation_is_the_offline_length_rule(length: int) -> None:
    note, onset = draw(80, [Sketch(40, 20, length)])
    offline = [(round(n.onset / 0.01), n.pitch) for n in window_notes(note, onset, 0.01, NoteRules(**PLAIN))]
    online = [(s, p) for s, _, p in spans(run(note, onset, TrackerConfig(confirm_frames=M, **PLAIN)))]
    assert online == offline


def test_a_repeated_note_ends_where_it_starts_again() -> None:
    note, onset = draw(120, [Sketch(40, 20, 50), Sketch(40, 40, 30)])
    calls = run(note, onset, TrackerConfig(confirm_frames=4, **PLAIN))
    assert spans(calls) == [(20, 40, 61), (40, 70, 61)]
    assert [type(e).__name__ for e in events(calls)] == ["NoteStart", "NoteEnd", "NoteStart", "NoteEnd"]


def test_a_cut_note_ends_after_its_last_frame_above_before_the_new_onset() -> None:
    note, onset = draw(120, [Sketch(40, 20, 15), Sketch(40, 40, 30)])  # low over 35..39, fewer than T frames
    assert spans(run(note, onset, TrackerConfig(confirm_frames=4, **PLAIN))) == [(20, 35, 61), (40, 70, 61)]


def test_a_later_neighbour_onset_cuts_a_sounding_note() -> None:
    note, onset = draw(120, [Sketch(40, 20, 60), Sketch(41, 50, 30)])
    assert spans(run(note, onset, TrackerConfig(confirm_frames=4, **PLAIN))) == [(20, 50, 61), (50, 80, 62)]


def test_neighbours_starting_together_keep_the_higher_one_like_upstream() -> None:
    note, onset = draw(100, [Sketch(40, 20, 30), Sketch(41, 20, 30), Sketch(50, 20, 30)])
    assert spans(run(note, onset, TrackerConfig(confirm_frames=2, **PLAIN))) == [(20, 50, 62), (20, 50, 71)]


def test_a_rejected_candidate_does_not_cut_an_earlier_note() -> None:
    # A neighbour's onset peak 5 frames later, without energy, is never committed, so it cuts nothing.
    note, onset = draw(100, [Sketch(40, 20, 30), Sketch(41, 25, 1, level=0.2)])
    assert spans(run(note, onset, TrackerConfig(confirm_frames=4, **PLAIN))) == [(20, 50, 61)]


def test_melodia_trick_starts_energy_without_onset_at_its_first_frame() -> None:
    sketches = [Sketch(40, 30, 30, level=0.6, onset=0), Sketch(60, 30, M, level=0.6, onset=0)]
    note, onset = draw(100, sketches)
    calls = run(note, onset, TrackerConfig(confirm_frames=2, infer_onsets=False))
    assert spans(calls) == [(30, 60, 61)]  # the second lasts only M frames: dropped, as offline
    start = next(e for e in events(calls) if isinstance(e, NoteStart))
    # Longer than M once frame 30 + M is above; judged one frame late.
    assert when(calls, start) == 30 + M + 2
    assert spans(run(note, onset, TrackerConfig(confirm_frames=2, **PLAIN))) == []


def test_melodia_leaves_the_neighbourhood_of_onset_notes_alone() -> None:
    # Energy next to a sounding note (leakage into the neighbouring bin) makes no note.
    note, onset = draw(100, [Sketch(40, 20, 40), Sketch(41, 22, 35, level=0.5, onset=0)])
    assert spans(run(note, onset, TrackerConfig(confirm_frames=2, infer_onsets=False))) == [(20, 60, 61)]


def test_melodia_does_not_bridge_a_note_at_its_own_pitch() -> None:
    # Energy at frame 2, a short onset note at 4 (cut at 5 by a neighbour, itself cut at 6), energy again from 8:
    # the segment begun at 2 must not become a note overlapping the one at 4.
    sketches = [
        Sketch(40, 2, 1, level=0.5, onset=0),
        Sketch(40, 4, 2),
        Sketch(41, 5, 2),
        Sketch(42, 6, 2),
        Sketch(40, 8, 23, level=0.6, onset=0),
    ]
    note, onset = draw(60, sketches)
    calls = run(note, onset, TrackerConfig(confirm_frames=0, infer_onsets=False))
    assert spans(calls) == [(4, 5, 61), (5, 6, 62), (6, 8, 63), (8, 31, 61)]


def test_inferred_onsets_come_from_a_rise_of_the_frame_posterior() -> None:
    # The first note (onset posterior 0.9) sets the scale; the second has no onset posterior, only a rise.
    note, onset = draw(120, [Sketch(40, 20, 30), Sketch(60, 70, 30, onset=0)])
    inferred = TrackerConfig(confirm_frames=2, infer_onsets=True, melodia_trick=False)
    assert spans(run(note, onset, inferred)) == [(20, 50, 61), (70, 100, 81)]
    assert spans(run(note, onset, TrackerConfig(confirm_frames=2, **PLAIN))) == [(20, 50, 61)]


def test_velocity_is_the_mean_posterior_from_onset_to_commit() -> None:
    note, onset = draw(80, [Sketch(40, 20, 30)])
    note[20:50, 40] = np.linspace(0.9, 0.4, 30)
    [(_, _, _, velocity)] = notes(run(note, onset, TrackerConfig(confirm_frames=4, **PLAIN)))
    assert velocity == round(127 * float(note[20:25, 40].mean()))


def test_finish_ends_sounding_notes_and_drops_undecided_candidates() -> None:
    note, onset = draw(60, [Sketch(40, 20, 40), Sketch(50, 57, 3)])
    tracker = NoteTracker(TrackerConfig(confirm_frames=4, **PLAIN))
    pushed = tracker.push(0, note, onset)
    assert pushed.events == [NoteStart(20, 61, pushed.events[0].velocity)]
    assert [n.pitch for n in pushed.interim] == [71]  # undecided
    done = tracker.finish()
    assert done.events == [NoteEnd(60, 61)]
    assert (done.onset_horizon, done.offset_horizon) == (60, 60)


def test_bad_pushes_are_refused() -> None:
    note, onset = draw(10, [])
    tracker = NoteTracker(TrackerConfig())
    with pytest.raises(ValueError, match="contiguous"):
        tracker.push(3, note, onset)
    with pytest.raises(ValueError, match="frames, 88"):
        tracker.push(0, note[:, :80], onset[:, :80])
    with pytest.raises(ValueError, match="both"):
        tracker.push(0, note, onset, provisional_note=note)
    tracker.push(0, note, onset)
    tracker.finish()
    with pytest.raises(ValueError, match="after finish"):
        tracker.push(10, note, onset)
    with pytest.raises(ValueError, match="confirm_frames"):
        TrackerConfig(confirm_frames=12)


def test_interim_shows_undecided_and_provisional_onsets_without_deciding_them() -> None:
    # A third onset peak, at 24, never sounds: not shown.
    note, onset = draw(60, [Sketch(40, 20, 30), Sketch(50, 26, 30), Sketch(60, 24, 1, level=0.2)])
    config = TrackerConfig(confirm_frames=4, **PLAIN)
    tracker = NoteTracker(config)
    plain = NoteTracker(config)
    # Final frames up to 22 (the onset at 20 is seen, not yet confirmed), provisional frames 22..30 (onsets at 24
    # and 26).
    with_tail = tracker.push(0, note[:22], onset[:22], note[22:30], onset[22:30])
    without = plain.push(0, note[:22], onset[:22])
    assert with_tail.events == without.events == []
    assert [(n.frame, n.pitch) for n in without.interim] == [(20, 61)]
    assert [(n.frame, n.pitch) for n in with_tail.interim] == [(20, 61), (26, 71)]
    assert all(n.frame >= with_tail.onset_horizon for n in with_tail.interim)
    # The next final frames decide exactly as if no provisional tail had been seen.
    assert tracker.push(22, note[22:], onset[22:]).events == plain.push(22, note[22:], onset[22:]).events


# -- agreement with the offline procedure where the rules coincide -----------------------------------------------


@st.composite
def separated_sketches(draw_: st.DrawFn) -> tuple[int, list[Sketch]]:
    """Notes apart enough in time or pitch that no offline note cuts or clears another, away from the edges."""
    n_frames = 300
    sketches: list[Sketch] = []
    for _ in range(draw_(st.integers(1, 8))):
        s = Sketch(
            bin=draw_(st.integers(0, N_PITCHES - 1)),
            start=draw_(st.integers(T + 3, n_frames - 80)),
            length=draw_(st.integers(1, 50)),
            level=draw_(st.floats(0.35, 0.95)),
            onset=draw_(st.sampled_from([0.0, 0.6, 0.9])),
        )
        clear = all(
            abs(s.bin - o.bin) > 2 or s.start > o.start + o.length + 2 * T or o.start > s.start + s.length + 2 * T
            for o in sketches
        )
        if clear:
            sketches.append(s)
    return n_frames, sketches


@settings(max_examples=60, deadline=None)
@given(separated_sketches())
def test_full_confirmation_matches_offline_notes_when_nothing_interacts(case: tuple[int, list[Sketch]]) -> None:
    n_frames, sketches = case
    note, onset = draw(n_frames, sketches)
    rules = NoteRules(infer_onsets=False, melodia_trick=True)
    offline = sorted(
        (round(n.onset / 0.01), round(n.offset / 0.01), n.pitch) for n in window_notes(note, onset, 0.01, rules)
    )
    config = TrackerConfig(confirm_frames=M, infer_onsets=False, melodia_trick=True)
    assert spans(run(note, onset, config, [n_frames])) == offline


# -- invariants on random posteriors -----------------------------------------------------------------------------


@st.composite
def streams(draw_: st.DrawFn) -> tuple[np.ndarray, np.ndarray, TrackerConfig]:
    """Random posteriors crowded into a few neighbouring bins (so notes interact), with noise and dips."""
    n_frames = draw_(st.integers(1, 160))
    sketches = [
        Sketch(
            bin=draw_(st.integers(40, 45)),
            start=draw_(st.integers(0, max(0, n_frames - 1))),
            length=draw_(st.integers(1, 40)),
            level=draw_(st.floats(0.1, 1.0)),
            onset=draw_(st.sampled_from([0.0, 0.3, 0.55, 0.9])),
        )
        for _ in range(draw_(st.integers(0, 14)))
    ]
    note, onset = draw(n_frames, sketches)
    rng = np.random.default_rng(draw_(st.integers(0, 2**32 - 1)))
    noise = draw_(st.sampled_from([0.0, 0.2, 0.45]))
    note[:, 38:48] += (noise * rng.random((n_frames, 10))).astype(np.float32)
    onset[:, 38:48] += (noise * rng.random((n_frames, 10))).astype(np.float32)
    config = TrackerConfig(
        confirm_frames=draw_(st.integers(0, M)),
        infer_onsets=draw_(st.booleans()),
        melodia_trick=draw_(st.booleans()),
    )
    return np.clip(note, 0, 1), np.clip(onset, 0, 1), config


@st.composite
def partitions(draw_: st.DrawFn, n: int) -> list[int]:
    """Block sizes adding up to n: single frames, one block, or random sizes."""
    kind = draw_(st.sampled_from(["ones", "whole", "random"]))
    if kind == "ones" or n == 0:
        return [1] * n
    if kind == "whole":
        return [n]
    sizes = []
    while sum(sizes) < n:
        sizes.append(min(draw_(st.integers(1, 12)), n - sum(sizes)))
    return sizes


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_decisions_do_not_depend_on_block_sizes(stream: tuple, data: st.DataObject) -> None:
    note, onset, config = stream
    blocks = data.draw(partitions(len(note)))
    one_by_one = run(note, onset, config)
    blocked = run(note, onset, config, blocks)
    assert notes(blocked) == notes(one_by_one)
    # Each event comes back in the block holding the frame that decided it (a call sorts its events by frame, ends
    # first), with the same horizons as frame by frame.
    by_frame = {pushed: d for pushed, d in one_by_one}
    previous = 0
    for pushed, d in blocked:
        decided = [e for p, dd in one_by_one if previous < p <= pushed for e in dd.events]
        assert d.events == sorted(decided, key=lambda e: (e.frame, isinstance(e, NoteStart)))
        assert (d.onset_horizon, d.offset_horizon) == (by_frame[pushed].onset_horizon, by_frame[pushed].offset_horizon)
        previous = pushed


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_invariants(stream: tuple, data: st.DataObject) -> None:
    note, onset, config = stream
    calls = run(note, onset, config, data.draw(partitions(len(note))))
    notes(calls)  # each start gets exactly one later end at its pitch, and a pitch sounds once at a time
    onset_horizon = offset_horizon = 0
    for pushed, d in calls:
        for e in d.events:
            assert e.frame >= (onset_horizon if isinstance(e, NoteStart) else offset_horizon), e
        order = [(e.frame, isinstance(e, NoteStart)) for e in d.events]
        assert order == sorted(order), "frames non-decreasing, ends before starts at one frame"
        assert d.onset_horizon >= onset_horizon and d.offset_horizon >= offset_horizon
        onset_horizon, offset_horizon = d.onset_horizon, d.offset_horizon
        frames = min(pushed, len(note))
        assert onset_horizon >= frames - config.lag_frames and offset_horizon <= max(onset_horizon + 1, frames)
        assert all(n.frame >= onset_horizon for n in d.interim)
    assert onset_horizon == offset_horizon == len(note)
    for start, end, pitch, velocity in notes(calls):
        assert end > start and 1 <= velocity <= 127 and MIDI_OFFSET <= pitch < MIDI_OFFSET + N_PITCHES


@settings(max_examples=60, deadline=None)
@given(streams(), st.data())
def test_provisional_frames_change_nothing_but_interim(stream: tuple, data: st.DataObject) -> None:
    note, onset, config = stream
    blocks = data.draw(partitions(len(note)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    tracker = NoteTracker(config)
    reference = run(note, onset, config, blocks)
    pos = 0
    for size, (_, expected) in zip(blocks, reference, strict=False):
        tail = rng.random((data.draw(st.integers(0, 15)), N_PITCHES)).astype(np.float32)
        got = tracker.push(pos, note[pos : pos + size], onset[pos : pos + size], tail, tail[::-1].copy())
        assert (got.events, got.onset_horizon, got.offset_horizon) == (
            expected.events,
            expected.onset_horizon,
            expected.offset_horizon,
        )
        assert all(n.frame >= got.onset_horizon and 1 <= n.velocity <= 127 for n in got.interim)
        pos += size
    assert tracker.finish().events == reference[-1][1].events


def test_memory_stays_bounded_on_a_long_stream() -> None:
    rng = np.random.default_rng(1)
    period = 400
    sketches = [Sketch(int(rng.integers(30, 60)), int(rng.integers(0, period - 40)), int(rng.integers(5, 40)))]
    sketches += [Sketch(int(rng.integers(30, 60)), int(rng.integers(0, period - 40)), 30) for _ in range(20)]
    note, onset = draw(period, sketches)
    note[:, 70] = 0.9  # one note held for the whole stream
    onset[1, 70] = 0.9
    config = TrackerConfig(confirm_frames=4)
    tracker = NoteTracker(config)
    held = []
    for lap in range(40):
        for pos in range(0, period, 7):
            tracker.push(lap * period + pos, note[pos : pos + 7], onset[pos : pos + 7])
            held.append(tracker.held_frames)
    bound = config.lag_frames + 2 * config.energy_tolerance + 1 + 7
    assert max(held) <= bound
    assert tracker.finish().events[-1] == NoteEnd(40 * period, 70 + MIDI_OFFSET)
