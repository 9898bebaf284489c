"""The streaming path of a session: audio → fixed blocks → the model's settled note decisions → committed events.

Used for streaming-native models (spec.streaming): the model keeps the stream's state and settles note starts as
soon as its frames are final, and note ends once the energy has stayed low (ends are settled later than starts).
This track numbers the notes and keeps the protocol's promises: events final and in time order (a decision that
arrives after a later one was already sent is placed at the time of that last event), every note_on with exactly
one note_off. Interim notes, when the client asked, are relayed as they come. Pure: no threads, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.models.base import Block, ModelSpec, StepResult
from streamer.protocol import Interim, InterimNote, NoteEvent, NoteOff, NoteOn, Progress, ServerMessage

INTERIM_DIGITS = 4


@dataclass(frozen=True, slots=True)
class PlannedBlock:
    payload: Block

    @property
    def start(self) -> int:
        return self.payload.start


class StreamingTrack:
    def __init__(self, spec: ModelSpec, interim: bool, progress: bool = False) -> None:
        self.spec = spec
        self.block = spec.window_samples
        self.interim = interim
        self.progress = progress
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._start = 0  # model-rate sample of the next block's first sample
        self._next_id = 1
        self._sounding: dict[int, NoteOn] = {}  # pitch → its note_on
        self._last = 0.0  # time of the last event sent
        self.notes_committed = 0

    def push(self, samples: np.ndarray) -> list[PlannedBlock]:
        if len(samples):
            self._buffer.append(np.asarray(samples, dtype=np.float32))
            self._buffered += len(samples)
        planned = []
        while self._buffered >= self.block:
            planned.append(self._take(self.block, final=False))
        return planned

    def flush(self) -> list[PlannedBlock]:
        """Nothing to do: a streaming model commits every note as soon as it is settled."""
        return []

    def finish(self, tail: np.ndarray) -> list[PlannedBlock]:
        """End of stream: the resampler's `tail`, whole blocks, then the rest as the final block."""
        planned = self.push(tail)
        return [*planned, self._take(self._buffered, final=True)]

    def apply(self, planned: PlannedBlock, result: StepResult) -> tuple[list[NoteEvent], list[ServerMessage]]:
        events: list[NoteEvent] = []
        for decision in result.decisions:
            t = max(decision.time, self._last)
            if decision.start:
                if decision.pitch in self._sounding:  # the model ends a note before its next start; be safe
                    events.append(self._end(decision.pitch, t))
                events.append(self._begin(decision.pitch, decision.velocity, t))
            elif decision.pitch in self._sounding:
                events.append(self._end(decision.pitch, t))
        horizon = round(max(result.horizon, self._last), INTERIM_DIGITS)
        messages: list[ServerMessage] = []
        if self.interim and result.interim is not None:
            notes = [
                InterimNote(pitch=d.pitch, onset=round(max(d.time, horizon), INTERIM_DIGITS), velocity=d.velocity)
                for d in result.interim
            ]
            messages.append(Interim(time=horizon, notes=notes))
        if self.progress:
            messages.append(Progress(time=horizon))
        return events, messages

    def close(self, end_s: float) -> list[NoteEvent]:
        t = max(end_s, self._last)
        return [self._end(pitch, t) for pitch in list(self._sounding)]

    def _take(self, count: int, final: bool) -> PlannedBlock:
        joined = np.concatenate(self._buffer) if len(self._buffer) > 1 else (self._buffer or [np.zeros(0)])[0]
        audio, rest = joined[:count], joined[count:]
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)
        block = Block(np.ascontiguousarray(audio, dtype=np.float32), self._start, final=final, provisional=self.interim)
        self._start += count
        return PlannedBlock(block)

    def _begin(self, pitch: int, velocity: int, t: float) -> NoteOn:
        event = NoteOn(id=self._next_id, time=t, pitch=pitch, velocity=min(max(velocity, 1), 127), program=0,
                       is_drum=False)  # fmt: skip
        self._next_id += 1
        self._sounding[pitch] = event
        self._last = t
        return event

    def _end(self, pitch: int, t: float) -> NoteOff:
        on = self._sounding.pop(pitch)
        self.notes_committed += 1
        self._last = max(t, on.time)
        return NoteOff(id=on.id, time=self._last)
