"""The timeline of a stream that resumed on other servers: sessions spliced at resume points, nothing committed
repeated, ids unique, notes sounding at a resume point continued or ended there (never struck twice)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import protocol as p
from streamer.client.timeline import CONTINUATION_S, Timeline
from tests.windowing import assert_event_invariants


def on(id: int, time: float, pitch: int) -> p.NoteOn:
    return p.NoteOn(id=id, time=time, pitch=pitch, velocity=80, program=0, is_drum=False)


def off(id: int, time: float) -> p.NoteOff:
    return p.NoteOff(id=id, time=time)


def pedal(time: float, down: bool) -> p.Control:
    return p.Control(time=time, control=64, value=127 if down else 0)


def notes(events: list[p.NoteEvent]) -> list[tuple[int, float, float]]:
    """(pitch, onset, offset) of every note on the timeline."""
    opened = {e.id: e for e in events if isinstance(e, p.NoteOn)}
    return sorted((opened[e.id].pitch, opened[e.id].time, e.time) for e in events if isinstance(e, p.NoteOff))


def first_session(timeline: Timeline) -> None:
    """Notes 1 (C4) ended, 2 (E4) sounding when the server vanished; committed up to 3.0 s."""
    timeline.on_events([on(1, 0.5, 60), off(1, 1.0), on(2, 2.0, 64)])
    timeline.on_progress(3.0)
    timeline.on_session_end(None, final=False)


def test_a_single_session_passes_through_with_the_servers_ids() -> None:
    timeline = Timeline()
    events: list[p.NoteEvent] = [on(1, 0.5, 60), on(2, 0.6, 64), off(2, 0.9), off(1, 1.0)]
    assert timeline.on_events(events) == events
    assert timeline.committed == 1.0
    assert timeline.on_progress(1.5) == [] and timeline.committed == 1.5
    assert timeline.on_session_end(2.0, final=True) == [] and timeline.committed == 2.0


def test_a_note_sounding_at_the_resume_point_is_continued_by_the_new_session() -> None:
    timeline = Timeline()
    first_session(timeline)
    timeline.resume(3.0, drained=False)
    # The new session starts 1 s before (pre-roll): it hears E4 from 2.0 s on, and a note the old one never had.
    out = timeline.on_events([on(1, 2.0, 64), on(2, 2.5, 67), off(2, 2.8), on(3, 2.9, 71)])
    out += timeline.on_events([on(4, 3.3, 62), off(1, 3.5), off(3, 3.6)])
    assert out == [on(3, 3.3, 62), off(2, 3.5)]  # E4 ends when the new session ends it; D4 gets a fresh id
    assert timeline.on_session_end(None, final=False) == []
    assert timeline.close(4.0) == [off(3, 4.0)]
    assert notes(timeline.events) == [(60, 0.5, 1.0), (62, 3.3, 4.0), (64, 2.0, 3.5)]
    assert_event_invariants(timeline.events)


def test_a_note_not_continued_ends_at_the_resume_point_once_the_new_session_is_past_it() -> None:
    timeline = Timeline()
    first_session(timeline)
    timeline.resume(3.0, drained=False)
    assert timeline.on_events([on(1, 3.05, 62)]) == []  # within the continuation span: undecided
    assert timeline.deciding
    out = timeline.on_progress(3.0 + CONTINUATION_S + 0.01)
    assert out == [off(2, 3.0), on(3, 3.05, 62)]
    assert not timeline.deciding


def test_the_same_pitch_struck_soon_after_the_resume_point_takes_over_the_sounding_note() -> None:
    timeline = Timeline()
    first_session(timeline)
    timeline.resume(3.0, drained=False)
    # A model hearing a held note from its first block settles it a few frames in.
    out = timeline.on_events([on(1, 3.023, 64), on(2, 3.5, 67), off(1, 3.6)])
    assert out == [on(3, 3.5, 67), off(2, 3.6)]


def test_the_same_pitch_struck_later_is_a_new_note() -> None:
    timeline = Timeline()
    first_session(timeline)
    timeline.resume(3.0, drained=False)
    out = timeline.on_events([on(1, 3.0 + 2 * CONTINUATION_S, 64)])
    assert out == [off(2, 3.0), on(3, 3.0 + 2 * CONTINUATION_S, 64)]


def test_notes_a_draining_server_ended_at_the_resume_point_stay_ended() -> None:
    timeline = Timeline()
    timeline.on_events([on(1, 2.0, 64)])
    timeline.on_events([off(1, 3.0)])  # the drain closes sounding notes at the end of the audio heard
    timeline.on_session_end(3.0, final=False)
    timeline.resume(3.0, drained=True)
    out = timeline.on_events([on(1, 2.0, 64), on(2, 3.4, 60), off(1, 3.5), off(2, 3.9)])
    assert out == [on(2, 3.4, 60), off(2, 3.9)]  # E4 is not struck again, and its later end is not repeated


def test_without_a_drain_a_note_ended_at_the_resume_point_may_start_again() -> None:
    timeline = Timeline()
    timeline.on_events([on(1, 2.0, 64), off(1, 3.0)])
    timeline.on_session_end(None, final=False)
    timeline.resume(3.0, drained=False)
    assert timeline.on_events([on(1, 3.05, 64), off(1, 3.4)]) == [on(2, 3.05, 64), off(2, 3.4)]


def test_nothing_before_the_resume_point_comes_from_the_new_session() -> None:
    timeline = Timeline()
    timeline.on_events([on(1, 0.5, 60), off(1, 1.0)])
    timeline.on_progress(3.0)
    timeline.on_session_end(None, final=False)
    timeline.resume(3.0, drained=False)
    # Pre-roll: the new session's opinion of 2–3 s differs (a note the old one did not commit): the old word stands.
    out = timeline.on_events([on(1, 2.2, 65), off(1, 2.4), on(2, 2.8, 67), on(3, 3.5, 69), off(2, 3.6)])
    assert out == [on(2, 3.5, 69)]
    assert all(e.time >= 3.0 for e in timeline.events[2:])


def test_a_session_that_vanishes_while_deciding_commits_what_it_held() -> None:
    timeline = Timeline()
    first_session(timeline)
    timeline.resume(3.0, drained=False)
    assert timeline.on_events([on(1, 3.02, 67)]) == []
    out = timeline.on_session_end(None, final=False)  # gone before the decision: decide with what it said
    assert out == [off(2, 3.0), on(3, 3.02, 67)]
    timeline.resume(timeline.committed, drained=False)
    assert timeline.on_events([on(1, 3.03, 67), off(1, 3.4), on(2, 3.5, 72)]) == [off(3, 3.4), on(4, 3.5, 72)]


def test_close_ends_what_still_sounds() -> None:
    timeline = Timeline()
    first_session(timeline)
    assert timeline.close(timeline.committed) == [off(2, 3.0)]
    assert_event_invariants(timeline.events)


def test_pedals_held_over_the_resume_point_continue_or_are_released_there() -> None:
    timeline = Timeline()
    timeline.on_events([pedal(1.0, True)])
    timeline.on_progress(2.0)
    timeline.on_session_end(None, final=False)
    timeline.resume(2.0, drained=False)
    out = timeline.on_events([pedal(1.5, True), pedal(2.7, False)])
    assert out == [pedal(2.7, False)]  # the new session held it (pressed in its pre-roll): its release ends it
    timeline.on_session_end(None, final=False)
    timeline.resume(2.7, drained=False)
    assert timeline.on_events([pedal(3.0, True)]) == [pedal(3.0, True)]
    timeline.on_session_end(None, final=False)
    timeline.resume(3.2, drained=False)
    out = timeline.on_progress(3.5)  # the third session does not hold it: released at the resume point
    assert out == [pedal(3.2, False)]


def test_events_wait_for_the_servers_confirmation() -> None:
    timeline = Timeline(confirm=True)
    assert timeline.on_events([on(1, 0.5, 60)]) == [on(1, 0.5, 60)]  # no interim seen yet: this model sends none
    timeline.on_progress(0.6)
    assert timeline.on_events([off(1, 0.9)]) == []
    assert timeline.on_progress(1.0) == [off(1, 0.9)]
    assert timeline.committed == 1.0


def test_a_drained_sessions_unconfirmed_end_is_redone_by_the_next_session() -> None:
    """The draining server committed its last audio without look-ahead: it missed a note starting just before the
    end and cut the sounding one. Neither is shown; the next session, resuming from the last confirmed point, hears
    that audio with its look-ahead."""
    timeline = Timeline(confirm=True)
    timeline.on_events([on(1, 2.0, 64)])
    timeline.on_progress(2.9)
    timeline.on_events([off(1, 3.0)])  # the drain's final block and close, then `done`
    assert timeline.on_session_end(3.0, final=False) == []
    assert timeline.committed == 2.9
    timeline.resume(timeline.committed, drained=True)
    out = timeline.on_events([on(1, 2.0, 64), on(2, 2.95, 67), off(1, 3.5)])
    out += timeline.on_progress(3.6)
    assert out == [on(2, 2.95, 67), off(1, 3.5)]  # E4 held on, and the note the drain missed


def test_a_final_end_confirms_the_last_events() -> None:
    timeline = Timeline(confirm=True)
    timeline.on_progress(0.1)
    timeline.on_events([on(1, 0.5, 60), off(1, 1.0)])
    assert timeline.on_session_end(1.0, final=True) == [on(1, 0.5, 60), off(1, 1.0)]
    assert timeline.committed == 1.0


def test_without_a_next_session_the_unconfirmed_end_is_the_best_there_is() -> None:
    timeline = Timeline(confirm=True)
    timeline.on_progress(0.1)
    timeline.on_events([on(1, 0.5, 60)])
    timeline.on_session_end(None, final=False)
    assert timeline.close(timeline.committed) == [on(1, 0.5, 60), off(1, 0.5)]


@st.composite
def sessions(draw: st.DrawFn) -> list[tuple[float, list[p.NoteEvent]]]:
    """Sessions of one stream: each starts before the previous one's last event (pre-roll) and reports well-formed
    events of its own (ids from 1, times in order, one note per pitch at a time)."""
    out: list[tuple[float, list[p.NoteEvent]]] = []
    at = 0.0
    for _ in range(draw(st.integers(1, 4))):
        start = max(0.0, at - draw(st.sampled_from([0.0, 0.5, 1.0])))
        times = sorted(draw(st.lists(st.floats(start, start + 5.0), min_size=0, max_size=16)))
        events: list[p.NoteEvent] = []
        sounding: dict[int, int] = {}
        next_id = 1
        for t in times:
            pitch = draw(st.sampled_from([60, 62, 64]))
            if pitch in sounding:
                events.append(off(sounding.pop(pitch), t))
            else:
                events.append(on(next_id, t, pitch))
                sounding[pitch] = next_id
                next_id += 1
        out.append((start, events))
        at = times[len(times) // 2] if times else start
    return out


@settings(max_examples=200, deadline=None)
@given(sessions(), st.lists(st.booleans(), min_size=4, max_size=4), st.booleans())
def test_any_sequence_of_sessions_makes_one_well_formed_timeline(
    streams: list[tuple[float, list[p.NoteEvent]]], drained: list[bool], confirm: bool
) -> None:
    timeline = Timeline(confirm=confirm)
    for i, (_, events) in enumerate(streams):
        if i:
            resume_at = timeline.committed
            before = len(timeline.events)
            timeline.resume(resume_at, drained=drained[i])
        cut = len(events) // 2 if i < len(streams) - 1 else len(events)
        for event in events[:cut]:  # confirmed one by one, the last one left unconfirmed
            timeline.on_events([event])
            timeline.on_progress(event.time)
        timeline.on_events(events[cut:][:1])
        timeline.on_session_end(None, final=i == len(streams) - 1)
        if i:
            # Nothing the new session said before the resume point reached the timeline.
            assert all(e.time >= resume_at - 1e-9 for e in timeline.events[before:])
    timeline.close(timeline.committed)
    assert_event_invariants(timeline.events)
