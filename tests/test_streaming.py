"""The streaming path: blocks out, settled decisions in, committed events with every guarantee.

A perfect streaming model (tests/fakes.OracleStreamer) settles each note a look-ahead after it happens; the session
must give back exactly those notes whatever the chunking, keep event times in order when decisions arrive late,
relay interim notes only to clients that ask, and survive the engine merging a lagging stream's blocks.
"""

from __future__ import annotations

import itertools
import json

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from streamer import protocol as p
from streamer.client.stream import stream_audio
from streamer.jobs import Skipped
from streamer.models.base import Block, NoteDecision, StepResult
from streamer.notes import Note
from streamer.session import Session, SessionOptions, State
from streamer.stitch import events_to_notes
from streamer.streaming import PlannedBlock, StreamingTrack
from tests.fakes import STREAM_SPEC, OracleStreamer
from tests.windowing import assert_event_invariants

RATE = 16000
TRUTH = [Note(0.25, 0.75, 60, 90), Note(1.0, 3.5, 64, 80), Note(3.5, 4.0, 64, 70), Note(4.5, 4.625, 67, 60)]


def new_session(interim: bool = False) -> tuple[Session, list]:  # type: ignore[type-arg]
    session = Session("s", {STREAM_SPEC.name: STREAM_SPEC}, SessionOptions(default_model=STREAM_SPEC.name))
    out = session.on_message(json.dumps({"type": "start", "sample_rate": RATE, "interim": interim}), 0.0)
    return session, list(out.messages)


def run(session: Session, model: OracleStreamer, out, got: list) -> None:  # type: ignore[no-untyped-def]
    got.extend(out.messages)
    for job in out.jobs:
        (result,) = model.run_batch([job.payload], [model_state(session, model)])
        got.extend(session.on_result(job.seq, result).messages)


_states: dict[int, dict] = {}  # type: ignore[type-arg]


def model_state(session: Session, model: OracleStreamer) -> dict:  # type: ignore[type-arg]
    return _states.setdefault(id(session), model.new_stream())


def events_of(messages: list) -> list:  # type: ignore[type-arg]
    return [e for m in messages if isinstance(m, p.Events) for e in m.events]


@given(sizes=st.lists(st.integers(80, 5000), min_size=1, max_size=30))  # frames of at least 5 ms
@settings(max_examples=60, deadline=None)
def test_any_chunking_gives_exactly_the_notes(sizes: list[int]) -> None:
    session, got = new_session()
    model = OracleStreamer(TRUTH)
    audio = np.zeros(RATE * 5, dtype="<i2").tobytes()
    pos, i = 0, 0
    while pos < len(audio):
        n = sizes[i % len(sizes)] * 2
        run(session, model, session.on_audio(audio[pos : pos + n], 0.0), got)
        pos += n
        i += 1
    run(session, model, session.on_message('{"type": "stop"}', 0.0), got)
    _states.pop(id(session), None)
    assert session.state is State.DONE and isinstance(got[-1], p.Done)
    events = events_of(got)
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))
    assert got[-1].notes == len(TRUTH) and got[-1].duration == 5.0


def test_ready_states_the_blocks_and_look_ahead_and_a_hop_is_refused() -> None:
    _, messages = new_session()
    ready = messages[0]
    assert isinstance(ready, p.Ready) and ready.hop == pytest.approx(0.05) and ready.lookahead == 0.1
    session = Session("s", {STREAM_SPEC.name: STREAM_SPEC}, SessionOptions(default_model=STREAM_SPEC.name))
    out = session.on_message(json.dumps({"type": "start", "sample_rate": RATE, "hop": 0.5}), 0.0)
    assert [m.code for m in out.messages] == ["invalid_option"]


@given(
    decisions=st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(60, 63), st.booleans(), st.integers(1, 127)),
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
@settings(max_examples=300, deadline=None)
def test_late_and_odd_decisions_still_give_ordered_paired_events(decisions: list, cuts: list) -> None:  # type: ignore[type-arg]
    """Whatever a model settles, in whatever grouping (ends decided later than later starts, an end for a pitch
    not sounding, a start for a pitch already sounding), the events keep every promise of the protocol."""
    track = StreamingTrack(STREAM_SPEC, interim=False)
    bounds = sorted({0, len(decisions), *[c for c in cuts if c <= len(decisions)]})
    events = []
    block = Block(np.zeros(0, np.float32), 0)
    for lo, hi in itertools.pairwise(bounds):
        group = [NoteDecision(t, pitch, start, velocity) for t, pitch, start, velocity in decisions[lo:hi]]
        new, _ = track.apply(PlannedBlock(block), StepResult(group, 0.0))
        events += new
    events += track.close(10.0)
    assert_event_invariants(events)
    assert track.notes_committed == sum(isinstance(e, p.NoteOn) for e in events)


def test_interim_notes_only_for_clients_that_ask_and_each_replaces_the_last() -> None:
    for asked in (False, True):
        session, got = new_session(interim=asked)
        model = OracleStreamer(TRUTH)
        for _ in range(50):  # 100 ms frames
            run(session, model, session.on_audio(np.zeros(1600, "<i2").tobytes(), 0.0), got)
        interims = [m for m in got if isinstance(m, p.Interim)]
        _states.pop(id(session), None)
        if not asked:
            assert not interims
            continue
        assert interims and all(isinstance(m.notes, list) for m in interims)
        # The note at 1.0 s is interim once heard (blocks ending in 1.0–1.1 s), before it is settled at 1.1 s.
        seen = [m for m in interims if any(n.pitch == 64 and n.onset == 1.0 for n in m.notes)]
        assert seen and all(m.time <= 1.0 for m in seen)
        assert all(n.onset >= m.time for m in interims for n in m.notes)


def test_a_gap_from_merged_blocks_ends_notes_and_goes_on() -> None:
    session, got = new_session()
    model = OracleStreamer(TRUTH)
    jobs = []
    for _ in range(40):  # 2 s of audio in 50 ms frames, none run yet
        jobs += session.on_audio(np.zeros(800, "<i2").tobytes(), 0.0).jobs
    state = model.new_stream()
    for job in jobs[:-1]:  # the engine merged these away
        got += session.on_result(job.seq, Skipped()).messages
    newest = jobs[-1].payload
    merged = model.after_gap(newest, [j.payload for j in jobs[:-1]])
    assert merged.gap == 800 * 39
    (result,) = model.run_batch([merged], [state])
    got += session.on_result(jobs[-1].seq, result).messages
    out = session.on_message('{"type": "stop"}', 0.0)
    for job in out.jobs:
        (result,) = model.run_batch([job.payload], [state])
        got += session.on_result(job.seq, result).messages
    assert isinstance(got[-1], p.Done) and got[-1].skipped_windows == 39
    assert_event_invariants(events_of(got))


async def test_streaming_over_a_real_socket_with_interim(serve) -> None:  # type: ignore[no-untyped-def]
    server = await serve({STREAM_SPEC.name: OracleStreamer(TRUTH)})
    audio = np.zeros((RATE * 5, 1), np.float32)
    for asked in (True, False):
        received: list[p.ServerMessage] = []
        result = await stream_audio(server.url, audio, RATE, speed=0, interim=asked, on_message=received.append)
        assert result.done is not None and not result.errors
        assert events_to_notes(result.events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))
        interims = [m for m in received if isinstance(m, p.Interim)]
        assert bool(interims) == asked


def test_progress_messages_only_when_asked_never_going_back_and_free_of_interim_work() -> None:
    for asked in (False, True):
        session = Session("s", {STREAM_SPEC.name: STREAM_SPEC}, SessionOptions(default_model=STREAM_SPEC.name))
        out = session.on_message(json.dumps({"type": "start", "sample_rate": RATE, "progress": asked}), 0.0)
        model, got = OracleStreamer(TRUTH), list(out.messages)
        jobs = []
        for _ in range(30):
            jobs += session.on_audio(np.zeros(1600, "<i2").tobytes(), 0.0).jobs
        assert not any(job.payload.provisional for job in jobs), "progress alone needs no provisional evaluation"
        state = model.new_stream()
        for job in jobs:
            (result,) = model.run_batch([job.payload], [state])
            got += session.on_result(job.seq, result).messages
        times = [m.time for m in got if isinstance(m, p.Progress)]
        assert bool(times) == asked and times == sorted(times)
        assert not [m for m in got if isinstance(m, p.Interim)]
        # Every note_on before a progress time was sent before that progress message.
        seen: list[float] = []
        for message in got:
            if isinstance(message, p.Events):
                seen += [e.time for e in message.events if isinstance(e, p.NoteOn)]
            elif isinstance(message, p.Progress):
                assert all(n.onset in seen for n in TRUTH if n.onset < message.time), (message.time, seen)


async def test_interim_notes_never_reach_midi_files(serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamer.config import MidiConfig
    from streamer.sinks.factory import SessionSinks
    from streamer.sinks.midi_file import read_notes

    sinks = SessionSinks(MidiConfig(files_dir=str(tmp_path)))
    server = await serve({STREAM_SPEC.name: OracleStreamer(TRUTH)}, sinks=sinks)
    received: list[p.ServerMessage] = []
    audio = np.zeros((RATE * 5, 1), np.float32)
    result = await stream_audio(server.url, audio, RATE, speed=0, interim=True, midi_file=True,
                                on_message=received.append)  # fmt: skip
    interim_notes = [n for m in received if isinstance(m, p.Interim) for n in m.notes]
    assert interim_notes, "interim notes were sent"
    committed = [(n.pitch, round(n.onset, 3)) for n in events_to_notes(result.events)]
    session = next(m.session for m in received if isinstance(m, p.Ready))
    import base64

    assert result.done is not None and result.done.midi
    for data in (base64.b64decode(result.done.midi), (tmp_path / f"{session}.mid").read_bytes()):
        assert [(n.pitch, round(n.onset, 3)) for n in read_notes(data)] == committed
