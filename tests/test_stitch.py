"""The commit policy: synthetic notes cut into overlapping windows come out exactly as they went in."""

from __future__ import annotations

import random

import hypothesis.strategies as st
from hypothesis import given, settings

from streamer.notes import Note, WindowNote
from streamer.protocol import NoteOff, NoteOn
from streamer.stitch import Stitcher, events_to_notes
from tests.windowing import assert_event_invariants, perfect_view

GRID = 1 / 128  # dyadic times keep float sums exact, so boundary cases are hit exactly


def stitch(truth: list[Note], window: float, hop: float, margin: float, duration: float) -> list:
    """Drive a Stitcher the way a session does: regular windows, then tail windows, then close."""
    stitcher = Stitcher()
    events = []
    start = 0.0
    while True:
        until = start + window - margin
        last = until >= duration
        view = perfect_view(truth, start, window)
        events += stitcher.commit(start, view, duration if last else until)
        if last:
            break
        start += hop
    events += stitcher.close(duration)
    return events


@st.composite
def note_sets(draw: st.DrawFn) -> tuple[list[Note], float]:
    steps = draw(st.integers(200, 1500))  # duration in grid steps
    duration = steps * GRID
    notes: list[Note] = []
    for key in draw(
        st.lists(st.tuples(st.integers(40, 80), st.integers(0, 3), st.booleans()), max_size=6, unique=True)
    ):
        pitch, program, is_drum = key
        t = draw(st.integers(0, 40))
        while t < steps:
            length = draw(st.integers(1, 400))
            end = min(steps, t + length)
            notes.append(Note(t * GRID, end * GRID, pitch, draw(st.integers(1, 127)), program, is_drum))
            t = end + draw(st.integers(0, 80))  # 0: the same note struck again right as it ends
    notes.sort(key=lambda n: (n.onset, n.pitch, n.program, n.is_drum))
    return notes, duration


@given(
    data=note_sets(),
    window_steps=st.integers(64, 300),
    hop_frac=st.floats(0.1, 0.9),
    margin_frac=st.floats(0.0, 0.4),
)
@settings(max_examples=300, deadline=None)
def test_perfect_windows_give_back_the_truth(data, window_steps, hop_frac, margin_frac) -> None:
    truth, duration = data
    window = window_steps * GRID
    margin = int(window_steps * margin_frac) * GRID
    hop = max(1, int((window_steps - margin / GRID) * hop_frac)) * GRID
    events = stitch(truth, window, hop, margin, duration)
    assert_event_invariants(events)
    got = events_to_notes(events)
    key = lambda n: (n.onset, n.pitch, n.program, n.is_drum)  # noqa: E731
    assert sorted(got, key=key) == sorted(truth, key=key)


def test_held_note_across_many_windows_is_one_note() -> None:
    truth = [Note(0.25, 9.5, 60, 90)]
    events = stitch(truth, window=2.0, hop=0.5, margin=0.25, duration=10.0)
    assert [type(e) for e in events] == [NoteOn, NoteOff]
    assert (events[0].time, events[1].time) == (0.25, 9.5)


def test_note_at_region_boundary_is_neither_lost_nor_duplicated() -> None:
    # Regions with window 2, hop 0.5, margin 0.25: [0, 1.75), [1.75, 2.25), ... onsets right on the boundaries.
    truth = [Note(1.75, 2.0, 60), Note(2.25, 2.5, 62), Note(1.75 - GRID, 1.75, 64)]
    events = stitch(truth, window=2.0, hop=0.5, margin=0.25, duration=4.0)
    assert sorted((n.onset, n.pitch) for n in events_to_notes(events)) == [(1.75 - GRID, 64), (1.75, 60), (2.25, 62)]


def test_repeated_note_ends_before_it_starts_again() -> None:
    truth = [Note(1.0, 1.75, 60), Note(1.75, 2.5, 60)]
    events = stitch(truth, window=2.0, hop=0.5, margin=0.25, duration=3.0)
    assert [(type(e).__name__, e.time) for e in events] == [
        ("NoteOn", 1.0),
        ("NoteOff", 1.75),
        ("NoteOn", 1.75),
        ("NoteOff", 2.5),
    ]


def test_note_a_new_window_no_longer_sees_ends_at_the_horizon() -> None:
    stitcher = Stitcher()
    first = stitcher.commit(0.0, [WindowNote(60, 0.5, None)], until=1.5)
    second = stitcher.commit(0.5, [], until=2.0)
    assert [(type(e).__name__, e.time) for e in first + second] == [("NoteOn", 0.5), ("NoteOff", 1.5)]


def test_continuation_tolerance_absorbs_onset_jitter() -> None:
    stitcher = Stitcher(continuation_tolerance=0.05)
    events = stitcher.commit(0.0, [WindowNote(60, 0.5, None)], until=1.5)
    # The next window places the same held note's onset 20 ms after the horizon: still one note.
    events += stitcher.commit(0.5, [WindowNote(60, 1.02, 2.0)], until=3.0)
    events += stitcher.close(3.0)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 0.5), ("NoteOff", 2.5)]


def test_close_ends_every_sounding_note_at_the_end() -> None:
    stitcher = Stitcher()
    events = stitcher.commit(0.0, [WindowNote(60, 0.5, None), WindowNote(64, 0.75, None)], until=1.0)
    events += stitcher.close(1.25)
    assert_event_invariants(events)
    assert [e.time for e in events if isinstance(e, NoteOff)] == [1.25, 1.25]


def test_flush_style_commit_keeps_notes_open_and_later_windows_continue_them() -> None:
    stitcher = Stitcher()
    events = stitcher.commit(0.0, [WindowNote(60, 0.25, None)], until=0.75)  # flush at 0.75 s
    events += stitcher.commit(0.0, [WindowNote(60, 0.25, None)], until=0.5)  # an older window: nothing to add
    events += stitcher.commit(0.25, [WindowNote(60, 0.0, 1.0)], until=1.5)
    events += stitcher.close(2.0)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 0.25), ("NoteOff", 1.25)]


def jittered(view: list[WindowNote], rng: random.Random, jitter: float) -> list[WindowNote]:
    """A window's view as a frame model gives it: every edge it sees moved by up to ±jitter."""
    move = lambda t: None if t is None else t + rng.uniform(-jitter, jitter)  # noqa: E731
    return [WindowNote(n.pitch, move(n.onset), move(n.offset), n.velocity, n.program, n.is_drum) for n in view]


@given(data=note_sets(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_jittered_windows_give_every_note_once(data, seed) -> None:
    truth, duration = data
    tolerance, jitter = 4 * GRID, GRID
    # Keep notes apart by more than the tolerance: closer repeats are ambiguous once edges jitter.
    truth = [n for n in truth if n.offset - n.onset > 3 * tolerance]
    kept: list[Note] = []
    for n in truth:
        if all(k.key != n.key or n.onset - k.offset > 3 * tolerance for k in kept):
            kept.append(n)
    rng = random.Random(seed)
    window, hop, margin = 2.0, 0.5, 0.25
    stitcher = Stitcher(continuation_tolerance=tolerance)
    events, start = [], -(window - margin - hop)
    while True:
        until = start + window - margin
        view = jittered(perfect_view(kept, start, window), rng, jitter)
        events += stitcher.commit(start, view, min(until, duration))
        if until >= duration:
            break
        start += hop
    events += stitcher.close(duration)
    assert_event_invariants(events)
    got = events_to_notes(events)
    assert len(got) == len(kept), f"{got} vs {kept}"
    for g, t in zip(
        sorted(got, key=lambda n: (n.key, n.onset)), sorted(kept, key=lambda n: (n.key, n.onset)), strict=True
    ):
        assert g.key == t.key and abs(g.onset - t.onset) <= tolerance


def test_onset_jittering_across_a_region_boundary_is_kept_once() -> None:
    # Window A places the onset 3 ms after its region's end (so does not commit it); window B places the same onset
    # 20 ms before its region's start. Without the tolerance the note would fall between the two regions.
    stitcher = Stitcher(continuation_tolerance=0.035)
    events = stitcher.commit(0.0, [WindowNote(72, 1.503, None)], until=1.5)
    events += stitcher.commit(0.5, [WindowNote(72, 0.98, None)], until=2.0)
    events += stitcher.close(3.0)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 1.5), ("NoteOff", 3.0)]
    # And an onset a window already committed is not started again by the next one.
    stitcher = Stitcher(continuation_tolerance=0.035)
    events = stitcher.commit(0.0, [WindowNote(60, 1.48, 1.49)], until=1.5)
    events += stitcher.commit(0.5, [WindowNote(60, 0.99, 1.0)], until=2.0)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 1.48), ("NoteOff", 1.49)]
