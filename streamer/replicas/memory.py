"""A stream's model memory as bytes, so that it can travel with each window and replicas stay stateless.

Only forms listed here cross the network, each with its own schema: MR-MT3's `TokenHistory` (the decoded token rows
of the stream's recent windows, keyed by the sample where each window ended) is the one windowed model that keeps
memory. A model whose per-stream state has no form here cannot run on replicas; the replica says so when it starts.
Empty bytes stand for "no memory": a model that keeps none, or a stream that has not sent a window yet (the replica
then starts from `model.new_stream()`, as the local engine does when a session opens).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from streamer.models.base import Model

TOKEN_DTYPE = np.dtype("<i2")  # MT3's vocabulary has 1536 tokens; TokenHistory keeps them as int16


class TokenHistoryMemory(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="token_history"):
    """The rows of a `TokenHistory`; its capacity is the model's own (the replica's `new_stream()` gives it)."""

    ends: list[int]  # end sample of each remembered window, oldest first
    rows: list[bytes]  # its decoded tokens, int16 little-endian


MemoryForm = TokenHistoryMemory
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MemoryForm)


def encode_memory(state: Any) -> bytes:
    """`state` (what `new_stream` made, as the model left it) as bytes; TypeError when it has no wire form."""
    if state is None:
        return b""
    from streamer.models.mt3.model import TokenHistory  # only replicas of MT3-family models get here

    if isinstance(state, TokenHistory):
        rows = state.rows()
        return _encoder.encode(
            TokenHistoryMemory(
                ends=[end for end, _ in rows],
                rows=[np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE).tobytes() for _, tokens in rows],
            )
        )
    raise TypeError(f"per-stream state {type(state).__name__} has no wire form: the model cannot run on replicas")


def decode_memory(data: bytes, model: Model) -> Any:
    """The state to run a stream's window with: `model.new_stream()` for empty bytes, else the stream's memory as
    the last window left it. Raises msgspec.DecodeError or ValueError for bytes that are not this model's memory."""
    state = model.new_stream()
    if not data:
        return state
    form = _decoder.decode(data)
    from streamer.models.mt3.model import TokenHistory

    if not isinstance(state, TokenHistory):
        raise ValueError(f"{model.spec.name} keeps no token history, but the window carries one")
    if len(form.ends) != len(form.rows) or len(form.rows) > state.capacity:
        raise ValueError(f"token history of {len(form.rows)} rows, {len(form.ends)} ends, capacity {state.capacity}")
    for end, row in zip(form.ends, form.rows, strict=True):
        state.remember(end, np.frombuffer(row, dtype=TOKEN_DTYPE))
    return state
