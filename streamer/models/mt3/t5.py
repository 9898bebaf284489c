"""MT3's T5 (reference §4) and MR-MT3's memory encoder (§5), small enough to audit against the spec.

Pre-norm T5.1.1 with MT3's quirks: no relative position bias (a fixed sinusoid is added instead), no
attention scaling, RMSNorm eps 1e-6, gated tanh-GELU feed-forward, no biases anywhere, untied output head
with no logit scaling. Submodule names follow the checkpoint keys of kunato's `mt3.pth` (§4.4), so a state
dict loads without renaming; `checkpoints.py` handles the aliases and buffers those files also carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

POSITIONAL_FORMULAS = ("official", "ports")
SINUSOID_TIMESCALE = 10_000.0
SINUSOID_POSITIONS = 2048  # the official table length: covers 256 frames and 1024 tokens
HEAD_DIM = 64  # d_kv of every MT3 checkpoint; shapes give heads × d_kv only


@dataclass(frozen=True, slots=True)
class T5Config:
    vocab_size: int = 1536
    input_dim: int = 512  # mel bands
    d_model: int = 512
    num_heads: int = 6
    d_kv: int = HEAD_DIM  # heads × d_kv = 384, not d_model
    d_ff: int = 1024
    encoder_layers: int = 8
    decoder_layers: int = 8
    layer_norm_eps: float = 1e-6
    # "official": frequencies 10000^(-i/255), what the MT3 weights were trained with; "ports": kunato's and
    # MR-MT3's 10000^(-i/256), what MR-MT3's own checkpoints were trained with (§4.3).
    positional: str = "official"
    segmem_length: int = 0  # MR-MT3 memory positions kept (L_agg); 0: plain MT3, no memory encoder
    segmem_layers: int = 1

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv


def sinusoid_table(positions: int, dim: int, formula: str) -> Tensor:
    """(positions, dim): sin of every frequency, then cos of every frequency (concatenated, not interleaved)."""
    if formula not in POSITIONAL_FORMULAS:
        raise ValueError(f"unknown positional formula {formula!r}; expected one of {POSITIONAL_FORMULAS}")
    half = dim // 2
    denominator = half - 1 if formula == "official" else half
    exponents = torch.arange(half, dtype=torch.float64) / denominator
    frequencies = torch.exp(-math.log(SINUSOID_TIMESCALE) * exponents)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(torch.float32)


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + self.eps)).to(self.weight.dtype) * self.weight


class Attention(nn.Module):
    """Multi-head attention without biases and without the 1/sqrt(d) scale (T5 folds it into the init)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.q = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.k = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.v = nn.Linear(config.d_model, config.inner_dim, bias=False)
        self.o = nn.Linear(config.inner_dim, config.d_model, bias=False)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, -1).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, -1)

    def forward(self, x: Tensor, context: Tensor | None = None, causal: bool = False) -> Tensor:
        source = x if context is None else context
        q = self.split_heads(self.q(x))
        k = self.split_heads(self.k(source))
        v = self.split_heads(self.v(source))
        return self.o(self.merge_heads(attend(q, k, v, causal=causal)))


def attend(q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> Tensor:
    """Unscaled dot-product attention (scale 1.0), softmax accumulated in float32 by the fused kernels."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0)


class GatedGelu(nn.Module):
    """wo(gelu_tanh(wi_0 h) ⊙ wi_1 h)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.wi_0 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wi_1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


# Sublayers: a residual branch with its pre-norm. Attribute names are the checkpoint's (HF T5 layout).
class SelfAttentionSublayer(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.SelfAttention = Attention(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        return x + self.SelfAttention(self.layer_norm(x), causal=causal)


class CrossAttentionSublayer(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.EncDecAttention = Attention(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x: Tensor, encoded: Tensor) -> Tensor:
        return x + self.EncDecAttention(self.layer_norm(x), context=encoded)


class FeedForwardSublayer(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.DenseReluDense = GatedGelu(config)
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class EncoderBlock(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList([SelfAttentionSublayer(config), FeedForwardSublayer(config)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer[1](self.layer[0](x))


class DecoderBlock(nn.Module):
    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            [SelfAttentionSublayer(config), CrossAttentionSublayer(config), FeedForwardSublayer(config)]
        )

    def forward(self, x: Tensor, encoded: Tensor) -> Tensor:
        return self.layer[2](self.layer[1](self.layer[0](x, causal=True), encoded))


class Stack(nn.Module):
    """Encoder or decoder layers plus the final norm (the input embedding lives in the parent)."""

    def __init__(self, config: T5Config, layers: int, decoder: bool) -> None:
        super().__init__()
        block = DecoderBlock if decoder else EncoderBlock
        self.block = nn.ModuleList([block(config) for _ in range(layers)])
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_eps)


class MT3Transformer(nn.Module):
    """Spectrogram frames → encoder states; tokens + encoder states → next-token logits."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.input_dim, config.d_model, bias=False)
        self.encoder = Stack(config, config.encoder_layers, decoder=False)
        self.decoder_embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.decoder = Stack(config, config.decoder_layers, decoder=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.segmem_length:
            self.segmem_proj = nn.Linear(config.d_model, config.d_model, bias=False)
            self.segmem_encoder = Stack(config, config.segmem_layers, decoder=False)
        table = sinusoid_table(SINUSOID_POSITIONS, config.d_model, config.positional)
        self.register_buffer("positions", table, persistent=False)

    def encode(self, features: Tensor) -> Tensor:
        """(batch, frames, 512) → (batch, frames, d_model). Padding frames are not masked (§3.5)."""
        x = self.proj(features.to(self.proj.weight.dtype))
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        for block in self.encoder.block:
            x = block(x)
        return self.encoder.final_layer_norm(x)

    def encode_memory(self, tokens: Tensor) -> Tensor:
        """MR-MT3 memory (§5): previous window's tokens → (batch, segmem_length, d_model).

        Embedded by the decoder's table, projected, run through the bidirectional memory encoder over every
        position (padding included, unmasked), then only the first `segmem_length` positions are kept.
        """
        x = self.segmem_proj(self.decoder_embed_tokens(tokens))
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        for block in self.segmem_encoder.block:
            x = block(x)
        return self.segmem_encoder.final_layer_norm(x)[:, : self.config.segmem_length]

    def decode(self, tokens: Tensor, encoded: Tensor) -> Tensor:
        """Teacher-forced decoder over whole sequences: (batch, length) ids → (batch, length, vocab) logits.

        The uncached path, used by tests as the definition that cached decoding must reproduce.
        """
        x = self.decoder_embed_tokens(tokens)
        x = x + self.positions[: x.shape[1]].to(x.dtype)
        for block in self.decoder.block:
            x = block(x, encoded)
        return self.lm_head(self.decoder.final_layer_norm(x)).float()
