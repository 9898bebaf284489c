"""Decoding Transkun's scores: the interval search against brute force, the refinement's continuous-Bernoulli
mean against torch's, and intervals → window notes and pedals (edges, pedal mapping, velocities)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from streamer.models.transkun.decoding import (
    PEDAL_VELOCITY,
    Interval,
    best_intervals,
    continuous_bernoulli_mean,
    refinement,
    trace,
    window_notes,
)
from streamer.models.transkun.spec import FRAME_S, TRACK_CODES
from streamer.notes import SOFT_PEDAL, SUSTAIN_PEDAL


def paths(frame: int, last: int) -> Iterator[list[tuple[int, int]]]:
    """Every way from `frame` to `last`: each step skips one frame ((f, f + 1) as a skip is written (f, -1)) or
    takes an interval [f, e], e > f, and continues from e."""
    if frame == last:
        yield []
        return
    for rest in paths(frame + 1, last):
        yield [(frame, -1), *rest]
    for end in range(frame + 1, last + 1):
        for rest in paths(end, last):
            yield [(frame, end), *rest]


def brute_force(score: np.ndarray, single: np.ndarray) -> list[tuple[int, int]]:
    """The best path by enumeration: its intervals score score[b, e]; a one-frame interval is taken on every frame
    the path stands on (not inside an interval) where its score is positive."""
    last = len(single) - 1
    best, chosen = -np.inf, []
    for path in paths(0, last):
        stands = [f for f, _ in path] + [last]
        value = sum(score[b, e] for b, e in path if e >= 0) + sum(max(0.0, single[f]) for f in stands)
        if value > best:
            intervals = [(b, e) for b, e in path if e >= 0] + [(f, f) for f in stands if single[f] > 0]
            best, chosen = value, sorted(intervals)
    return chosen


@pytest.mark.parametrize("seed", range(40))
def test_the_search_finds_the_best_chain(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chains, frames, scale = 3, int(rng.integers(2, 8)), 0.25
    products = rng.normal(0.0, 1.0, (chains, frames, frames)).astype(np.float32)
    single = rng.normal(-0.5, 1.0, (chains, frames)).astype(np.float32)
    choice, taken = best_intervals(torch.from_numpy(products), torch.from_numpy(single), scale)
    for chain in range(chains):
        length = np.abs(np.arange(frames)[None, :] - np.arange(frames)[:, None])
        score = products[chain].astype(np.float64) * length * scale
        assert sorted(trace(choice, taken, chain)) == brute_force(score, single[chain].astype(np.float64))


def test_trace_follows_skips_singles_and_shared_endpoints() -> None:
    # Frames 0..6: [0, 2] then [2, 5] (sharing frame 2), one-frame intervals on 2 and 6.
    choice = np.array([[2, -1, 5, -1, -1, -1]])
    taken = np.array([[False, False, True, False, False, False, True]])
    assert trace(choice, taken, 0) == [(0, 2), (2, 2), (2, 5), (6, 6)]


def test_continuous_bernoulli_mean_is_torchs() -> None:
    logits = torch.cat([torch.linspace(-30, 30, 601), torch.tensor([0.0, 1e-4, -1e-4, 0.003, -0.003, 0.005, -0.005])])
    expected = torch.distributions.ContinuousBernoulli(logits=logits).mean
    assert torch.allclose(continuous_bernoulli_mean(logits), expected, atol=1e-6)
    shift, present = refinement(torch.tensor([[0.0, 5.0, 1.0, -1.0]]))
    assert shift[0, 0] == pytest.approx(0.0, abs=1e-6)  # p = ½: the mean is ½, no shift
    assert shift[0, 1] == pytest.approx((float(expected[350]) - 0.5) / 0.99)  # logit 5: later by ~0.3 frame
    assert present.tolist() == [[True, False]]


SUSTAIN, SOFT, C4 = TRACK_CODES.index(-SUSTAIN_PEDAL), TRACK_CODES.index(-SOFT_PEDAL), TRACK_CODES.index(60)


def test_window_notes_edges_pedals_and_velocities() -> None:
    last = 100
    intervals = [
        Interval(0, SUSTAIN, 0, 40),  # held when the window began, no onset seen there
        Interval(0, SOFT, 10, last),  # still held when it ended
        Interval(0, C4, 0, 5),  # begins on frame 0 but the model saw its onset there
        Interval(0, C4, 5, 9),  # struck again: the refined onset may not go before the previous offset
        Interval(0, C4, 20, last),  # reaches the last frame and the model saw its offset there
    ]
    velocity = np.array([64, 10, 0, 90, 70])
    shift = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.3], [-0.5, 0.0], [0.0, -0.25]])
    present = np.array([[False, False], [False, False], [True, False], [False, False], [False, True]])
    notes = window_notes(intervals, velocity, shift, present, last)
    sustain, soft, first, second, third = notes
    assert (sustain.pitch, sustain.control, sustain.velocity) == (0, SUSTAIN_PEDAL, PEDAL_VELOCITY)
    assert sustain.onset is None and sustain.offset == pytest.approx(40 * FRAME_S)
    assert (soft.control, soft.offset) == (SOFT_PEDAL, None)
    assert soft.onset == pytest.approx(10.1 * FRAME_S)
    assert first.onset == pytest.approx(0.2 * FRAME_S) and first.velocity == 1  # MIDI note-on velocity is ≥ 1
    assert first.offset == pytest.approx(5.3 * FRAME_S)
    assert second.onset == pytest.approx(first.offset)  # 4.5 frames clipped to the previous offset, 5.3
    assert third.offset == pytest.approx((last - 0.25) * FRAME_S) and third.control is None
    assert [n.pitch for n in (first, second, third)] == [60, 60, 60]
