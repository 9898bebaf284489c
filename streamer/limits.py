"""Pure policies a session applies to what a client sends: rates, pace and deadlines, with time as an input.

Nothing here reads a clock: the caller passes `now` (seconds, monotonic), so every rule is tested in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

# A live source cannot send audio before it was played: its audio clock stays within this factor of the wall clock
# since its first frame (plus its longest frame and a slack for network jitter).
REALTIME_PACE_TOLERANCE = 1.2
# Frames allowed before the per-audio-second frame rate applies (a client's first frames may be tiny).
FRAME_BURST = 100


class RateLimiter:
    """Token bucket: `rate` events per second on average, bursts of up to one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(slots=True)
class FrameRate:
    """Binary frames per second of audio: many tiny frames cost the server per frame, not per sample."""

    per_audio_second: float
    frames: int = 0

    def allow(self, audio_seconds: float) -> bool:
        self.frames += 1
        return self.frames <= FRAME_BURST + self.per_audio_second * audio_seconds


@dataclass(slots=True)
class Pace:
    """Whether a client sends audio faster than it could be played.

    Once a stream has been ahead of real time it stays an upload for good: an upload that the server throttles
    falls behind the wall clock while it waits, and must not then be taken for a live stream whose windows may be
    merged away when the server is busy.
    """

    slack_s: float
    first_audio_at: float | None = None
    longest_frame_s: float = 0.0
    upload: bool = False

    def on_audio(self, now: float, audio_seconds: float, frame_seconds: float) -> bool:
        """Record a frame (`audio_seconds` is the total after it); True when the stream is ahead of real time."""
        if self.first_audio_at is None:
            self.first_audio_at = now
        self.longest_frame_s = max(self.longest_frame_s, frame_seconds)
        wall = now - self.first_audio_at
        ahead = audio_seconds > REALTIME_PACE_TOLERANCE * wall + self.slack_s + self.longest_frame_s
        self.upload = self.upload or ahead
        return ahead


@dataclass(slots=True)
class Deadlines:
    """When a session must end on the server's initiative: no `start` in time, idle, or too long."""

    start_timeout_s: float
    idle_timeout_s: float
    max_session_s: float
    opened_at: float
    last_message_at: float = 0.0
    started_at: float | None = None

    def __post_init__(self) -> None:
        self.last_message_at = self.opened_at

    def message(self, now: float) -> None:
        """An application message (text or audio) arrived; pings and pongs do not count."""
        self.last_message_at = now

    def start(self, now: float) -> None:
        self.started_at = now

    def start_overdue(self, now: float) -> bool:
        return self.started_at is None and now - self.opened_at > self.start_timeout_s

    def idle(self, now: float) -> bool:
        return now - self.last_message_at > self.idle_timeout_s

    def too_long(self, now: float, audio_seconds: float) -> bool:
        elapsed = 0.0 if self.started_at is None else now - self.started_at
        return audio_seconds > self.max_session_s or elapsed > self.max_session_s
