"""The session state machine, driven directly: no server, no threads, no real model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamer.errors import (
    AlreadyStarted,
    BadAudio,
    BadMessage,
    InvalidOption,
    NotStarted,
    UnknownMessageType,
    UnknownModel,
    UnsupportedFormat,
)
from streamer.notes import Note
from streamer.server import protocol as p
from streamer.session import Output, Session, SessionOptions, State
from streamer.stitch import events_to_notes
from tests.fakes import SPEC, OracleModel
from tests.windowing import assert_event_invariants

TRUTH = [Note(0.25, 0.75, 60), Note(1.0, 3.5, 64), Note(3.5, 4.0, 64), Note(4.5, 4.625, 67)]


def new_session() -> Session:
    return Session("s1", {SPEC.name: SPEC}, SessionOptions(default_model=SPEC.name))


def start(session: Session, **fields) -> Output:
    return session.on_text(json.dumps({"type": "start", "sample_rate": 16000, **fields}))


def run(session: Session, model: OracleModel, out: Output, collected: list) -> None:
    """Run every window the session hands out, in order, and collect the replies."""
    queue = list(out.windows)
    collected.extend(out.messages)
    while queue:
        window = queue.pop(0)
        (notes,) = model.transcribe_windows([window.request])
        reply = session.on_window_done(window.seq, notes)
        collected.extend(reply.messages)
        queue.extend(reply.windows)


def events_of(messages: list) -> list:
    return [e for m in messages if isinstance(m, p.Events) for e in m.events]


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def test_happy_path_start_audio_stop() -> None:
    session, model, got = new_session(), OracleModel(TRUTH), []
    out = start(session)
    assert isinstance(out.messages[0], p.Ready) and out.messages[0].window == 2.0
    audio = np.zeros(16000 * 5, dtype=np.float32)
    for pos in range(0, len(audio), 333):  # odd frame sizes
        run(session, model, session.on_audio(s16(audio[pos : pos + 333])), got)
    run(session, model, session.on_text('{"type": "stop"}'), got)
    assert session.state is State.DONE
    done = [m for m in got if isinstance(m, p.Done)]
    assert len(done) == 1 and done[0].duration == 5.0 and done[0].notes == len(TRUTH)
    events = events_of(got)
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))


def test_flush_commits_what_was_heard_and_keeps_notes_open() -> None:
    session, model, got = new_session(), OracleModel([Note(0.5, 2.5, 60)]), []
    start(session)
    run(session, model, session.on_audio(s16(np.zeros(16000))), got)  # 1 s: no full window yet
    assert not events_of(got)
    run(session, model, session.on_text('{"type": "flush"}'), got)
    assert [type(e) for e in events_of(got)] == [p.NoteOn]  # heard, still sounding
    run(session, model, session.on_audio(s16(np.zeros(16000 * 2))), got)
    run(session, model, session.on_text('{"type": "stop"}'), got)
    events = events_of(got)
    assert_event_invariants(events)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 0.5), ("NoteOff", 2.5)]


def test_stop_without_audio_finishes_at_once() -> None:
    session = new_session()
    start(session)
    out = session.on_text('{"type": "stop"}')
    assert out.finished and isinstance(out.messages[-1], p.Done) and out.messages[-1].notes == 0


def test_messages_after_stop_are_ignored() -> None:
    session = new_session()
    start(session)
    session.on_text('{"type": "stop"}')
    assert session.on_audio(b"\0\0").messages == []
    assert session.on_text('{"type": "flush"}').messages == []


@pytest.mark.parametrize(
    "text,error",
    [
        ("{not json", BadMessage),
        ('{"type": "play"}', UnknownMessageType),
        ('{"type": "start"}', BadMessage),  # sample_rate missing
        ('{"type": "start", "sample_rate": "fast"}', BadMessage),
        ('{"type": "start", "sample_rate": 16000, "volume": 11}', BadMessage),
        ('{"type": "start", "sample_rate": 7999}', UnsupportedFormat),
        ('{"type": "start", "sample_rate": 192001}', UnsupportedFormat),
        ('{"type": "start", "sample_rate": 16000, "encoding": "mp3"}', BadMessage),
        ('{"type": "start", "sample_rate": 16000, "channels": 6}', UnsupportedFormat),
        ('{"type": "start", "sample_rate": 16000, "model": "nope"}', UnknownModel),
        ('{"type": "start", "sample_rate": 16000, "hop": 1.9}', InvalidOption),
        ('{"type": "start", "sample_rate": 16000, "hop": 0.01}', InvalidOption),
        ('{"type": "flush"}', NotStarted),
        ('{"type": "stop"}', NotStarted),
    ],
)
def test_bad_messages_raise_coded_errors(text: str, error: type) -> None:
    with pytest.raises(error) as info:
        new_session().on_text(text)
    assert info.value.code and info.value.message


def test_audio_before_start_and_second_start() -> None:
    session = new_session()
    with pytest.raises(NotStarted):
        session.on_audio(b"\0\0")
    start(session)
    with pytest.raises(AlreadyStarted):
        start(session)
    with pytest.raises(BadAudio):
        session.on_audio(b"\0\0\0")


def test_skipped_windows_are_reported_and_later_windows_still_commit() -> None:
    session, model = new_session(), OracleModel([Note(0.5, 1.0, 60), Note(2.0, 2.5, 62)])
    start(session)
    windows = session.on_audio(s16(np.zeros(16000 * 4))).windows
    assert [w.request.start for w in windows] == [-20000 + k * 8000 for k in range(7)]
    messages = []
    for window in windows[:-1]:  # the engine coalesced these into the newest
        messages += session.on_window_done(window.seq, None).messages
    assert any(isinstance(m, p.Lagging) for m in messages)
    (notes,) = model.transcribe_windows([windows[-1].request])
    events = events_of(session.on_window_done(windows[-1].seq, notes).messages)
    # The newest window (1.25–3.25 s) commits from 0 to 3.0 s: it still sees the note at 2.0 s; the one at 0.5 s
    # lay only in skipped windows.
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 2.0), ("NoteOff", 2.5)]
    assert session.windows_skipped == 6


def test_results_arriving_out_of_order_are_applied_in_order() -> None:
    session, model = new_session(), OracleModel(TRUTH)
    start(session)
    windows = session.on_audio(s16(np.zeros(16000 * 5))).windows
    results = {w.seq: model.transcribe_windows([w.request])[0] for w in windows}
    messages = []
    for w in reversed(windows):
        messages += session.on_window_done(w.seq, results[w.seq]).messages
    run(session, model, session.on_text('{"type": "stop"}'), messages)
    events = events_of(messages)
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))


def test_abort_closes_sounding_notes_for_the_sinks() -> None:
    session, model = new_session(), OracleModel([Note(0.5, 9.0, 60)])
    start(session)
    windows = session.on_audio(s16(np.zeros(16000 * 3))).windows
    events = []
    for w in windows:
        events += session.on_window_done(w.seq, model.transcribe_windows([w.request])[0]).events
    events += session.abort()
    assert_event_invariants(events)
    assert events[-1].time == 3.0
