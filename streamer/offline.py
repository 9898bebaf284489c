"""Offline transcription on the server's own path: the same Session (windowing, stitching) run synchronously."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamer.models.base import Model
from streamer.server import protocol as p
from streamer.session import Output, PendingWindow, Session, SessionOptions

CHUNK_SECONDS = 1.0


def transcribe_array(
    model: Model,
    audio: np.ndarray,
    sample_rate: int,
    *,
    hop_s: float | None = None,
    commit_margin_s: float | None = None,
    max_batch: int = 8,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[p.NoteEvent], p.Done]:
    """Transcribe mono float32 audio; returns the committed events and the `done` summary a client would get."""
    options = SessionOptions(default_model=model.spec.name, hop_s=hop_s, commit_margin_s=commit_margin_s)
    session = Session("offline", {model.spec.name: model.spec}, options)
    stream_state = model.new_stream()
    events: list[p.NoteEvent] = []
    done: list[p.Done] = []
    queue: list[PendingWindow] = []

    def take(out: Output) -> None:
        events.extend(out.events)
        done.extend(m for m in out.messages if isinstance(m, p.Done))
        queue.extend(out.windows)

    def run_queue() -> None:
        while queue:
            # One window per stream per batch is the engine's rule; offline there is one stream, so windows run
            # in order in batches only when the model is stateless.
            size = max_batch if stream_state is None else 1
            batch, queue[:] = queue[:size], queue[size:]
            for window in batch:
                window.request.stream = stream_state
            results = model.transcribe_windows([w.request for w in batch])
            for window, notes in zip(batch, results, strict=True):
                take(session.on_window_done(window.seq, notes))

    take(session.on_text(p.encode(p.Start(sample_rate=sample_rate, encoding="f32le", hop=hop_s))))
    chunk = max(1, int(CHUNK_SECONDS * sample_rate))
    audio = np.ascontiguousarray(audio, dtype="<f4")
    for pos in range(0, len(audio), chunk):
        take(session.on_audio(audio[pos : pos + chunk].tobytes()))
        if len(queue) >= max_batch:
            run_queue()
        if progress is not None:
            progress(min(len(audio), pos + chunk) / sample_rate)
    run_queue()
    take(session.on_text(p.encode(p.Stop())))
    run_queue()
    if not done:
        raise RuntimeError("session did not finish")
    return events, done[0]
