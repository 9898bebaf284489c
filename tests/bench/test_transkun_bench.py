"""benchmarks/transkun_bench.py's pieces with known answers: the grid, the window cache (each window computed once
for every hop and margin on the grid, results unchanged), the onset jitter between windows, and the key filter."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.transkun_bench import FRAME_S, CachedWindows, on_grid, onset_jitter, piano_notes
from streamer.audio.test_signals import melody
from streamer.models.transkun.spec import SAMPLE_RATE
from streamer.notes import SUSTAIN_PEDAL, Note, WindowNote
from streamer.offline import transcribe_array
from streamer.stitch import events_to_notes
from tests.fakes import OracleModel


def test_on_grid_rounds_to_whole_grid_steps() -> None:
    assert on_grid(0.5, 22) == pytest.approx(22 * FRAME_S)
    assert on_grid(0.01, 11) == pytest.approx(11 * FRAME_S)  # at least one step
    assert on_grid(1.6, 22) == pytest.approx(66 * FRAME_S)


def test_onset_jitter_pairs_the_same_key_across_close_windows() -> None:
    windows = {
        (0, 100): [WindowNote(60, 1.0, 2.0), WindowNote(62, None, 1.0), WindowNote(0, 1.0, 2.0, control=64)],
        (SAMPLE_RATE, 100): [WindowNote(60, 0.004, 1.0), WindowNote(64, 0.0, 1.0)],
        (10 * SAMPLE_RATE, 100): [WindowNote(60, 0.0, 1.0)],  # too far from the others to be compared
    }
    assert onset_jitter(windows) == [pytest.approx(0.004)]


def test_piano_notes_keep_keys_only() -> None:
    notes = [Note(0, 1, 60), Note(0, 1, 0, control=SUSTAIN_PEDAL), Note(0, 1, 12), Note(0, 1, 108)]
    assert [n.pitch for n in piano_notes(notes)] == [60, 108]


class Counting(OracleModel):
    max_batch = 4


def test_cached_windows_compute_each_window_once_and_change_nothing() -> None:
    model = Counting(melody())
    audio = np.zeros(int(6 * model.spec.sample_rate), dtype=np.float32)
    direct = [events_to_notes(transcribe_array(model, audio, model.spec.sample_rate, hop_s=h)[0]) for h in (0.5, 1.0)]
    computed_directly = sum(len(b) for b in model.batches)
    cached = CachedWindows(model)  # type: ignore[arg-type]
    via_cache = [
        events_to_notes(transcribe_array(cached, audio, model.spec.sample_rate, hop_s=h)[0]) for h in (0.5, 1.0)
    ]
    assert via_cache == direct
    assert cached.computed < computed_directly  # hop 1.0's windows are among hop 0.5's
