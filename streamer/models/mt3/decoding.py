"""Batched greedy decoding with a key/value cache (reference §7, done the fast way).

Per batch of windows: the encoder runs once (by the caller); each decoder layer's cross-attention keys and
values are computed once; self-attention keys and values go into a preallocated cache, so each step costs
one token per row instead of re-running the whole prefix as the ports do. Rows stop at their own EOS and
leave the batch, so a long window does not make the short ones pay. Greedy = argmax, as the official
beam-1 search does in all but rare length-normalised EOS cases (§7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from streamer.models.device_io import to_host
from streamer.models.mt3.spec import MAX_DECODE_TOKENS
from streamer.models.mt3.t5 import MT3Transformer, attend
from streamer.models.mt3.vocab import DECODER_START_ID, EOS_ID

INITIAL_CACHE_TOKENS = 128  # most windows need a few hundred tokens; the cache doubles when it fills


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    max_new_tokens: int = MAX_DECODE_TOKENS
    # False: every row decodes exactly max_new_tokens (benchmarks compare equal amounts of work).
    stop_at_eos: bool = True


class _SelfAttentionCache:
    """Keys and values of every decoder layer: (layers, rows, heads, capacity, d_kv), grown by doubling."""

    def __init__(self, layers: int, rows: int, heads: int, d_kv: int, capacity: int, like: Tensor) -> None:
        shape = (layers, rows, heads, capacity, d_kv)
        self.keys = like.new_zeros(shape)
        self.values = like.new_zeros(shape)

    @property
    def capacity(self) -> int:
        return self.keys.shape[3]

    def ensure(self, length: int, limit: int) -> None:
        if length <= self.capacity:
            return
        grown = min(max(length, 2 * self.capacity), limit)
        extra = list(self.keys.shape)
        extra[3] = grown - self.capacity
        self.keys = torch.cat([self.keys, self.keys.new_zeros(extra)], dim=3)
        self.values = torch.cat([self.values, self.values.new_zeros(extra)], dim=3)

    def keep_rows(self, rows: Tensor) -> None:
        self.keys = self.keys[:, rows]
        self.values = self.values[:, rows]


@torch.inference_mode()
def greedy_decode(model: MT3Transformer, encoded: Tensor, options: DecodeOptions) -> list[list[int]]:
    """Decode every row of `encoded` (batch, positions, d_model); return each row's tokens, EOS included
    when one was produced, the decoder start token excluded."""
    config = model.config
    blocks = list(model.decoder.block)
    rows = encoded.shape[0]
    limit = options.max_new_tokens
    cross = [
        (
            blk.layer[1].EncDecAttention.split_heads(blk.layer[1].EncDecAttention.k(encoded)),
            blk.layer[1].EncDecAttention.split_heads(blk.layer[1].EncDecAttention.v(encoded)),
        )
        for blk in blocks
    ]
    cache = _SelfAttentionCache(
        len(blocks), rows, config.num_heads, config.d_kv, min(INITIAL_CACHE_TOKENS, limit), encoded
    )
    positions = model.positions.to(encoded.dtype)
    active = torch.arange(rows, device=encoded.device)  # original row of each row still decoding
    tokens = torch.full((rows,), DECODER_START_ID, dtype=torch.long, device=encoded.device)
    generated = torch.zeros((rows, limit), dtype=torch.long, device=encoded.device)
    lengths = [limit] * rows
    for step in range(limit):
        cache.ensure(step + 1, limit)
        x = (model.decoder_embed_tokens(tokens) + positions[step])[:, None, :]
        for index, blk in enumerate(blocks):
            x = _self_attention_step(blk.layer[0], x, cache, index, step)
            sub = blk.layer[1]
            attention = sub.EncDecAttention
            q = attention.split_heads(attention.q(sub.layer_norm(x)))
            x = x + attention.o(attention.merge_heads(attend(q, *cross[index])))
            x = blk.layer[2](x)
        logits = model.lm_head(model.decoder.final_layer_norm(x[:, 0])).float()
        tokens = logits.argmax(dim=-1)
        generated[active, step] = tokens
        if not options.stop_at_eos:
            continue
        finished = tokens == EOS_ID
        if not bool(finished.any()):
            continue
        for row in active[finished].tolist():
            lengths[row] = step + 1
        still = (~finished).nonzero().squeeze(1)
        if still.numel() == 0:
            break
        active, tokens = active[still], tokens[still]
        cache.keep_rows(still)
        cross = [(k[still], v[still]) for k, v in cross]
    result = to_host(generated)
    return [result[row, : lengths[row]].tolist() for row in range(rows)]


def _self_attention_step(sub: torch.nn.Module, x: Tensor, cache: _SelfAttentionCache, layer: int, step: int):
    attention = sub.SelfAttention
    h = sub.layer_norm(x)
    q = attention.split_heads(attention.q(h))
    cache.keys[layer, :, :, step] = attention.k(h)[:, 0].view(x.shape[0], attention.num_heads, -1)
    cache.values[layer, :, :, step] = attention.v(h)[:, 0].view(x.shape[0], attention.num_heads, -1)
    keys = cache.keys[layer, :, :, : step + 1]
    values = cache.values[layer, :, :, : step + 1]
    return x + attention.o(attention.merge_heads(attend(q, keys, values)))
