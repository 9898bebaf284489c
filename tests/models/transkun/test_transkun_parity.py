"""Our Transkun against the transkun wheel's own code on the same audio: the network's context vectors, and the
notes, velocities and pedals of whole windows (the wheel's per-segment decoding: from frame 0, most likely
velocity). The wheel builds its mel filterbank with torchaudio; tools/transkun_reference.py answers that one call
with our filterbank through a stand-in module, and the checkpoint's stored filterbank replaces it on load."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from streamer.models.transkun.network import TranskunNetwork
from streamer.models.transkun.spec import SAMPLE_RATE, TRACK_CODES
from streamer.notes import SOFT_PEDAL, SUSTAIN_PEDAL, WindowNote

TIME_TOLERANCE_S = 1e-4  # refined times are float32 sub-frame shifts of 23 ms frames


def test_context_vectors_match(network: TranskunNetwork, reference: Any, phrase: np.ndarray) -> None:
    from tools.transkun_reference import reference_context

    audio = phrase[: 4 * SAMPLE_RATE]
    theirs = reference_context(reference, audio)
    with torch.inference_mode():
        ours = network(torch.from_numpy(audio)[None])
    assert ours.shape == theirs.shape == (1, len(TRACK_CODES), 174, network.config.context_size)
    assert (ours - theirs).abs().max() <= 1e-4


def as_rows(notes: list[WindowNote]) -> list[tuple[Any, ...]]:
    return sorted(
        ((n.control or 0, n.pitch, n.onset, n.offset, n.velocity) for n in notes),
        key=lambda r: (r[0], r[1], -1.0 if r[2] is None else r[2]),
    )


def reference_rows(notes: list[Any]) -> list[tuple[Any, ...]]:
    rows = []
    for n in notes:
        pedal = n.pitch < 0
        rows.append(
            (
                -n.pitch if pedal else 0,
                0 if pedal else n.pitch,
                n.start if n.hasOnset else None,
                n.end if n.hasOffset else None,
                127 if pedal else max(1, n.velocity),
            )
        )
    return sorted(rows, key=lambda r: (r[0], r[1], -1.0 if r[2] is None else r[2]))


def assert_same(ours: list[tuple[Any, ...]], theirs: list[tuple[Any, ...]]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a[:2] == b[:2] and a[4] == b[4], (a, b)
        for mine, its in ((a[2], b[2]), (a[3], b[3])):
            assert (mine is None) == (its is None), (a, b)
            assert mine is None or abs(mine - its) <= TIME_TOLERANCE_S, (a, b)


@pytest.fixture(scope="module")
def window_results(reference: Any, phrase_window: np.ndarray, phrase_window_notes: list[WindowNote]) -> tuple:
    from tools.transkun_reference import reference_window

    return phrase_window_notes, reference_window(reference, phrase_window)


def test_window_notes_velocities_and_pedals_match(window_results: tuple[list, list]) -> None:
    ours, theirs = window_results
    assert_same(as_rows(ours), reference_rows(theirs))
    # What the comparison covered: notes, pedals, and onsets before the window's start.
    assert len([n for n in ours if n.control is None]) >= 10
    assert any(n.control == SUSTAIN_PEDAL for n in ours)
    assert any(n.onset is None for n in ours)


def test_notes_and_pedals_are_reported_as_the_stitcher_needs(window_results: tuple[list, list]) -> None:
    ours, _ = window_results
    for n in ours:
        if n.control is None:
            assert 21 <= n.pitch <= 108 and 1 <= n.velocity <= 127
        else:
            assert n.control in (SUSTAIN_PEDAL, SOFT_PEDAL) and n.pitch == 0 and n.velocity == 127
        if n.onset is not None and n.offset is not None:
            assert n.offset > n.onset
