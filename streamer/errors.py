"""One exception hierarchy; each class carries the stable code sent in protocol `error` messages."""

from __future__ import annotations


class StreamerError(Exception):
    """Base of every error a client or user may see. `code` is stable and documented in docs/protocol.md."""

    code = "internal_error"
    # WebSocket close code used when the error ends a session (1008 policy, 1003 unsupported data, 1011 internal).
    close_code = 1011
    # Fatal errors end the session; non-fatal ones are reported and the session goes on.
    fatal = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(StreamerError):
    code = "protocol_error"
    close_code = 1008


class BadMessage(ProtocolError):
    code = "bad_message"


class UnknownMessageType(ProtocolError):
    code = "unknown_message_type"


class NotStarted(ProtocolError):
    code = "not_started"


class AlreadyStarted(ProtocolError):
    code = "already_started"


class UnsupportedFormat(ProtocolError):
    code = "unsupported_format"
    close_code = 1003


class InvalidOption(ProtocolError):
    code = "invalid_option"


class BadAudio(ProtocolError):
    code = "bad_audio"
    close_code = 1003


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"
    close_code = 1009


class RateLimited(ProtocolError):
    code = "rate_limited"


class Timeout(ProtocolError):
    code = "timeout"
    close_code = 1000


class SessionTooLong(ProtocolError):
    code = "session_too_long"
    close_code = 1000


class NotReading(ProtocolError):
    """The client stopped reading what the server sends (its messages pile up): the session ends."""

    code = "not_reading"


class Busy(StreamerError):
    code = "busy"
    close_code = 1013


class Unauthorized(StreamerError):
    code = "unauthorized"
    close_code = 1008


class UnknownModel(StreamerError):
    code = "unknown_model"
    close_code = 1008


class ModelFailed(StreamerError):
    """A model call failed for some windows; the session continues with the next windows."""

    code = "model_failed"
    fatal = False


class ShuttingDown(StreamerError):
    code = "shutting_down"
    close_code = 1001


class CheckpointError(StreamerError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""

    code = "checkpoint_error"


class ConfigError(StreamerError):
    code = "config_error"
