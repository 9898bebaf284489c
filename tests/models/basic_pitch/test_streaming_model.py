"""basic-pitch as the server runs it by default: the streaming model behind the engine and the session."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamer import protocol as p
from streamer.audio.resample import resample
from streamer.audio.test_signals import melody
from streamer.engine import Engine
from streamer.jobs import Failed
from streamer.models.base import Block, Model, StepResult
from streamer.offline import transcribe_array
from streamer.session import Session, SessionOptions
from streamer.stitch import events_to_notes
from tests.piano import PIANO_RATE, piano
from tests.windowing import assert_event_invariants, match


@pytest.fixture(scope="module")
def melody_audio() -> np.ndarray:
    truth = melody()
    return resample(piano(truth, truth[-1].offset + 1.0), PIANO_RATE, 22050)


def blocks_of(model: Model, audio: np.ndarray) -> list[Block]:
    size = model.spec.window_samples
    whole = len(audio) // size * size
    blocks = [Block(audio[i : i + size], i) for i in range(0, whole, size)]
    return [*blocks, Block(audio[whole:], whole, final=True)]


def decisions(model: Model, blocks: list[Block], state: object) -> list:  # type: ignore[type-arg]
    out = []
    for block in blocks:
        (result,) = model.run_batch([block], [state])
        assert isinstance(result, StepResult)
        out += result.decisions
    return out


def test_streams_batched_together_decide_as_they_would_alone(basic_pitch_model: Model, melody_audio) -> None:  # type: ignore[no-untyped-def]
    audios = [melody_audio, melody_audio[::-1].copy(), 0.5 * melody_audio]
    model = basic_pitch_model
    alone = [decisions(model, blocks_of(model, a), model.new_stream()) for a in audios]
    states = [basic_pitch_model.new_stream() for _ in audios]
    together: list[list] = [[] for _ in audios]  # type: ignore[type-arg]
    for step in zip(*(blocks_of(basic_pitch_model, a) for a in audios), strict=True):
        for i, result in enumerate(basic_pitch_model.run_batch(list(step), states)):
            together[i] += result.decisions
    assert together == alone
    assert all(alone), "every stream has notes"


def test_any_client_chunking_commits_the_same_events(basic_pitch_model: Model, melody_audio) -> None:  # type: ignore[no-untyped-def]
    reference, _ = transcribe_array(basic_pitch_model, melody_audio, 22050)
    rng = np.random.default_rng(7)
    session = Session("s", {"basic-pitch": basic_pitch_model.spec}, SessionOptions(default_model="basic-pitch"))
    session.on_message(json.dumps({"type": "start", "sample_rate": 22050, "encoding": "f32le"}), 0.0)
    engine = Engine(basic_pitch_model)
    handle = engine.open_stream()
    events: list[p.NoteEvent] = []

    def take(out) -> None:  # type: ignore[no-untyped-def]
        events.extend(out.events)
        for job in out.jobs:
            handle.submit(job.payload, lambda r, seq=job.seq: take(session.on_result(seq, r)), live=False)

    pos = 0
    while pos < len(melody_audio):
        n = int(rng.integers(111, 9000))  # 5 ms to 0.4 s frames
        take(session.on_audio(melody_audio[pos : pos + n].astype("<f4").tobytes(), 0.0))
        engine.run_pending()
        pos += n
    take(session.on_message('{"type": "stop"}', 0.0))
    engine.run_pending()
    assert_event_invariants(events)
    assert events == reference


def test_a_gap_ends_the_notes_and_the_stream_goes_on(basic_pitch_model: Model, melody_audio) -> None:  # type: ignore[no-untyped-def]
    blocks = blocks_of(basic_pitch_model, melody_audio)
    state = basic_pitch_model.new_stream()
    cut = len(blocks) // 2
    before = decisions(basic_pitch_model, blocks[:cut], state)
    merged = basic_pitch_model.after_gap(blocks[cut + 20], blocks[cut : cut + 20])  # 20 blocks merged away
    assert merged.gap == sum(len(b.audio) for b in blocks[cut : cut + 20])
    after = decisions(basic_pitch_model, [merged, *blocks[cut + 21 :]], state)
    sounding: set[int] = set()
    for d in before + after:
        if d.start:
            assert d.pitch not in sounding
            sounding.add(d.pitch)
        else:
            sounding.discard(d.pitch)
    assert not sounding, "every note ended"
    gap_start = blocks[cut].start / 22050
    assert all(d.time <= gap_start + 0.05 for d in after if not d.start and d.time < merged.start / 22050)
    assert any(d.start and d.time >= merged.start / 22050 for d in after), "notes after the gap are found"


def test_a_stream_whose_decisions_fail_fails_alone(basic_pitch_model: Model, melody_audio) -> None:  # type: ignore[no-untyped-def]
    good, bad = basic_pitch_model.new_stream(), basic_pitch_model.new_stream()
    bad.tracker.push = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("tracker bug"))  # type: ignore[method-assign]
    block = blocks_of(basic_pitch_model, melody_audio)[10]
    results = basic_pitch_model.run_batch([block, block], [good, bad])
    assert isinstance(results[0], StepResult) and isinstance(results[1], Failed)


def test_the_melody_comes_back_offline(basic_pitch_model: Model, melody_audio) -> None:  # type: ignore[no-untyped-def]
    events, done = transcribe_array(basic_pitch_model, melody_audio, 22050)
    truth = melody()
    assert not [n for n, hit in match(truth, events_to_notes(events)) if hit is None]
    assert done.notes == len(events_to_notes(events))
