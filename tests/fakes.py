"""Models for tests: they see real windows from the real pipeline and answer from a known truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from streamer.audio.windows import Window
from streamer.models.base import Model, ModelSpec
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
