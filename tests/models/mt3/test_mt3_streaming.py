"""MT3 tokens through the real server: overlapping windows, ties, stitching, exact notes back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from streamer.audio.windows import Window
from streamer.client.stream import stream_audio
from streamer.models.base import Model
from streamer.models.mt3.codec import StepNote, decode_window, encode_segment, segment_start_step, to_step
from streamer.models.mt3.codec import window_end_step as end_step
from streamer.models.mt3.spec import SAMPLE_RATE, WINDOW_SAMPLES, mt3_spec
from streamer.models.mt3.vocab import MT3
from streamer.notes import Note, WindowNote
from streamer.stitch import events_to_notes
from tests.windowing import assert_event_invariants

# On the 10 ms token grid; programs, drums, a note held across many windows, back-to-back notes of one key,
# and onsets right at rounded window starts (2.04 s, 2.05 s).
TRUTH = [
    Note(0.30, 0.80, 60, 127, program=0),
    Note(0.50, 3.70, 48, 127, program=33),
    Note(1.00, 1.01, 36, 127, program=0, is_drum=True),
    Note(1.20, 2.30, 64, 127, program=0),
    Note(2.30, 2.90, 64, 127, program=0),
    Note(2.04, 2.05, 42, 127, program=0, is_drum=True),
    Note(2.05, 2.60, 67, 127, program=40),
    Note(3.00, 3.01, 38, 127, program=0, is_drum=True),
    Note(4.10, 4.50, 72, 127, program=0),
]
DURATION_S = 5.5


class TokenOracle(Model):
    """For each window, the tokens a perfect MT3 would emit for TRUTH, decoded like the real model's."""

    def __init__(self, truth: Sequence[Note]) -> None:
        self.spec = mt3_spec("mt3-oracle", "test model emitting the MT3 tokens of a known note set")
        self.truth = [
            StepNote(n.pitch, to_step(n.onset), to_step(n.offset), n.velocity, n.program, n.is_drum) for n in truth
        ]
        self.windows = 0

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        results = []
        for request in batch:
            start = segment_start_step(request.start, SAMPLE_RATE)
            tokens = encode_segment(self.truth, start, end_step(request.start, WINDOW_SAMPLES, SAMPLE_RATE), MT3)
            notes, report = decode_window(tokens, request.start, WINDOW_SAMPLES, SAMPLE_RATE, MT3)
            assert report.invalid == 0 and report.dropped == 0
            results.append(notes)
            self.windows += 1
        return results


def rounded(notes: Sequence[Note]) -> list[tuple]:
    return sorted((round(n.onset, 6), round(n.offset, 6), n.pitch, n.program, n.is_drum) for n in notes)


@pytest.mark.parametrize("hop", [None, 0.256, 1.024])
async def test_tokens_of_a_known_note_set_stream_back_exactly(serve, hop: float | None) -> None:  # type: ignore[no-untyped-def]
    model = TokenOracle(TRUTH)
    server = await serve({model.spec.name: model}, overrides={"windowing": {"hop": hop}} if hop else None)
    audio = np.zeros((int(DURATION_S * SAMPLE_RATE), 1), dtype=np.float32)
    result = await stream_audio(server.url, audio, SAMPLE_RATE, speed=0)
    assert result.done is not None and not result.errors
    assert_event_invariants(result.events)
    assert model.windows > DURATION_S / 2.048  # overlapping windows
    assert rounded(events_to_notes(result.events)) == rounded(TRUTH)
