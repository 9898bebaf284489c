"""Offline transcription on the server's own path: the same Session and the same engine batching, run synchronously.

A file is fed to a `Session` in chunks, as an upload at full speed would be; the engine runs the queued jobs on
this thread (`Engine.run_pending`) with the worker's batching rules, so the result equals streaming the file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamer import protocol as p
from streamer.config import LimitsConfig
from streamer.engine import Engine
from streamer.jobs import Result
from streamer.models.base import Model
from streamer.session import Output, Session, SessionOptions

CHUNK_SECONDS = 1.0
# Offline, nothing is live: no pace, frame-rate or length limit applies to a file.
UNLIMITED = LimitsConfig(max_frame_bytes=1 << 62, max_frame_seconds=CHUNK_SECONDS, max_frames_per_audio_s=1e9,
                         max_text_messages_per_s=1e9, max_session_s=1e12, faster_than_realtime="allow")  # fmt: skip


def transcribe_array(
    model: Model,
    audio: np.ndarray,
    sample_rate: int,
    *,
    hop_s: float | None = None,
    commit_margin_s: float | None = None,
    max_batch: int = 0,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[p.NoteEvent], p.Done]:
    """Transcribe mono float32 audio; returns the committed events and the `done` summary a client would get."""
    options = SessionOptions(model.spec.name, hop_s=hop_s, commit_margin_s=commit_margin_s, limits=UNLIMITED)
    session = Session("offline", {model.spec.name: model.spec}, options)
    engine = Engine(model, max_batch=max_batch, max_queued=1 << 30)
    handle = engine.open_stream()
    events: list[p.NoteEvent] = []
    done: list[p.Done] = []
    failures: list[str] = []

    def take(out: Output) -> None:
        events.extend(out.events)
        done.extend(m for m in out.messages if isinstance(m, p.Done))
        failures.extend(f"{m.code}: {m.message}" for m in out.messages if isinstance(m, p.Error) and m.fatal)
        for job in out.jobs:
            handle.submit(job.payload, _applier(job.seq), live=False)

    def _applier(seq: int) -> Callable[[Result], None]:
        return lambda result: take(session.on_result(seq, result))

    # A streaming model has blocks of its own: the server-wide hop is for windowed models.
    start = p.Start(sample_rate=sample_rate, encoding="f32le", hop=None if model.spec.streaming else hop_s)
    take(session.on_message(p.encode(start), 0.0))
    if failures:
        raise ValueError(failures[0])
    chunk = max(1, int(CHUNK_SECONDS * sample_rate))
    audio = np.ascontiguousarray(audio, dtype="<f4")
    for pos in range(0, len(audio), chunk):
        take(session.on_audio(audio[pos : pos + chunk].tobytes(), 0.0))
        if handle.queued >= engine.max_batch:
            engine.run_pending()
        if progress is not None:
            progress(min(len(audio), pos + chunk) / sample_rate)
    engine.run_pending()
    take(session.on_message(p.encode(p.Stop()), 0.0))
    engine.run_pending()
    handle.close()
    if failures or not done:
        raise RuntimeError(failures[0] if failures else "session did not finish")
    return events, done[0]
