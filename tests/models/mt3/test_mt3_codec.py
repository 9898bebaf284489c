"""MT3 vocabulary and codec: round trips on random note sets, and §6.3 decoding of hand-written sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.models.mt3.codec import (
    StepNote,
    decode_segments,
    decode_window,
    encode_segment,
    segment_start_step,
    window_end_step,
)
from streamer.models.mt3.spec import SAMPLE_RATE, WINDOW_SAMPLES
from streamer.models.mt3.vocab import EOS_ID, ISMIR2021, MT3, PAD_ID, UNK_ID, EventType, Vocabulary
from streamer.notes import WindowNote

# --- vocabulary ---------------------------------------------------------------------------------------------


def test_vocabulary_layouts_match_the_reference_table() -> None:
    assert MT3.embedding_rows == 1536 and ISMIR2021.embedding_rows == 1664
    assert MT3.codec_size == 1388 and ISMIR2021.codec_size == 1514
    assert (MT3.token(EventType.SHIFT, 0), MT3.token(EventType.SHIFT, 1000)) == (3, 1003)
    assert (MT3.token(EventType.PITCH, 0), MT3.token(EventType.PITCH, 127)) == (1004, 1131)
    assert (MT3.token(EventType.VELOCITY, 0), MT3.token(EventType.VELOCITY, 1)) == (1132, 1133)
    assert MT3.token(EventType.TIE) == 1134
    assert (MT3.token(EventType.PROGRAM, 0), MT3.token(EventType.DRUM, 127)) == (1135, 1390)
    assert (ISMIR2021.token(EventType.VELOCITY, 127), ISMIR2021.token(EventType.TIE)) == (1259, 1260)
    assert (ISMIR2021.token(EventType.PROGRAM, 0), ISMIR2021.token(EventType.DRUM, 127)) == (1261, 1516)
    for invalid in (PAD_ID, UNK_ID, 1391, 1490, 1535):
        assert MT3.event(invalid) is None
    assert MT3.event(1134) == (EventType.TIE, 0)
    assert MT3.bin_velocity(1) == 127 and MT3.velocity_bin(64) == 1 and MT3.velocity_bin(0) == 0
    assert ISMIR2021.bin_velocity(ISMIR2021.velocity_bin(77)) == 77


def test_segment_start_is_rounded_down_to_the_token_grid() -> None:
    assert segment_start_step(WINDOW_SAMPLES, SAMPLE_RATE) == 204  # 2.048 s -> 2.04 s
    assert segment_start_step(2 * WINDOW_SAMPLES, SAMPLE_RATE) == 409  # 4.096 s -> 4.09 s
    assert segment_start_step(8192, SAMPLE_RATE) == 51  # 0.512 s -> 0.51 s
    assert window_end_step(0, WINDOW_SAMPLES, SAMPLE_RATE) == 205  # events of [0, 2.048 s) lie before 2.05 s


# --- random note sets -----------------------------------------------------------------------------------------

MAX_STEP = 1500  # 15 s: about 7 segments


@st.composite
def note_sets(draw: st.DrawFn, vocab: Vocabulary) -> list[StepNote]:
    notes: list[StepNote] = []
    velocities = st.just(127) if vocab.velocity_bins == 1 else st.integers(1, 127)
    programs = st.integers(0, 127) if vocab.uses_programs else st.just(0)
    for _ in range(draw(st.integers(0, 12))):
        # One (pitch, program) track of back-to-back or spaced notes that never overlap.
        pitch, program = draw(st.integers(0, 127)), draw(programs)
        if any((n.pitch, n.program) == (pitch, program) for n in notes if not n.is_drum):
            continue
        time = draw(st.integers(0, MAX_STEP))
        for _ in range(draw(st.integers(1, 4))):
            onset = time + draw(st.integers(0, 300))
            offset = onset + draw(st.integers(1, 700))  # up to 7 s: ties over several segments
            notes.append(StepNote(pitch, onset, offset, draw(velocities), program, False))
            time = offset
    hits = draw(st.sets(st.tuples(st.integers(0, 127), st.integers(0, MAX_STEP)), max_size=10))
    notes += [StepNote(p, t, t + 1, draw(velocities), 0, True) for p, t in hits]
    return notes


def segments_for(notes: list[StepNote], vocab: Vocabulary) -> list[tuple[int, list[int]]]:
    last = max((n.offset for n in notes if n.offset is not None), default=0)
    starts = [segment_start_step(k * WINDOW_SAMPLES, SAMPLE_RATE) for k in range(last // 204 + 2)]
    ends: list[int | None] = [*starts[1:], None]
    return [(s, encode_segment(notes, s, e, vocab)) for s, e in zip(starts, ends, strict=True)]


def sort_key(n: StepNote) -> tuple:
    return (n.onset, n.offset, n.pitch, n.program, n.is_drum, n.velocity)


@settings(max_examples=150, deadline=None)
@given(note_sets(MT3))
def test_mt3_notes_tokens_notes_is_exact(notes: list[StepNote]) -> None:
    result = decode_segments(segments_for(notes, MT3), MT3)
    assert result.invalid == 0 and result.dropped == 0
    assert sorted(result.notes, key=sort_key) == sorted(notes, key=sort_key)


@settings(max_examples=80, deadline=None)
@given(note_sets(ISMIR2021))
def test_ismir2021_notes_tokens_notes_is_exact(notes: list[StepNote]) -> None:
    result = decode_segments(segments_for(notes, ISMIR2021), ISMIR2021)
    assert result.invalid == 0
    assert sorted(result.notes, key=sort_key) == sorted(notes, key=sort_key)


def expected_window_view(notes: list[StepNote], start_sample: int) -> list[WindowNote]:
    start = segment_start_step(start_sample, SAMPLE_RATE)
    end = window_end_step(start_sample, WINDOW_SAMPLES, SAMPLE_RATE)

    def rel(step: int) -> float:
        return (step * 160 - start_sample) / SAMPLE_RATE

    view = []
    for n in notes:
        assert n.onset is not None and n.offset is not None
        if n.is_drum:
            if start <= n.onset < end:
                view.append(WindowNote(n.pitch, rel(n.onset), rel(n.offset), n.velocity, 0, True))
        elif n.onset < end and n.offset >= start:
            onset = None if n.onset < start else rel(n.onset)
            offset = None if n.offset >= end else rel(n.offset)
            velocity = n.velocity if onset is not None else 100  # a tied note's velocity is not in the tokens
            view.append(WindowNote(n.pitch, onset, offset, velocity, n.program, False))
    return view


def window_key(n: WindowNote) -> tuple:
    return (n.onset is None, n.onset or 0.0, n.offset is None, n.offset or 0.0, n.pitch, n.program, n.is_drum)


@settings(max_examples=150, deadline=None)
@given(note_sets(MT3), st.integers(-8, 100))
def test_window_decoding_sees_ties_and_open_ends(notes: list[StepNote], hop_index: int) -> None:
    start_sample = hop_index * 4096  # 0.256 s hops: starts off the 10 ms grid too, and before 0 (silent lead)
    start = segment_start_step(start_sample, SAMPLE_RATE)
    end = window_end_step(start_sample, WINDOW_SAMPLES, SAMPLE_RATE)
    tokens = encode_segment(notes, start, end, MT3)
    decoded, result = decode_window(tokens, start_sample, WINDOW_SAMPLES, SAMPLE_RATE, MT3)
    assert result.invalid == 0
    assert sorted(decoded, key=window_key) == sorted(expected_window_view(notes, start_sample), key=window_key)


# --- official-style sequences, §6.3 -------------------------------------------------------------------------


def ids(*events: tuple[EventType, int] | int, vocab: Vocabulary = MT3) -> list[int]:
    return [e if isinstance(e, int) else vocab.token(*e) for e in events]


SHIFT, PITCH, VEL, PROG, DRUM = EventType.SHIFT, EventType.PITCH, EventType.VELOCITY, EventType.PROGRAM, EventType.DRUM
TIE = (EventType.TIE, 0)


def notes_of(segments: list[tuple[int, list[int]]]) -> tuple[set[tuple], int]:
    result = decode_segments(segments, MT3)
    return {(n.pitch, n.onset, n.offset, n.velocity, n.program, n.is_drum) for n in result.notes}, result.invalid


def test_onset_offset_program_and_drum() -> None:
    tokens = ids(TIE, (SHIFT, 10), (PROG, 33), (VEL, 1), (PITCH, 40), (SHIFT, 20), (DRUM, 36), (SHIFT, 50))
    tokens += ids((PROG, 33), (VEL, 0), (PITCH, 40), EOS_ID, (PITCH, 41))
    assert notes_of([(0, tokens)]) == ({(40, 10, 50, 127, 33, False), (36, 20, 21, 127, 0, True)}, 0)


def test_invalid_ids_are_skipped_and_decoding_goes_on() -> None:
    tokens = ids(TIE, PAD_ID, (SHIFT, 5), UNK_ID, 1400, (VEL, 1), 1535, (PITCH, 60), (SHIFT, 9), (VEL, 0), (PITCH, 60))
    assert notes_of([(0, tokens)]) == ({(60, 5, 9, 127, 0, False)}, 4)


def test_missing_tie_leaves_the_whole_segment_in_the_tie_section() -> None:
    tokens = ids((SHIFT, 5), (VEL, 1), (PITCH, 60), (SHIFT, 9), (VEL, 0), (PITCH, 60))
    assert notes_of([(0, tokens)]) == (set(), 2)


def test_tie_section_rules() -> None:
    first = ids(TIE, (SHIFT, 10), (VEL, 1), (PITCH, 60), (PITCH, 62), (PITCH, 64))
    # 60 continues (tied), 62 is not tied so the tie ends it at the segment start, 61 was never active,
    # 60 twice is invalid, and a tie outside the tie section is invalid.
    second = ids((PITCH, 60), (PITCH, 61), (PITCH, 60), (PITCH, 64), TIE, TIE, (SHIFT, 250), (VEL, 0), (PITCH, 60))
    notes, invalid = notes_of([(0, first), (204, second)])
    assert invalid == 3
    # 64 stays active after the tie and is flushed at the last event time.
    assert notes == {(60, 10, 454, 127, 0, False), (62, 10, 204, 127, 0, False), (64, 10, 454, 127, 0, False)}


def test_time_going_backwards_offsets_without_onsets_and_silent_drums_are_invalid() -> None:
    tokens = ids(TIE, (SHIFT, 50), (VEL, 1), (PITCH, 60), (SHIFT, 20), (PITCH, 61), (SHIFT, 60), (VEL, 0))
    tokens += ids((PITCH, 70), (DRUM, 36), (VEL, 1), (PITCH, 60))
    notes, invalid = notes_of([(0, tokens)])
    # 61 at t=20 < 50: invalid; off 70 never on: invalid; drum at velocity 0: invalid; 60 again re-onsets.
    assert invalid == 3
    assert notes == {(60, 50, 60, 127, 0, False), (60, 60, 61, 127, 0, False)}


def test_events_after_the_next_segment_start_are_dropped() -> None:
    first = ids(TIE, (SHIFT, 10), (VEL, 1), (PITCH, 60), (SHIFT, 204), (VEL, 0), (PITCH, 60), (SHIFT, 205), (PITCH, 62))
    second = ids((PITCH, 60), TIE)
    result = decode_segments([(204, second), (0, first)], MT3)  # order of arrival does not matter
    assert [(n.pitch, n.onset, n.offset) for n in result.notes] == [(60, 10, 204)]
    assert result.dropped == 2 and result.invalid == 1  # the tie-section pitch of an ended note


def test_zero_length_notes_last_one_step() -> None:
    tokens = ids(TIE, (SHIFT, 7), (VEL, 1), (PITCH, 60), (VEL, 0), (PITCH, 60))
    assert notes_of([(0, tokens)]) == ({(60, 7, 8, 127, 0, False)}, 0)


def test_ismir2021_velocities_and_no_ties() -> None:
    tokens = ids((SHIFT, 3), (VEL, 90), (PITCH, 60), EOS_ID, vocab=ISMIR2021)
    later = ids((SHIFT, 300), (VEL, 0), (PITCH, 60), vocab=ISMIR2021)
    result = decode_segments([(0, tokens), (204, later)], ISMIR2021)
    assert [(n.onset, n.offset, n.velocity) for n in result.notes] == [(3, 504, 90)]


def test_window_relative_times_use_the_rounded_start() -> None:
    start_sample = 8192  # 0.512 s, rounded start 0.51 s
    tokens = ids((PROG, 5), (PITCH, 60), TIE, (SHIFT, 100), (VEL, 0), (PITCH, 60), (VEL, 1), (PITCH, 62))
    notes, result = decode_window(tokens, start_sample, WINDOW_SAMPLES, SAMPLE_RATE, MT3)
    assert result.invalid == 0
    assert notes[0] == WindowNote(60, None, pytest.approx(1.0 - 0.002), 100, 5, False)
    assert notes[1] == WindowNote(62, pytest.approx(0.998), None, 127, 5, False)


def test_window_decoding_drops_events_past_the_window() -> None:
    tokens = ids(TIE, (SHIFT, 204), (VEL, 1), (PITCH, 60), (SHIFT, 205), (PITCH, 61))
    notes, result = decode_window(tokens, 0, WINDOW_SAMPLES, SAMPLE_RATE, MT3)
    assert [(n.pitch, n.onset) for n in notes] == [(60, pytest.approx(2.04))]
    assert result.dropped == 2
