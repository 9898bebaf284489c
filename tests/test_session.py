"""The session state machine, driven directly: no server, no threads, no clock, no real model.

Time is an input, so every limit (rates, pace, idle, session length) is tested here without waiting.
"""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from streamer import protocol as p
from streamer.config import LimitsConfig
from streamer.jobs import Failed, Skipped
from streamer.notes import Note
from streamer.session import Output, Session, SessionOptions, State
from streamer.stitch import events_to_notes
from tests.fakes import SPEC, OracleModel
from tests.windowing import assert_event_invariants

TRUTH = [Note(0.25, 0.75, 60), Note(1.0, 3.5, 64), Note(3.5, 4.0, 64), Note(4.5, 4.625, 67)]
RATE = 16000


def new_session(**limits: object) -> Session:
    options = SessionOptions(default_model=SPEC.name, limits=msgspec.structs.replace(LimitsConfig(), **limits))
    return Session("s1", {SPEC.name: SPEC}, options, now=0.0)


def start(session: Session, now: float = 0.0, **fields: object) -> Output:
    return session.on_message(json.dumps({"type": "start", "sample_rate": RATE, **fields}), now)


def run(session: Session, model: OracleModel, out: Output, collected: list) -> None:
    """Run every job the session hands out, in order, and collect the replies."""
    queue = list(out.jobs)
    collected.extend(out.messages)
    while queue:
        job = queue.pop(0)
        (notes,) = model.transcribe_windows([job.payload], [None])
        reply = session.on_result(job.seq, notes)
        collected.extend(reply.messages)
        queue.extend(reply.jobs)


def events_of(messages: list) -> list:
    return [e for m in messages if isinstance(m, p.Events) for e in m.events]


def codes(out: Output) -> list[str]:
    return [m.code for m in out.messages if isinstance(m, p.Error)]


def s16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return s16(np.zeros(int(seconds * RATE)))


def stream_live(session: Session, model: OracleModel, seconds: float, got: list, frame_s: float = 0.02) -> float:
    """Send `seconds` of silence in frames at real-time pace (time as data); returns the clock after."""
    now = 0.0
    frame = silence(frame_s)
    for _ in range(round(seconds / frame_s)):
        now += frame_s
        run(session, model, session.on_audio(frame, now), got)
    return now


def test_happy_path_start_audio_stop() -> None:
    session, model, got = new_session(), OracleModel(TRUTH), []
    out = start(session)
    assert out.started is not None and out.started.spec is SPEC
    assert isinstance(out.messages[0], p.Ready) and out.messages[0].window == 2.0
    audio = np.zeros(RATE * 5, dtype=np.float32)
    for pos in range(0, len(audio), 333):  # odd frame sizes
        run(session, model, session.on_audio(s16(audio[pos : pos + 333]), 0.0), got)
    run(session, model, session.on_message('{"type": "stop"}', 0.0), got)
    assert session.state is State.DONE
    done = [m for m in got if isinstance(m, p.Done)]
    assert len(done) == 1 and done[0].duration == 5.0 and done[0].notes == len(TRUTH)
    events = events_of(got)
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))


def test_done_closes_with_1000() -> None:
    session = new_session()
    start(session)
    out = session.on_message('{"type": "stop"}', 0.0)
    assert out.close == 1000 and isinstance(out.messages[-1], p.Done) and out.messages[-1].notes == 0


def test_flush_commits_what_was_heard_and_keeps_notes_open() -> None:
    session, model, got = new_session(), OracleModel([Note(0.5, 2.5, 60)]), []
    start(session)
    run(session, model, session.on_audio(silence(1.0), 0.0), got)  # 1 s: no full window yet
    assert not events_of(got)
    run(session, model, session.on_message('{"type": "flush"}', 0.0), got)
    assert [type(e) for e in events_of(got)] == [p.NoteOn]  # heard, still sounding
    run(session, model, session.on_audio(silence(1.0), 0.0), got)
    run(session, model, session.on_audio(silence(1.0), 0.0), got)
    run(session, model, session.on_message('{"type": "stop"}', 0.0), got)
    events = events_of(got)
    assert_event_invariants(events)
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 0.5), ("NoteOff", 2.5)]


def test_messages_after_stop_are_ignored_even_a_flood() -> None:
    session, model, got = new_session(max_text_messages_per_s=5), OracleModel(TRUTH), []
    start(session)
    out = session.on_audio(silence(1.0), 0.0)
    pending = list(out.jobs)
    out = session.on_message('{"type": "stop"}', 0.0)
    pending += out.jobs
    for _ in range(12):  # flushes after stop: neither rate-limited nor an error, and the session still finishes
        assert session.on_message('{"type": "flush"}', 0.0).messages == []
        assert session.on_message("{not json", 0.0).messages == []
        assert session.on_audio(b"\0\0", 0.0).messages == []
    for job in pending:
        (notes,) = model.transcribe_windows([job.payload], [None])
        got += session.on_result(job.seq, notes).messages
    assert isinstance(got[-1], p.Done)


@pytest.mark.parametrize(
    "text,code",
    [
        ("{not json", "bad_message"),
        ('{"type": "play"}', "unknown_message_type"),
        ('{"type": "start"}', "bad_message"),  # sample_rate missing
        ('{"type": "start", "sample_rate": "fast"}', "bad_message"),
        ('{"type": "start", "sample_rate": 16000, "volume": 11}', "bad_message"),
        ('{"type": "start", "sample_rate": 7999}', "unsupported_format"),
        ('{"type": "start", "sample_rate": 192001}', "unsupported_format"),
        ('{"type": "start", "sample_rate": 16000, "encoding": "mp3"}', "unsupported_format"),
        ('{"type": "start", "sample_rate": 16000, "channels": 6}', "unsupported_format"),
        ('{"type": "start", "sample_rate": 16000, "model": "nope"}', "unknown_model"),
        ('{"type": "start", "sample_rate": 16000, "model": ""}', "unknown_model"),
        ('{"type": "start", "sample_rate": 16000, "hop": 1.9}', "invalid_option"),
        ('{"type": "start", "sample_rate": 16000, "hop": 0.01}', "invalid_option"),
        ('{"type": "start", "sample_rate": 16000, "hop": 0}', "invalid_option"),
        ('{"type": "start", "sample_rate": 16000, "resume_at": -1}', "bad_message"),
        ('{"type": "start", "type": "stop", "sample_rate": 16000}', "bad_message"),
        ('{"type": "start", "sample_rate": ' + "[" * 1000 + "]" * 1000 + "}", "bad_message"),
        ('{"x": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}", "bad_message"),
        ('{"type": "flush"}', "not_started"),
        ('{"type": "stop"}', "not_started"),
    ],
)
def test_bad_messages_get_coded_errors_and_a_close(text: str, code: str) -> None:
    session = new_session()
    out = session.on_message(text, 0.0)
    error = out.messages[-1]
    assert codes(out) == [code] and error.message and error.fatal
    assert out.close in (1003, 1008) and session.state is State.DONE
    assert "Traceback" not in error.message


def test_duplicate_type_message_says_so() -> None:
    out = new_session().on_message('{"type": "start", "type": "stop"}', 0.0)
    assert "more than once" in out.messages[0].message


def test_audio_before_start_second_start_and_partial_samples() -> None:
    session = new_session()
    assert codes(session.on_audio(b"\0\0", 0.0)) == ["not_started"]
    session = new_session()
    start(session)
    assert codes(start(session)) == ["already_started"]
    session = new_session()
    start(session)
    out = session.on_audio(b"\0\0\0", 0.0)
    assert codes(out) == ["bad_audio"] and out.close == 1003


def test_huge_and_overflowing_float_audio_is_refused() -> None:
    for channels, samples in [(1, [3e38]), (2, [3e38, 3e38]), (1, [np.nan]), (2, [np.inf, 0.0]), (1, [20.0])]:
        session = new_session()
        start(session, encoding="f32le", channels=channels)
        out = session.on_audio(np.array(samples, dtype="<f4").tobytes(), 0.0)
        assert codes(out) == ["bad_audio"], samples


def test_slightly_hot_float_audio_is_clipped_not_refused() -> None:
    session = new_session()
    start(session, encoding="f32le")
    out = session.on_audio(np.full(1600, 1.5, dtype="<f4").tobytes(), 0.0)
    assert codes(out) == [] and session.audio_seconds == 0.1


def test_text_over_the_byte_limit_is_refused_in_utf8_bytes() -> None:
    session = new_session(max_text_bytes=256)
    out = session.on_message('{"type": "start", "sample_rate": 16000, "model": "' + "é" * 120 + '"}', 0.0)
    assert codes(out) == ["frame_too_large"] and out.close == 1009


def test_frames_over_the_byte_or_second_limit_are_refused() -> None:
    session = new_session(max_frame_bytes=4096)
    start(session)
    assert codes(session.on_audio(b"\0" * 4098, 0.0)) == ["frame_too_large"]
    session = new_session(max_frame_seconds=0.5)
    start(session, sample_rate=8000)
    out = session.on_audio(b"\0\0" * 4800, 0.0)  # 0.6 s of 8 kHz audio in one frame
    assert codes(out) == ["frame_too_large"] and "0.600 s" in out.messages[0].message


def test_text_rate_is_a_token_bucket_on_the_given_clock() -> None:
    session = new_session(max_text_messages_per_s=5)
    start(session, 0.0)
    for _ in range(4):
        assert codes(session.on_message('{"type": "flush"}', 0.0)) == []
    assert codes(session.on_message('{"type": "flush"}', 0.0)) == ["rate_limited"]
    session = new_session(max_text_messages_per_s=5)
    start(session, 0.0)
    for i in range(50):  # 5 per second exactly is fine
        assert codes(session.on_message('{"type": "flush"}', 0.2 * (i + 1))) == []


def test_tiny_frames_are_rate_limited() -> None:
    session = new_session()
    start(session)
    outs = [session.on_audio(b"\0\0", 0.0) for _ in range(110)]  # 1-sample frames: 200/s of audio is 1.4 frames
    first = next(i for i, o in enumerate(outs) if codes(o))
    assert first == 101 and codes(outs[first]) == ["rate_limited"] and session.state is State.DONE


def test_start_deadline_and_idle_timeout_fire_on_ticks_not_pings() -> None:
    session = new_session(start_timeout_s=10, idle_timeout_s=30)
    assert codes(session.on_tick(9.9)) == []
    out = session.on_tick(10.1)
    assert codes(out) == ["timeout"] and out.close == 1000
    session, model, got = new_session(idle_timeout_s=30), OracleModel(TRUTH), []
    start(session, 0.0)
    run(session, model, session.on_audio(silence(1.0), 1.0), got)
    assert codes(session.on_tick(30.9)) == []
    out = session.on_tick(31.1)  # only flush/audio/start count as activity; pings never reach the session
    assert codes(out) == ["timeout"]
    run(session, model, out, got)
    assert isinstance(got[-1], p.Done), "an idle session still commits what it heard"


def test_session_length_is_checked_on_ticks_even_without_audio() -> None:
    session, model, got = new_session(max_session_s=60, idle_timeout_s=1000), OracleModel(TRUTH), []
    start(session, 0.0)
    for t in range(1, 60):
        assert codes(session.on_message('{"type": "flush"}', float(t))) == []
    out = session.on_tick(60.5)
    assert codes(out) == ["session_too_long"]
    run(session, model, out, got)
    assert isinstance(got[-1], p.Done) and session.state is State.DONE


def test_a_live_client_is_never_throttled_an_upload_is_and_stays_one() -> None:
    model = OracleModel(TRUTH)
    live, got = new_session(), []
    start(live)
    now = 0.0
    for _ in range(250):  # 5 s in 20 ms frames, at real-time pace, results left outstanding
        now += 0.02
        out = live.on_audio(silence(0.02), now)
        assert not live.throttled
        assert all(job.live for job in out.jobs)
    upload = new_session()
    start(upload)
    out = upload.on_audio(silence(0.5), 0.0)
    for t in (0.01, 0.02):
        out.extend(upload.on_audio(silence(0.5), t))
    assert len(out.jobs) == 2 and not any(job.live for job in out.jobs) and upload.throttled
    for job in out.jobs:  # results come back: room again, but once an upload, always an upload
        (notes,) = model.transcribe_windows([job.payload], [None])
        upload.on_result(job.seq, notes)
    assert not upload.throttled
    out = upload.on_audio(silence(0.02), 100.0)  # now far behind the wall clock
    assert out.jobs == [] or not any(job.live for job in out.jobs)
    assert got == []


def test_refuse_policy_answers_rate_limited() -> None:
    session = new_session(faster_than_realtime="refuse")
    start(session)
    session.on_audio(silence(0.5), 0.0)
    assert codes(session.on_audio(silence(0.5), 0.0)) == ["rate_limited"]


def test_skipped_windows_are_reported_and_later_windows_still_commit() -> None:
    session, model = new_session(), OracleModel([Note(0.5, 1.0, 60), Note(2.0, 2.5, 62)])
    start(session)
    jobs = stream_jobs(session, 4.0)
    assert [j.payload.start for j in jobs] == [-20000 + k * 8000 for k in range(7)]
    messages = []
    for job in jobs[:-1]:  # the engine merged these into the newest
        messages += session.on_result(job.seq, Skipped()).messages
    assert any(isinstance(m, p.Lagging) for m in messages)
    (notes,) = model.transcribe_windows([jobs[-1].payload], [None])
    events = events_of(session.on_result(jobs[-1].seq, notes).messages)
    # The newest window (1.25–3.25 s) commits from 0 to 3.0 s: it still sees the note at 2.0 s; the one at 0.5 s
    # lay only in skipped windows.
    assert [(type(e).__name__, e.time) for e in events] == [("NoteOn", 2.0), ("NoteOff", 2.5)]
    assert session.windows_skipped == 6


def stream_jobs(session: Session, seconds: float) -> list:
    jobs = []
    now = 0.0
    for _ in range(round(seconds / 0.02)):
        now += 0.02
        jobs += session.on_audio(silence(0.02), now).jobs
    return jobs


def test_a_model_failure_is_model_failed_only_not_lagging_not_skipped() -> None:
    session, model = new_session(), OracleModel(TRUTH)
    start(session)
    jobs = stream_jobs(session, 5.0)
    messages = []
    for job in jobs:
        if job.seq == 3:
            out = session.on_result(job.seq, Failed("RuntimeError: boom"))
            assert out.close is None, "a model failure is not fatal"
        else:
            (notes,) = model.transcribe_windows([job.payload], [None])
            out = session.on_result(job.seq, notes)
        messages += out.messages
    run(session, model, session.on_message('{"type": "stop"}', 5.0), messages)
    assert [m.code for m in messages if isinstance(m, p.Error)] == ["model_failed"]
    assert not any(isinstance(m, p.Lagging) for m in messages)
    done = messages[-1]
    assert isinstance(done, p.Done) and done.skipped_windows == 0 and done.failed_windows == 1


def test_results_arriving_out_of_order_are_applied_in_order() -> None:
    session, model = new_session(), OracleModel(TRUTH)
    start(session)
    jobs = session.on_audio(silence(1.0), 0.0).jobs
    for _ in range(4):
        jobs += session.on_audio(silence(1.0), 0.0).jobs
    results = {j.seq: model.transcribe_windows([j.payload], [None])[0] for j in jobs}
    messages = []
    for j in reversed(jobs):
        messages += session.on_result(j.seq, results[j.seq]).messages
    run(session, model, session.on_message('{"type": "stop"}', 0.0), messages)
    events = events_of(messages)
    assert_event_invariants(events)
    assert events_to_notes(events) == sorted(TRUTH, key=lambda n: (n.onset, n.pitch))


def test_disconnect_closes_sounding_notes_for_the_sinks() -> None:
    session, model = new_session(), OracleModel([Note(0.5, 9.0, 60)])
    start(session)
    jobs = stream_jobs(session, 3.0)
    events = []
    for j in jobs:
        events += session.on_result(j.seq, model.transcribe_windows([j.payload], [None])[0]).events
    events += session.on_disconnect()
    assert_event_invariants(events)
    assert events[-1].time == pytest.approx(3.0)


def test_shutdown_commits_and_closes_with_1001() -> None:
    session, model, got = new_session(), OracleModel(TRUTH), []
    start(session)
    run(session, model, session.on_audio(silence(1.0), 0.0), got)
    out = session.on_shutdown()
    assert out.close is None  # not yet: the last windows run first
    closes = []
    queue = list(out.jobs)
    while queue:
        job = queue.pop(0)
        reply = session.on_result(job.seq, model.transcribe_windows([job.payload], [None])[0])
        closes.append(reply.close)
        got += reply.messages
    assert closes[-1] == 1001 and isinstance(got[-1], p.Done)
    waiting = new_session()
    out = waiting.on_shutdown()
    assert codes(out) == ["shutting_down"] and out.close == 1001


def test_a_resumed_session_continues_the_clients_timeline() -> None:
    session, model, got = new_session(), OracleModel(TRUTH), []
    start(session, resume_at=93.25)
    for _ in range(5):
        run(session, model, session.on_audio(silence(1.0), 0.0), got)
    run(session, model, session.on_message('{"type": "stop"}', 0.0), got)
    events = events_of(got)
    assert_event_invariants(events)
    shifted = [Note(n.onset + 93.25, n.offset + 93.25, n.pitch) for n in sorted(TRUTH, key=lambda n: n.onset)]
    assert events_to_notes(events) == pytest.approx(shifted)
    assert got[-1].duration == 98.25
