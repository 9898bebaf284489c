"""The audio a client keeps for resuming: exact samples on its clock, bounded, released once committed."""

from __future__ import annotations

import numpy as np

from streamer.client.history import AudioHistory, preroll_start

RATE = 1000


def frames(first: int, count: int) -> np.ndarray:
    """Samples whose value is their index on the stream's clock, so any slice shows where it came from."""
    return np.arange(first, first + count, dtype=np.float32)[:, None]


def test_audio_from_any_sample_comes_back_exactly() -> None:
    history = AudioHistory(RATE, keep_s=10.0)
    for start in range(0, 100, 20):
        history.append(frames(start, 20))
    first, audio = history.since(37)
    assert first == 37 and audio[:, 0].tolist() == list(range(37, 100))
    assert history.sent == 100 and history.sent_s == 0.1


def test_what_is_kept_is_bounded_by_whole_frames() -> None:
    history = AudioHistory(RATE, keep_s=0.05)  # 50 samples
    for start in range(0, 200, 20):
        history.append(frames(start, 20))
    assert history.start == 140  # the frame starting at 140 still holds samples within the last 50
    first, audio = history.since(0)  # asking further back gets what is held
    assert first == 140 and audio[0, 0] == 140 and len(audio) == 60


def test_release_drops_frames_wholly_before_a_sample() -> None:
    history = AudioHistory(RATE, keep_s=10.0)
    for start in range(0, 100, 20):
        history.append(frames(start, 20))
    history.release(50)
    assert history.start == 40
    assert history.since(45)[1][0, 0] == 45


def test_times_map_to_samples_without_losing_one_to_rounding() -> None:
    history = AudioHistory(44100, keep_s=1.0)
    assert history.sample_at(12345 / 44100) == 12345  # a time that came back from a server as a float
    assert history.sample_at(0.5) == 22050
    assert history.sample_at(0.50001) == 22050


def test_nothing_held_gives_nothing() -> None:
    history = AudioHistory(RATE, keep_s=1.0)
    first, audio = history.since(0)
    assert first == 0 and len(audio) == 0


def test_the_preroll_starts_on_the_models_block_grid() -> None:
    grid = 2048.0  # basic-pitch's 1024-sample block at 22050 Hz, in samples of a 44100 Hz client
    assert preroll_start(committed=10_000, preroll=4410, held_from=0, grid=grid) == 4096
    assert preroll_start(committed=3_000, preroll=4410, held_from=0, grid=grid) == 0
    # 48 kHz: the grid falls between client samples; the nearest one is taken.
    assert preroll_start(committed=100_000, preroll=48_000, held_from=0, grid=1024 * 48000 / 22050) == 51270


def test_the_preroll_starts_no_earlier_than_what_is_held() -> None:
    assert preroll_start(committed=10_000, preroll=4410, held_from=5000, grid=2048.0) == 6144  # next grid point
    assert preroll_start(committed=10_000, preroll=4410, held_from=9000, grid=2048.0) == 9000  # none before R
    assert preroll_start(committed=10_000, preroll=4410, held_from=12_000, grid=2048.0) == 12_000  # lost audio
