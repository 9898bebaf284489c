"""Prometheus metrics of one server (its own registry: no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("streamer_active_sessions", "Sessions currently connected", registry=r)
        self.sessions_total = Counter("streamer_sessions", "Sessions started", registry=r)
        self.queued = Gauge("streamer_queued_windows", "Windows waiting for the model", registry=r)
        self.batch_size = Histogram(
            "streamer_batch_size", "Windows per model batch", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.model_time = Histogram(
            "streamer_model_seconds", "Model time per batch", ["model"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.window_latency = Histogram(
            "streamer_window_latency_seconds",
            "From a window's submission to its result",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rtf = Gauge(
            "streamer_real_time_factor",
            "Model seconds per second of audio (last batch)",
            ["model"],
            registry=r,
        )
        self.skipped = Counter(
            "streamer_skipped_windows",
            "Windows coalesced away because a session lagged",
            ["model"],
            registry=r,
        )
        self.errors = Counter("streamer_errors", "Errors sent to clients, by code", ["code"], registry=r)
        self.audio_seconds = Counter("streamer_audio_seconds", "Seconds of audio received", registry=r)
        self.loop_lag = Histogram(
            "streamer_event_loop_lag_seconds",
            "How late the event loop wakes a 0.25 s sleeper (work on the loop delays every session)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.midi_dropped = Gauge(
            "streamer_midi_messages_dropped", "MIDI messages that never reached the MIDI system", registry=r
        )
        self.midi_file_errors = Counter(
            "streamer_midi_file_errors", "Session MIDI files that could not be written", registry=r
        )
        # Leak watch (benchmarks/soak.py): tasks alive on the server's event loop; should return to its idle value
        # once sessions end.
        self.tasks = Gauge("streamer_asyncio_tasks", "Tasks alive on the server's event loop", registry=r)

    def engine_observer(self, model: str, audio_seconds: float) -> EngineObserver:
        return EngineObserver(self, model, audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineObserver:
    """What an engine reports after each batch; called on the engine's thread (prometheus-client is thread-safe)."""

    def __init__(self, metrics: Metrics, model: str, audio_seconds: float) -> None:
        self.metrics = metrics
        self.model = model
        self.audio_seconds = audio_seconds  # audio one job carries (a window, or a streaming model's block)

    def on_batch(self, size: int, seconds: float, latencies: list[float]) -> None:
        m = self.metrics
        m.batch_size.labels(self.model).observe(size)
        m.model_time.labels(self.model).observe(seconds)
        m.rtf.labels(self.model).set(seconds / (size * self.audio_seconds))
        for latency in latencies:
            m.window_latency.labels(self.model).observe(latency)

    def on_skipped(self, count: int) -> None:
        self.metrics.skipped.labels(self.model).inc(count)
