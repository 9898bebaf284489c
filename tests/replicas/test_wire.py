"""What crosses the network between front ends and replicas: windows exactly, notes exactly, MR-MT3's memory exactly,
and nothing a replica would misread."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest

from streamer.audio.windows import WindowCutter
from streamer.models.base import Model
from streamer.models.mt3.model import TokenHistory, memory_row
from streamer.notes import WindowNote
from streamer.replicas.memory import decode_memory, encode_memory
from streamer.replicas.wire import (
    ReplyMessage,
    decode_reply,
    decode_window,
    encode_reply,
    encode_window,
    window_request,
)


def test_a_window_arrives_as_the_model_would_have_read_it() -> None:
    rng = np.random.default_rng(0)
    cutter = WindowCutter(window=1000, hop=400, lead=300)
    windows = cutter.push(rng.standard_normal(1900).astype(np.float32))
    windows += cutter.tail_windows(margin=100)  # zero-padded past the end: valid < length
    assert any(w.start < 0 for w in windows) and any(w.valid < w.length for w in windows)
    for window in windows:
        message = decode_window(encode_window("m", 16000, window, b""))
        received = window_request(message)
        assert (received.start, received.valid, received.length) == (window.start, window.valid, window.length)
        assert received.audio.dtype == np.float32 and np.array_equal(received.audio, window.audio)


def test_malformed_windows_are_refused() -> None:
    window = WindowCutter(window=100, hop=100).push(np.ones(100, dtype=np.float32))[0]
    good = msgspec.msgpack.decode(encode_window("m", 16000, window, b""))
    for bad in ({**good, "valid": 101}, {**good, "audio": good["audio"][:-4]}, {**good, "extra": 1}, {"model": "m"}):
        with pytest.raises((msgspec.DecodeError, msgspec.ValidationError, ValueError)):
            decode_window(msgspec.msgpack.encode(bad))


def test_notes_come_back_exactly() -> None:
    notes = [
        WindowNote(60, None, 0.123456789012345, 77, 33, False),
        WindowNote(38, 1.0 / 3.0, 1.5, 127, 0, True),
        WindowNote(0, 0.25, None, 100, 0, False, control=64),
    ]
    reply = decode_reply(encode_reply(ReplyMessage(notes=notes, memory=b"\x01", batch=3, model_s=0.5)))
    assert reply.notes == notes and reply.memory == b"\x01" and (reply.batch, reply.model_s) == (3, 0.5)


class MemoryModel(Model):
    """Only what the memory codec asks of a model: a new stream's TokenHistory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def new_stream(self) -> TokenHistory:
        return TokenHistory(self.capacity)

    def transcribe_windows(self, batch: Any, states: Any) -> list[list[WindowNote]]:
        raise NotImplementedError


def test_token_history_travels_exactly_and_stays_bounded() -> None:
    model = MemoryModel(capacity=3)
    history = TokenHistory(3)
    rng = np.random.default_rng(1)
    for end in range(8192, 8192 * 6, 8192):  # 5 windows: the oldest two drop out
        history.remember(end, rng.integers(0, 1536, size=int(rng.integers(2, 40))))
        history = decode_memory(encode_memory(history), model)  # as if each window went to another replica
    rows = history.rows()
    assert [end for end, _ in rows] == [8192 * 3, 8192 * 4, 8192 * 5]
    reference = TokenHistory(3)
    rng = np.random.default_rng(1)
    for end in range(8192, 8192 * 6, 8192):
        reference.remember(end, rng.integers(0, 1536, size=int(rng.integers(2, 40))))
    for (end, tokens), (ref_end, ref_tokens) in zip(rows, reference.rows(), strict=True):
        assert end == ref_end and tokens.dtype == np.int16 and np.array_equal(tokens, ref_tokens)
    for start in (8192 * 4, 8192 * 5, 12345):
        assert memory_row(history.ending_at(start), True) == memory_row(reference.ending_at(start), True)


def test_memory_forms_are_checked() -> None:
    model = MemoryModel(capacity=2)
    assert isinstance(decode_memory(b"", model), TokenHistory)  # a new stream: the model's own
    history = TokenHistory(5)
    for end in range(3):
        history.remember(end, [1, 2])
    with pytest.raises(ValueError, match="capacity 2"):
        decode_memory(encode_memory(history), model)  # more rows than the replica's model keeps
    with pytest.raises(msgspec.DecodeError):
        decode_memory(b"\x93junk", model)
    with pytest.raises(TypeError, match="no wire form"):
        encode_memory({"buffers": np.zeros(3)})
    assert encode_memory(None) == b""
