"""What a session hands to the engine and what comes back: shared by the session core and the engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """Work for the model: `payload` (a window, or a block of a streaming model) of one session, numbered in order.

    `live` jobs come from a client sending at real-time pace: when the engine falls behind, their queued jobs may be
    merged into the newest one (bounded latency). Jobs of uploads are never merged: the upload waits instead.
    """

    seq: int
    payload: Any
    live: bool


@dataclass(frozen=True, slots=True)
class Skipped:
    """The engine merged this job into a newer one because its stream lagged."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The model failed on this job; the session goes on with the next ones."""

    message: str


Result = Any | Skipped | Failed  # a model's output for the payload (window notes, a step's decisions), or why none
