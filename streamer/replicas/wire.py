"""What a front end and a model replica say to each other: one window in; its notes, and the stream's model memory
as it stands after the window, out.

Both are msgpack (msgspec) with explicit schemas: nothing pickled crosses the network. Audio travels as float32
samples, notes as `WindowNote` fields, and a stateful model's per-stream memory as the bytes `memory.py` makes of it:
the front end keeps those bytes for the stream and sends them back with its next window, so replicas keep nothing
between windows and any replica can take any window.
"""

from __future__ import annotations

import msgspec
import numpy as np

from streamer.audio.windows import Window
from streamer.models.base import WindowRequest
from streamer.notes import WindowNote

CONTENT_TYPE = "application/msgpack"
AUDIO_DTYPE = np.dtype("<f4")


class WindowMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One window of one stream. `sample_rate` and `window` are the front end's idea of the model's spec: a replica
    whose model differs (other `[models.<name>]` options) refuses the window instead of answering wrongly."""

    model: str
    sample_rate: int
    window: int  # samples in a window
    start: int  # the window's first sample on the stream's model-rate clock
    valid: int  # samples from `valid` on are zero padding
    audio: bytes  # the first `valid` samples, float32 little-endian
    memory: bytes = b""  # the stream's model memory as the last reply gave it; empty: a new stream


class ReplyMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The window's notes (window-relative), or `error` when the model failed on it (another replica would fail the
    same way: not retried). `memory` is what to send with the stream's next window (empty: the model keeps none).
    `batch` and `model_s` describe the replica's model call that ran the window, for metrics."""

    notes: list[WindowNote] = msgspec.field(default_factory=list)
    memory: bytes = b""
    error: str = ""
    batch: int = 0
    model_s: float = 0.0


_encoder = msgspec.msgpack.Encoder()
_window_decoder = msgspec.msgpack.Decoder(WindowMessage)
_reply_decoder = msgspec.msgpack.Decoder(ReplyMessage)


def encode_window(model: str, sample_rate: int, window: Window, memory: bytes) -> bytes:
    """A session's window as a request body (its audio is assembled here, on first read)."""
    samples = np.ascontiguousarray(window.audio[: window.valid], dtype=AUDIO_DTYPE)
    message = WindowMessage(model, sample_rate, window.length, window.start, window.valid, samples.tobytes(), memory)
    return _encoder.encode(message)


def decode_window(body: bytes) -> WindowMessage:
    """Raises msgspec.DecodeError or ValueError for a body that is not a well-formed window."""
    message = _window_decoder.decode(body)
    if not 0 <= message.valid <= message.window or len(message.audio) != message.valid * AUDIO_DTYPE.itemsize:
        raise ValueError(f"window of {message.window} samples with {message.valid} valid carries {len(message.audio)} "
                         "bytes of audio")  # fmt: skip
    return message


def window_request(message: WindowMessage) -> WindowRequest:
    """The window as the model receives it: `window` samples, zero past `valid` (exactly the front end's)."""
    audio = np.zeros(message.window, dtype=np.float32)
    audio[: message.valid] = np.frombuffer(message.audio, dtype=AUDIO_DTYPE)
    return WindowRequest(audio, message.start, message.valid)


def encode_reply(reply: ReplyMessage) -> bytes:
    return _encoder.encode(reply)


def decode_reply(body: bytes) -> ReplyMessage:
    return _reply_decoder.decode(body)
