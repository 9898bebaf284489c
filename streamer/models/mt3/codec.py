"""Tokens ↔ notes for MT3 segments (reference §6.2 grammar, §6.3 decoding).

Times are integer 10 ms steps on the stream's clock inside the codec, so segment-start rounding and
boundaries are exact; seconds appear only at the edges. Two ways to decode:
- `decode_segments`: the official file-level decoding, one state carried across consecutive segments, each
  segment cut at the next one's start (max_time). Gives finished `Note`s.
- `decode_window`: one window decoded with a fresh state, as the streaming server needs. The tie section then
  names the notes already sounding at the window start (onset None), and notes still active when the tokens
  end are still sounding at the window end (offset None). Everything else follows §6.3.
`encode_segment` writes the tokens a perfect model would emit for a set of notes (tests, test models).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from streamer.models.mt3.vocab import EOS_ID, MAX_SHIFT_STEPS, STEPS_PER_SECOND, EventType, Vocabulary
from streamer.notes import WindowNote

INITIAL_VELOCITY = 100  # the official decoding state's starting velocity
MIN_NOTE_STEPS = 1  # notes last at least 10 ms
NoteKey = tuple[int, int]  # (pitch, program)


def segment_start_step(start_sample: int, sample_rate: int) -> int:
    """A segment's start rounded down to the 10 ms grid (§3.6): 2.048 s → 204 steps (2.04 s)."""
    return start_sample * STEPS_PER_SECOND // sample_rate


def to_step(seconds: float) -> int:
    return round(seconds * STEPS_PER_SECOND)


@dataclass(frozen=True, slots=True)
class StepNote:
    """A decoded note in steps. None ends only arise in window decoding (see `decode_window`)."""

    pitch: int
    onset: int | None
    offset: int | None
    velocity: int
    program: int
    is_drum: bool


@dataclass(slots=True)
class DecodeResult:
    notes: list[StepNote]
    invalid: int = 0  # tokens skipped as invalid (§6.3), a health signal for the model
    dropped: int = 0  # tokens past max_time


@dataclass(slots=True)
class _State:
    """The official decoding state (§6.3), plus the window-mode switch."""

    vocab: Vocabulary
    window_mode: bool
    time: int | None = None  # no event yet (window starts can be negative: the stream's silent lead)
    velocity: int = INITIAL_VELOCITY
    program: int = 0
    active: dict[NoteKey, tuple[int | None, int]] = field(default_factory=dict)
    tied: set[NoteKey] = field(default_factory=set)
    tie_section: bool = False
    result: DecodeResult = field(default_factory=lambda: DecodeResult([]))

    def segment(self, tokens: Sequence[int], start: int, max_step: int | None) -> None:
        if self.vocab.uses_ties:
            self.tied.clear()
            self.tie_section = True
        t, steps = start, 0
        for position, token in enumerate(tokens):
            if token == EOS_ID:
                return
            event = self.vocab.event(token)
            if event is None:
                self.result.invalid += 1
                continue
            kind, value = event
            if kind is EventType.SHIFT:
                steps += value
                t = start + steps
                if max_step is not None and t > max_step:
                    self.result.dropped += len(tokens) - position
                    return
                continue
            steps = 0
            if (self.time is not None and t < self.time) or not self._event(t, kind, value):
                self.result.invalid += 1
                continue

    def _event(self, t: int, kind: EventType, value: int) -> bool:
        """Apply one non-shift event at time t; False when it is invalid."""
        self.time = t
        if kind is EventType.VELOCITY:
            self.velocity = self.vocab.bin_velocity(value)
        elif kind is EventType.PROGRAM:
            self.program = value
        elif kind is EventType.PITCH:
            return self._pitch(t, (value, self.program))
        elif kind is EventType.DRUM:
            if self.velocity == 0:
                return False
            self._emit(value, t, t + MIN_NOTE_STEPS, self.velocity, 0, is_drum=True)
        elif kind is EventType.TIE:
            if not self.tie_section:
                return False
            for key in [k for k in self.active if k not in self.tied]:
                self._close(key, t)
            self.tie_section = False
        return True

    def _pitch(self, t: int, key: NoteKey) -> bool:
        if self.tie_section:
            if key in self.tied:
                return False
            if key not in self.active:
                if not self.window_mode:
                    return False
                # A fresh window: the tie section is our only knowledge of what was sounding before.
                self.active[key] = (None, self.velocity)
            self.tied.add(key)
        elif self.velocity == 0:
            if key in self.active:
                self._close(key, t)
            elif self.window_mode and not self.vocab.uses_ties:
                # Without ties a window cannot know a note began before it; its offset still says so.
                self._emit(key[0], None, t, INITIAL_VELOCITY, key[1], is_drum=False)
            else:
                return False
        else:
            if key in self.active:
                self._close(key, t)
            self.active[key] = (t, self.velocity)
        return True

    def _close(self, key: NoteKey, t: int) -> None:
        onset, velocity = self.active.pop(key)
        self._emit(key[0], onset, t, velocity, key[1], is_drum=False)

    def _emit(
        self, pitch: int, onset: int | None, offset: int | None, velocity: int, program: int, *, is_drum: bool
    ) -> None:
        if onset is not None and offset is not None:
            offset = max(offset, onset + MIN_NOTE_STEPS)
        self.result.notes.append(StepNote(pitch, onset, offset, velocity, program, is_drum))

    def flush(self) -> None:
        """End of input: file mode ends notes at the current time (§6.3 step 4); window mode leaves them open."""
        for key in list(self.active):
            onset, velocity = self.active.pop(key)
            if self.window_mode:
                self._emit(key[0], onset, None, velocity, key[1], is_drum=False)
            else:
                assert onset is not None and self.time is not None
                end = max(self.time, onset + MIN_NOTE_STEPS)
                self._emit(key[0], onset, end, velocity, key[1], is_drum=False)


def decode_segments(segments: Sequence[tuple[int, Sequence[int]]], vocab: Vocabulary) -> DecodeResult:
    """Official decoding of consecutive segments given as (start step, model ids), in any order."""
    ordered = sorted(segments, key=lambda s: s[0])
    state = _State(vocab, window_mode=False)
    for index, (start, tokens) in enumerate(ordered):
        max_step = ordered[index + 1][0] if index + 1 < len(ordered) else None
        state.segment(tokens, start, max_step)
    state.flush()
    return state.result


def decode_window(
    tokens: Sequence[int], start_sample: int, window_samples: int, sample_rate: int, vocab: Vocabulary
) -> tuple[list[WindowNote], DecodeResult]:
    """One window's ids → notes with times relative to the window's first sample (`start_sample`)."""
    start = segment_start_step(start_sample, sample_rate)
    end = window_end_step(start_sample, window_samples, sample_rate)
    state = _State(vocab, window_mode=True)
    state.segment(tokens, start, end - 1)
    state.flush()
    samples_per_step = sample_rate // STEPS_PER_SECOND

    def relative(step: int | None) -> float | None:
        return None if step is None else (step * samples_per_step - start_sample) / sample_rate

    notes = [
        WindowNote(
            pitch=n.pitch,
            onset=relative(n.onset),
            offset=relative(n.offset),
            velocity=n.velocity,
            program=n.program,
            is_drum=n.is_drum,
        )
        for n in state.result.notes
    ]
    return notes, state.result


def window_end_step(start_sample: int, window_samples: int, sample_rate: int) -> int:
    """First step at or after the window's end: events of the window lie before it."""
    return math.ceil((start_sample + window_samples) * STEPS_PER_SECOND / sample_rate)


def encode_segment(notes: Iterable[StepNote], start: int, end: int | None, vocab: Vocabulary) -> list[int]:
    """The ids (EOS included) of the segment [start, end) of a note set, per the §6.2 grammar.

    Notes are in steps with both ends known. Pitched notes sounding at `start` (onset before it, offset at or
    after it) go into the tie section; an offset exactly at `start` is then written at shift 0. Events at one
    time: offsets before onsets, each sorted by (is_drum, program, pitch). Program and velocity tokens are
    left out when they repeat the previous one within the segment.
    """
    notes = list(notes)
    tokens: list[int] = []
    state: dict[str, int | None] = {"program": None, "velocity": None}

    def change(name: str, kind: EventType, value: int) -> None:
        if state[name] != value:
            tokens.append(vocab.token(kind, value))
            state[name] = value

    if vocab.uses_ties:
        carried = sorted(
            (n.program, n.pitch)
            for n in notes
            if not n.is_drum and n.onset is not None and n.offset is not None and n.onset < start <= n.offset
        )
        for program, pitch in carried:
            if vocab.uses_programs:
                change("program", EventType.PROGRAM, program)
            tokens.append(vocab.token(EventType.PITCH, pitch))
        tokens.append(vocab.token(EventType.TIE))

    def inside(step: int | None) -> bool:
        return step is not None and step >= start and (end is None or step < end)

    events = []  # (time, is_onset, is_drum, program, pitch, velocity)
    for n in notes:
        if inside(n.onset):
            events.append((n.onset, True, n.is_drum, n.program, n.pitch, n.velocity))
        if not n.is_drum and inside(n.offset):
            events.append((n.offset, False, False, n.program, n.pitch, 0))
    events.sort(key=lambda e: e[:5])
    previous = start
    for time, is_onset, is_drum, program, pitch, velocity in events:
        if time != previous:
            remaining = time - start
            while remaining > MAX_SHIFT_STEPS:
                tokens.append(vocab.token(EventType.SHIFT, MAX_SHIFT_STEPS))
                remaining -= MAX_SHIFT_STEPS
            tokens.append(vocab.token(EventType.SHIFT, remaining))
            previous = time
        velocity_bin = vocab.velocity_bin(velocity) if is_onset else 0
        if is_drum:
            change("velocity", EventType.VELOCITY, velocity_bin)
            tokens.append(vocab.token(EventType.DRUM, pitch))
            continue
        if vocab.uses_programs:
            change("program", EventType.PROGRAM, program)
        change("velocity", EventType.VELOCITY, velocity_bin)
        tokens.append(vocab.token(EventType.PITCH, pitch))
    tokens.append(EOS_ID)
    return tokens
