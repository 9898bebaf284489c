"""Window cutting: every sample lands in the right windows, nothing lost or duplicated, memory bounded."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from streamer.audio.windows import WindowCutter


def expected(start: int, window: int, total: int) -> np.ndarray:
    """What a window starting at `start` must hold: sample i is i + 1, zero before 0 (lead) and from `total` on."""
    idx = np.arange(start, start + window)
    return np.where((idx >= 0) & (idx < total), idx + 1, 0).astype(np.float32)


def feed(cutter: WindowCutter, total: int, sizes: list[int]) -> tuple[list, int]:
    signal = np.arange(1, total + 1, dtype=np.float32)  # sample i has value i + 1; 0 marks padding
    windows, pos, i, peak = [], 0, 0, 0
    while pos < total:
        n = sizes[i % len(sizes)]
        windows += cutter.push(signal[pos : pos + n])
        peak = max(peak, cutter.held)
        pos += n
        i += 1
    return windows, peak


@given(
    window=st.integers(1, 300),
    hop_frac=st.floats(0.01, 1.0),
    total=st.integers(0, 3000),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=20),
    margin_frac=st.floats(0.0, 0.5),
    with_lead=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_windows_hold_exactly_their_samples(window, hop_frac, total, sizes, margin_frac, with_lead) -> None:
    hop = max(1, int(window * hop_frac))
    margin = min(int(window * margin_frac), window - hop)
    lead = window - margin - hop if with_lead else 0
    cutter = WindowCutter(window, hop, lead)
    regular, peak = feed(cutter, total, sizes)
    assert peak <= window + hop, "buffer grew beyond window + hop samples"
    # Regular windows: on the k·hop − lead grid, complete, in order; samples before 0 are the silent lead.
    assert [w.start for w in regular] == [k * hop - lead for k in range(len(regular))]
    assert len(regular) == (0 if total + lead < window else (total + lead - window) // hop + 1)
    for w in regular:
        np.testing.assert_array_equal(w.audio, expected(w.start, window, total))
    # Tail windows continue the grid, zero-padded past the end, until the commit regions reach the end.
    tail = cutter.tail_windows(margin)
    for w in tail:
        assert w.valid == min(window, total - w.start) > 0
        np.testing.assert_array_equal(w.audio, expected(w.start, window, total))
    every = regular + tail
    assert [w.start for w in every] == [k * hop - lead for k in range(len(every))]
    if with_lead and every:
        assert every[0].start + window - margin == hop, "with the lead, the first commit region is one hop long"
    # Every sample is inside some window's commit region [previous reach, start + window − margin).
    if total:
        assert every[-1].start + window - margin >= total
        reaches = [w.start + window - margin for w in every[:-1]]
        assert all(r < total for r in reaches)


def test_window_ending_now_holds_the_newest_samples() -> None:
    cutter = WindowCutter(window=100, hop=40)
    cutter.push(np.arange(1, 251, dtype=np.float32))
    w = cutter.window_ending_now()
    assert (w.start, w.valid) == (150, 100)
    np.testing.assert_array_equal(w.audio, np.arange(151, 251, dtype=np.float32))
    short = WindowCutter(window=100, hop=40)
    short.push(np.ones(30, dtype=np.float32))
    w = short.window_ending_now()
    assert (w.start, w.valid) == (0, 30) and not w.audio[30:].any()


def test_memory_stays_bounded_on_a_long_stream() -> None:
    cutter = WindowCutter(window=44_100, hop=11_025)
    chunk = np.zeros(882, dtype=np.float32)
    for _ in range(20_000):  # 400 s of 20 ms frames
        cutter.push(chunk)
        assert cutter.held <= 44_100 + 11_025


def test_hop_must_fit_the_window() -> None:
    with pytest.raises(ValueError):
        WindowCutter(window=10, hop=11)
