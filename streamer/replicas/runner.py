"""What a model replica does with a batch of request bodies, without Ray: decode, run the model once, reply.

Windows from any front end and any stream share a batch; each carries its stream's memory, so the replica keeps no
state between batches. As in the local engine, a failing batch is run again window by window, so that one bad window
fails alone; a window the replica cannot take (malformed, another model's spec) fails alone without running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from streamer.errors import ConfigError
from streamer.models.base import Model, WindowRequest
from streamer.replicas.memory import decode_memory, encode_memory
from streamer.replicas.wire import ReplyMessage, decode_window, encode_reply, window_request

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class WindowRunner:
    def __init__(self, model: Model, clock: Clock = time.perf_counter) -> None:
        spec = model.spec
        if spec.streaming:
            raise ConfigError(
                f"{spec.name} is a streaming-native model (per-stream state, a block every "
                f"{spec.window_s * 1000:.0f} ms): it runs on the local engine only"
            )
        try:
            encode_memory(model.new_stream())
        except TypeError as e:
            raise ConfigError(f"{spec.name} cannot run on replicas: {e}") from None
        self.model = model
        self.clock = clock

    def run(self, bodies: Sequence[bytes]) -> list[bytes]:
        """One reply body per request body, in order."""
        replies: dict[int, ReplyMessage] = {}
        jobs: list[tuple[int, WindowRequest, Any]] = []
        for i, body in enumerate(bodies):
            try:
                jobs.append((i, *self._job(body)))
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
                replies[i] = ReplyMessage(error=f"the replica cannot take this window: {e}")
        replies.update(self._run(jobs))
        return [encode_reply(replies[i]) for i in range(len(bodies))]

    def _job(self, body: bytes) -> tuple[WindowRequest, Any]:
        message = decode_window(body)
        spec = self.model.spec
        if (message.model, message.sample_rate, message.window) != (spec.name, spec.sample_rate, spec.window_samples):
            raise ValueError(
                f"it is for {message.model} with {message.window}-sample windows at {message.sample_rate} Hz; this "
                f"replica runs {spec.name} with {spec.window_samples} at {spec.sample_rate} Hz (are the "
                f"[models.{spec.name}] options of the front end and of `streamer replicas` the same?)"
            )
        return window_request(message), decode_memory(message.memory, self.model)

    def _run(self, jobs: list[tuple[int, WindowRequest, Any]]) -> list[tuple[int, ReplyMessage]]:
        if not jobs:
            return []
        t0 = self.clock()
        try:
            results = self.model.transcribe_windows([w for _, w, _ in jobs], [s for _, _, s in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"model returned {len(results)} results for {len(jobs)} windows")
        except Exception as e:
            if len(jobs) > 1 and self.model.retry_alone:
                log.warning("model %s failed on a batch of %d; running each alone", self.model.spec.name, len(jobs))
                return [reply for job in jobs for reply in self._run([job])]
            log.exception("model %s failed on a window", self.model.spec.name)
            return [(i, ReplyMessage(error=f"{type(e).__name__}: {e}")) for i, _, _ in jobs]
        seconds = self.clock() - t0
        return [
            (i, ReplyMessage(notes=notes, memory=encode_memory(state), batch=len(jobs), model_s=seconds))
            for (i, _, state), notes in zip(jobs, results, strict=True)
        ]
