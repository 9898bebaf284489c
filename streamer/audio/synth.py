"""Moved to streamer.audio.test_signals (kept until in-flight branches move over)."""

from streamer.audio.test_signals import *  # noqa: F403
from streamer.audio.test_signals import melody, random_piece, render  # noqa: F401
