"""streamer: a real-time music transcription server."""

__version__ = "0.1.0"
