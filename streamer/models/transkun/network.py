"""Transkun v2's network (Yan & Duan, ISMIR 2024, "Scoring intervals using non-hierarchical transformer").

features (batch, T frames, 229 bands, 6 spectra)
  → 3×3 convolution + a learned embedding of the band index
  → patch embedding: 4 convolutions, time ÷8 and frequency ÷4 (T' patches × F' bands)
  → a summary row (time 0) and column (frequency 0) of zeros, plus a learned embedding of (time, band)
  → 90 query tracks appended along frequency, one per output (2 pedals, 88 keys), embedded from (time, code)
  → 6 axial transformer layers: attention + MLP across frequency within each time step, then across time
  → the 90 tracks upsampled ×8 back to frames: a context vector per (track, frame)
  → interval scores: score(b, e) = (e − b)·⟨k_b, q_e⟩/√d for begin frame b < end frame e, a score of its own for
    a one-frame interval; velocity (128 classes) and sub-frame onset/offset refinement from (ctx_b, ctx_e).

Two details matter for exactness: attention keys and values come from the layer's input, un-normalised, for both
axes (queries from the normalised running state), and every residual branch has a learned per-channel scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from streamer.models.transkun.frontend import TranskunFrontend
from streamer.models.transkun.spec import GAUSSIAN_WINDOWS, MEL_BANDS, TRACK_CODES

RMS_EPS = 1e-6
PATCH_TIME = 8  # frames per time patch (three stride-2 convolutions)
# Zeros around the features before patching (time before/after, frequency before/after) so that patches cover
# every frame and band.
PATCH_PAD_TIME = (4, 3)
PATCH_PAD_BANDS = (2, 1)
PATCH_STRIDES = ((2, 1), (2, 2), (2, 2), (1, 1))
GROUPS = 4  # GroupNorm groups after each patch convolution
CPU_TOKEN_CHUNK = 1024  # tokens per MLP call on the CPU (1024 × 1024 hidden floats: 4 MB)


@dataclass(frozen=True, slots=True)
class TranskunConfig:
    """The network's sizes; defaults are the released checkpoint's (`pretrained/2.0.conf`)."""

    base_size: int = 64  # channels after the input convolution; the transformer's width is 4× this
    heads: int = 8
    layers: int = 6
    mlp_factor: float = 4.0  # transformer MLP hidden size / width
    attention_factor: float = 1.0  # attention inner size / width
    score_expansion: int = 4  # context vector size / base_size
    velocity_hidden: int = 512
    refine_hidden: int = 512
    input_channels: int = 1 + GAUSSIAN_WINDOWS
    bands: int = MEL_BANDS
    tracks: int = len(TRACK_CODES)

    @property
    def width(self) -> int:
        return 4 * self.base_size

    @property
    def context_size(self) -> int:
        return self.base_size * self.score_expansion

    @property
    def attention_size(self) -> int:
        head = math.ceil(math.ceil(self.attention_factor * self.width) / self.heads)
        return head * self.heads

    @property
    def mlp_size(self) -> int:
        return math.ceil(self.width * self.mlp_factor)


class MLP(nn.Module):
    def __init__(self, size: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.expand = nn.Linear(size, hidden)
        self.contract = nn.Linear(hidden, out or size)

    def forward(self, x: Tensor) -> Tensor:
        return self.contract(F.gelu(self.expand(x)))


class FourierEmbedding(nn.Module):
    """Coordinates → learned random-Fourier-feature cosines → MLP. Used for the band index, (time, band) and
    (time, track code); the coordinates are plain indices and codes, so the embedding depends only on shapes."""

    def __init__(self, coordinates: int, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(coordinates, size)
        self.mlp = MLP(size, 4 * size)

    def forward(self, coordinates: Tensor) -> Tensor:
        phase = self.proj(coordinates)
        return self.mlp(torch.cos(phase) / math.sqrt(phase.shape[-1] / 2))


class Attention(nn.Module):
    """Multi-head attention along dim −2 (every other leading dim is a batch dim), fused SDPA."""

    def __init__(self, width: int, inner: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, inner, bias=False)
        self.key = nn.Linear(width, inner, bias=False)
        self.value = nn.Linear(width, inner, bias=False)
        self.out = nn.Linear(inner, width)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        q, k, v = (self._heads(t) for t in (self.query(x), self.key(memory), self.value(memory)))
        mixed = F.scaled_dot_product_attention(q, k, v)  # (sequences, heads, length, head size)
        return self.out(mixed.transpose(1, 2).reshape((*x.shape[:-1], -1)))

    def _heads(self, x: Tensor) -> Tensor:
        # Leading dims folded into one: SDPA's fused CPU kernel takes 4-d inputs only (5-d falls back to the
        # unfused math path, 3× slower here).
        return x.reshape(-1, x.shape[-2], self.heads, x.shape[-1] // self.heads).transpose(1, 2)


class Residual(nn.Module):
    """x + scale ⊙ f(rms_norm(x), *memory): pre-norm (no gain) with a learned per-channel layer scale."""

    def __init__(self, module: nn.Module, width: int) -> None:
        super().__init__()
        self.module = module
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x: Tensor, *memory: Tensor) -> Tensor:
        normed = F.rms_norm(x, (x.shape[-1],), eps=RMS_EPS)
        return x + self.module(normed, *memory) * self.scale


class TokenwiseResidual(Residual):
    """A residual MLP, which treats tokens independently, run over chunks of tokens on the CPU: the 4× wider
    hidden activations of a chunk stay in cache instead of filling (and page-faulting) fresh 50 MB buffers. Alone,
    an MLP ran ~35 % faster so; a whole 16 s window, 3-8 % (docs/models.md). Other devices take all tokens at once."""

    def forward(self, x: Tensor, *memory: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        flat = x.reshape(-1, x.shape[-1])
        out = torch.empty_like(flat)
        for first in range(0, flat.shape[0], CPU_TOKEN_CHUNK):
            out[first : first + CPU_TOKEN_CHUNK] = super().forward(flat[first : first + CPU_TOKEN_CHUNK])
        return out.view_as(x)


class AxialLayer(nn.Module):
    """Attention + MLP across frequency (within each time step), then across time (within each band or track).
    Both attentions take keys and values from the layer's input."""

    def __init__(self, config: TranskunConfig) -> None:
        super().__init__()
        width, inner, hidden = config.width, config.attention_size, config.mlp_size
        self.freq_attention = Residual(Attention(width, inner, config.heads), width)
        self.freq_mlp = TokenwiseResidual(MLP(width, hidden), width)
        self.time_attention = Residual(Attention(width, inner, config.heads), width)
        self.time_mlp = TokenwiseResidual(MLP(width, hidden), width)

    def forward(self, x: Tensor) -> Tensor:  # (batch, time, freq, width)
        h = self.freq_mlp(self.freq_attention(x, x))
        # Contiguous copies for the time axis: linear layers on transposed views fall back to slow batched
        # products and copy their 4× wider hidden activations instead.
        h, memory = h.transpose(1, 2).contiguous(), x.transpose(1, 2).contiguous()
        h = self.time_mlp(self.time_attention(h, memory))
        return h.transpose(1, 2).contiguous()


class PatchConv(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, stride=stride)
        self.norm = nn.GroupNorm(GROUPS, channels_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class Backbone(nn.Module):
    """(batch, T, bands, channels) features → (batch, tracks, T, context_size) context vectors."""

    def __init__(self, config: TranskunConfig) -> None:
        super().__init__()
        base, width = config.base_size, config.width
        self.band_embedding = FourierEmbedding(1, base)
        self.input_conv = nn.Conv2d(config.input_channels, base, 3, padding=1)
        sizes = (base, 2 * base, width, width, width)
        self.patch = nn.ModuleList(PatchConv(sizes[i], sizes[i + 1], stride) for i, stride in enumerate(PATCH_STRIDES))
        self.grid_embedding = FourierEmbedding(2, width)
        self.track_embedding = FourierEmbedding(2, width)
        self.layers = nn.ModuleList(AxialLayer(config) for _ in range(config.layers))
        self.upsample = nn.ConvTranspose1d(width, config.context_size, PATCH_TIME, stride=PATCH_TIME)
        self.register_buffer("codes", torch.tensor(TRACK_CODES, dtype=torch.float32), persistent=False)
        # Embeddings depend only on the grid's shape: computed once per shape (they cost as much as a layer).
        self._embeddings: dict[tuple[int, int, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}

    def forward(self, features: Tensor) -> Tensor:
        batch, frames, bands, _ = features.shape
        x = features.permute(0, 3, 1, 2)
        band_embedding, grid_embedding, track_embedding = self._embeddings_for(frames, bands, x.dtype)
        h = self.input_conv(x) + band_embedding
        h = F.pad(h, (*PATCH_PAD_BANDS, *PATCH_PAD_TIME))
        for i, patch in enumerate(self.patch):
            h = patch(h)
            if i < len(self.patch) - 1:
                h = F.gelu(h)
        # (batch, T', F', width), then a summary row and column (index 0 on each axis) of zeros.
        h = F.pad(h.permute(0, 2, 3, 1), (0, 0, 1, 0, 1, 0))
        tokens = torch.cat([h + grid_embedding, track_embedding.expand(batch, -1, -1, -1)], dim=2)
        for layer in self.layers:
            tokens = layer(tokens)
        tracks = tokens[:, 1:, h.shape[2] :].transpose(1, 2)  # (batch, tracks, T', width), summary row dropped
        return self._upsample(tracks)[:, :, :frames].contiguous()

    def _upsample(self, tracks: Tensor) -> Tensor:
        """The transposed convolution (kernel = stride = 8: patches do not overlap) as one matrix product that
        writes each patch's 8 frames side by side: (…, T', width) → (…, 8·T', context_size), no transposes."""
        weight = self.upsample.weight  # (width, context_size, 8)
        per_frame = weight.permute(2, 1, 0).flatten(0, 1)  # (8 · context_size, width), frame-major
        bias = self.upsample.bias.repeat(PATCH_TIME)
        out = F.linear(tracks, per_frame, bias)
        return out.unflatten(-1, (PATCH_TIME, -1)).flatten(-3, -2)

    def clear_cache(self) -> None:
        """Forget the embeddings computed so far (after the weights or the device changed)."""
        self._embeddings.clear()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]  # .to(), .cuda(), .half() move the cache too
        self.clear_cache()
        return super()._apply(fn, recurse)

    def _embeddings_for(self, frames: int, bands: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        key = (frames, bands, dtype)
        if key not in self._embeddings:
            self._embeddings[key] = self._embeddings_uncached(frames, bands, dtype)
        return self._embeddings[key]

    def _embeddings_uncached(self, frames: int, bands: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        device = self.codes.device
        with torch.device(device):
            band_index = torch.arange(bands, dtype=dtype)[:, None]
            band = self.band_embedding(band_index).T[:, None, :]  # (base, 1, bands): added to every frame
            # Patch grid size, as the convolutions compute it; +1 for the summary row and column.
            patches_t, patches_f = frames + sum(PATCH_PAD_TIME), bands + sum(PATCH_PAD_BANDS)
            for stride_t, stride_f in PATCH_STRIDES:
                patches_t = (patches_t - 1) // stride_t + 1
                patches_f = (patches_f - 1) // stride_f + 1
            t = torch.arange(patches_t + 1, dtype=dtype)
            f = torch.arange(patches_f + 1, dtype=dtype)
            grid = self.grid_embedding(torch.stack(torch.meshgrid(t, f, indexing="ij"), dim=-1))
            codes = self.codes.to(dtype)
            track = self.track_embedding(torch.stack(torch.meshgrid(t, codes, indexing="ij"), dim=-1))
        return band, grid, track[None]


class IntervalScorer(nn.Module):
    """Context vectors → pair products (batch, tracks, begin, end) and one-frame scores (batch, tracks, frames).

    The score of the interval [b, e], b < e, is products[b, e] · (e − b) · `scale`: the search applies the
    length factor row by row, which costs nothing there and saves a pass over the T×T matrices here. One-frame
    intervals are scored on their own."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.scale = 1 / math.sqrt(size)
        self.project = nn.Linear(size, 2 * size + 1)

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        end_query, begin_key, single = self.project(context).split([self.size, self.size, 1], dim=-1)
        return begin_key @ end_query.transpose(-1, -2), single.squeeze(-1)


class TranskunNetwork(nn.Module):
    """Front end, backbone, interval scorer and the two attribute heads read from an interval's end points."""

    def __init__(self, config: TranskunConfig) -> None:
        super().__init__()
        self.config = config
        self.frontend = TranskunFrontend()
        self.backbone = Backbone(config)
        self.scorer = IntervalScorer(config.context_size)
        pair = 3 * config.context_size  # (ctx_b, ctx_e, ctx_b ⊙ ctx_e)
        self.velocity = MLP(pair, config.velocity_hidden, 128)  # logits of MIDI velocity 0..127
        # Onset and offset refinement logits (continuous Bernoulli), then onset and offset presence logits.
        self.refine = MLP(pair, config.refine_hidden, 4)

    def forward(self, audio: Tensor) -> Tensor:
        """(batch, samples) audio → (batch, tracks, frames, context_size) context vectors."""
        return self.backbone(self.frontend(audio).to(self.backbone.input_conv.weight.dtype))

    def attributes(self, begin: Tensor, end: Tensor) -> tuple[Tensor, Tensor]:
        """Context vectors of intervals' first and last frames → (velocity logits, refinement logits)."""
        pair = torch.cat([begin, end, begin * end], dim=-1)
        return self.velocity(pair), self.refine(pair)
