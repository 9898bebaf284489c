"""The pure event → MIDI core: channel discipline, overlapping keys, shared channel state between sessions."""

from __future__ import annotations

from collections import defaultdict

import mido
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.notes import DRUM_CHANNEL
from streamer.protocol import NoteEvent, NoteOff, NoteOn
from streamer.sinks.midi_render import ALL_NOTES_OFF, MELODIC_CHANNELS, ChannelState, MidiRenderer


def on(channel: int, note: int, velocity: int) -> mido.Message:
    return mido.Message("note_on", channel=channel, note=note, velocity=velocity)


def off(channel: int, note: int) -> mido.Message:
    return mido.Message("note_off", channel=channel, note=note)


def pc(channel: int, program: int) -> mido.Message:
    return mido.Message("program_change", channel=channel, program=program)


def all_off(channel: int) -> mido.Message:
    return mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0)


def test_an_overlapping_note_on_the_same_key_retriggers_instead_of_stacking():
    renderer = MidiRenderer()
    assert renderer.render([NoteOn(0, 0.0, 60, 90, 0, False), NoteOn(1, 0.5, 60, 80, 0, False)]) == [
        pc(0, 0),
        on(0, 60, 90),
        off(0, 60),
        on(0, 60, 80),
    ]
    assert renderer.render([NoteOff(0, 1.0)]) == []  # note 0 already ended by the retrigger
    assert renderer.render([NoteOff(1, 1.5)]) == [off(0, 60)]


def test_velocity_stays_audible_and_in_range_and_duplicates_are_dropped():
    renderer = MidiRenderer()
    out = renderer.render([NoteOn(0, 0.0, 60, 0, 0, False), NoteOn(1, 0.0, 62, 300, 0, False)])
    assert out[1:] == [on(0, 60, 1), on(0, 62, 127)]
    assert renderer.render([NoteOn(1, 0.1, 62, 100, 0, False)]) == []


def test_drums_go_to_channel_10_without_program_change():
    renderer = MidiRenderer()
    assert renderer.render([NoteOn(0, 0.0, 36, 100, 0, True), NoteOff(0, 0.1)]) == [on(9, 36, 100), off(9, 36)]
    assert renderer.close() == [all_off(DRUM_CHANNEL)]


def test_more_instruments_than_channels_reuse_the_least_recently_used_channel():
    renderer = MidiRenderer()
    events = [NoteOn(p, float(p), 60, 100, p, False) for p in range(15)]
    out = renderer.render(events)
    assert [m.channel for m in out if m.type == "program_change"] == list(MELODIC_CHANNELS)
    # Program 15 takes channel 1 (least recently used); note 0 still sounding there ends on that same channel.
    assert renderer.render([NoteOn(15, 15.0, 72, 100, 15, False)]) == [pc(0, 15), on(0, 72, 100)]
    assert renderer.render([NoteOff(0, 16.0)]) == [off(0, 60)]
    # Program 0 again: its channel now plays program 15, so the LRU channel (channel 2) is re-programmed.
    assert renderer.render([NoteOn(16, 17.0, 64, 100, 0, False)]) == [pc(1, 0), on(1, 64, 100)]


def test_sessions_sharing_a_full_port_never_cut_or_silence_each_other():
    state = ChannelState()
    a, b = MidiRenderer(state, "a"), MidiRenderer(state, "b")
    a.render([NoteOn(p, 0.0, 60, 100, p, False) for p in range(15)])
    # No channel is free: b joins the channel already playing its program (channel 1), with its own program change.
    assert b.render([NoteOn(0, 0.1, 60, 50, 0, False)]) == [pc(0, 0), off(0, 60), on(0, 60, 50)]
    closing = a.close()
    assert off(0, 60) not in closing  # b holds that key now
    assert all_off(0) not in closing  # and b still plays on channel 1
    assert [m.channel for m in closing if m.type == "control_change"] == list(MELODIC_CHANNELS[1:])
    assert b.close() == [off(0, 60), all_off(0)]


def test_a_closed_renderer_closes_once():
    renderer = MidiRenderer()
    renderer.render([NoteOn(0, 0.0, 60, 100, 0, False)])
    assert renderer.close() == [off(0, 60), all_off(0)]
    assert renderer.close() == []


@st.composite
def session_streams(draw: st.DrawFn) -> list[tuple[str, NoteEvent]]:
    """Interleaved committed events of two sessions: note-ons, and note-offs for some sounding notes."""
    stream: list[tuple[str, NoteEvent]] = []
    sounding: dict[str, list[int]] = {"a": [], "b": []}
    next_id = 0
    for _ in range(draw(st.integers(0, 60))):
        owner = draw(st.sampled_from("ab"))
        if sounding[owner] and draw(st.booleans()):
            note_id = sounding[owner].pop(draw(st.integers(0, len(sounding[owner]) - 1)))
            stream.append((owner, NoteOff(note_id, 0.0)))
        else:
            pitch, program, drum = draw(st.integers(36, 40)), draw(st.integers(0, 17)), draw(st.booleans())
            stream.append((owner, NoteOn(next_id, 0.0, pitch, 100, program, drum)))
            sounding[owner].append(next_id)
            next_id += 1
    return stream


@settings(max_examples=200, deadline=None)
@given(session_streams(), st.sampled_from("ab"))
def test_any_two_sessions_produce_a_clean_midi_stream(stream, first_to_close):
    state = ChannelState()
    renderers = {"a": MidiRenderer(state, "a"), "b": MidiRenderer(state, "b")}
    out: list[mido.Message] = []
    for owner, event in stream:
        out += renderers[owner].render([event])
    out += renderers[first_to_close].close()
    out += renderers["b" if first_to_close == "a" else "a"].close()

    down: dict[tuple[int, int], bool] = defaultdict(bool)
    programmed, played, silenced = set(), set(), set()
    for message in out:
        if message.type == "program_change":
            programmed.add(message.channel)
        elif message.type == "note_on":
            key = (message.channel, message.note)
            assert not down[key], f"two note-ons without a note-off on {key}"
            assert message.channel == DRUM_CHANNEL or message.channel in programmed
            assert message.velocity > 0
            down[key] = True
            played.add(message.channel)
        elif message.type == "note_off":
            assert down[(message.channel, message.note)], "note-off for a key that is not down"
            down[(message.channel, message.note)] = False
        else:
            assert not any(down[(message.channel, n)] for n in range(128)), "All Notes Off before the note-offs"
            silenced.add(message.channel)
    assert not any(down.values())
    assert silenced == played
