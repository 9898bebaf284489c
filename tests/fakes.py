"""Models for tests: they see real windows from the real pipeline and answer from a known truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from streamer.audio.windows import Window
from streamer.models.base import Model, ModelSpec, NoteDecision, StepResult, StreamingModel
from streamer.notes import Note, WindowNote
from tests.windowing import perfect_view

SPEC = ModelSpec(
    name="oracle",
    sample_rate=16000,
    window_samples=32000,
    hop_quantum=160,
    default_hop_s=0.5,
    min_hop_s=0.1,
    commit_margin_s=0.25,
    description="test model that reports a known note set",
)


class OracleModel(Model):
    """Reports, for each window, exactly the notes of `truth` that fall inside it (a perfect model)."""

    def __init__(self, truth: Sequence[Note], spec: ModelSpec = SPEC, delay_s: float = 0.0) -> None:
        self.truth = list(truth)
        self.spec = spec
        self.delay_s = delay_s
        self.batches: list[list[int]] = []  # window starts of every batch, for tests of batching
        self.fail_on: set[int] = set()  # window starts whose batch raises
        self.lock = threading.Lock()

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        with self.lock:
            self.batches.append([req.start for req in batch])
        if self.delay_s:
            time.sleep(self.delay_s)
        if any(req.start in self.fail_on for req in batch):
            raise RuntimeError("simulated model failure")
        rate = self.spec.sample_rate
        return [perfect_view(self.truth, req.start / rate, self.spec.window_s) for req in batch]


STREAM_SPEC = ModelSpec(
    name="oracle-stream",
    sample_rate=16000,
    window_samples=800,  # 50 ms blocks
    hop_quantum=800,
    default_hop_s=0.05,
    min_hop_s=0.05,
    commit_margin_s=0.0,
    description="test streaming model that settles a known note set",
    streaming=True,
    lookahead_s=0.1,
)


class OracleStreamer(StreamingModel):
    """Settles each note of `truth` once the audio has passed its onset (or offset) by the look-ahead, like a
    perfect streaming model; interim notes are those whose onset has been heard but is not settled yet."""

    def __init__(self, truth: Sequence[Note], spec: ModelSpec = STREAM_SPEC, delay_s: float = 0.0) -> None:
        self.truth = sorted(truth, key=lambda n: n.onset)
        self.spec = spec
        self.delay_s = delay_s
        self.batches: list[list[int]] = []
        self.gaps: list[int] = []

    def new_stream(self) -> dict[str, float]:
        return {"settled": 0.0}

    def run_batch(self, payloads: Sequence[Any], states: Sequence[Any]) -> list[Any]:
        self.batches.append([b.start for b in payloads])
        if self.delay_s:
            time.sleep(self.delay_s)
        rate, ahead = self.spec.sample_rate, self.spec.lookahead_s
        out = []
        for block, state in zip(payloads, states, strict=True):
            if block.gap:
                self.gaps.append(block.gap)
            heard = (block.start + len(block.audio)) / rate
            until = heard + 10.0 if block.final else heard - ahead
            lo = state["settled"]
            edges = [(n.onset, True, n) for n in self.truth if lo <= n.onset < until]
            edges += [(min(n.offset, heard) if block.final else n.offset, False, n) for n in self.truth
                      if lo <= n.offset < until or (block.final and n.onset < heard <= n.offset)]  # fmt: skip
            edges.sort(key=lambda e: (e[0], e[1]))
            decisions = [NoteDecision(t, n.pitch, start, n.velocity) for t, start, n in edges]
            state["settled"] = max(lo, until)
            interim = None
            if block.provisional:
                interim = [NoteDecision(n.onset, n.pitch, True, n.velocity) for n in self.truth
                           if until <= n.onset < heard]  # fmt: skip
            out.append(StepResult(decisions, until, interim))
        return out
