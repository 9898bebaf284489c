"""basic-pitch as a streaming network: each block of audio costs in proportion to its length, batched over streams.

The streaming network is defined by its one-pass evaluation over a whole stream (`StreamingNetwork.one_pass`),
which differs from the windowed ONNX model in two ways that a live stream forces:

- Look-ahead. Frame t is final once the audio up to sample 256·(t + lookahead_frames) − 1 has arrived, i.e.
  `lookahead_s` after the frame's time t·256/22050 s. Of that budget the conv stacks take F frames: every conv
  layer keeps at most `conv_future` of its future time taps, so the onset output looks F = f(onset_out) +
  max(f(onset_hidden), f(contour) + f(contour_out) + f(note_hidden) + f(note_out)) frames ahead (F = 0, 5, 8, 10
  for conv_future = 0, 1, 2, 3; 10 is the uncut model). A cut tap's weights are added to the last kept tap (`fold`):
  the layer reads its newest known input frame in place of the ones it may not wait for. Dropping them instead
  (zeros, as at a window's edge) halves onset F1 or worse (benchmarks/lookahead_curve.py). The CQT gets the rest,
  lookahead_frames − F ≥ 1 frames, spent as streaming_cqt.py describes (`filter_future` low-pass taps, the rest on
  the kernels, whose taps beyond are dropped).
- Normalisation. The windowed model scales each window's dB by that window's own min and max. Here frame t is
  scaled by the min and max over frames max(0, t − norm_frames + 1) … t: a trailing span, known when t is.

Time. Frame t is at t·256/22050 s from the stream's first sample: every CQT kernel of frame t is centred on sample
256·t (as in the windowed model, where window frame i is centred on the window's sample 256·i), so its posteriors
describe the audio around that instant. They read samples up to 256·(t + lookahead_frames) − 1 and, through the
lowest octave's kernels and its eight decimations, back about 2.4 s, plus the convs' past taps (9 frames) and the
normalisation span.

The stream is silence before its first sample and, when it finishes, after its last; every conv layer sees zeros
for frames before frame 0 (as a window's "same" padding does at its start). A stream of N samples has frames
0 … ceil(N / 256) − 1.

Streaming: `step` takes one block of `block_frames`·256 samples from each of several streams and returns, per
stream, the frames that became final (block_frames of them once the stream is older than the look-ahead). Every
layer keeps only the few past frames its taps need, so a stream's state has a fixed size however long it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamer.models.basic_pitch import cqt, network
from streamer.models.basic_pitch.network import Conv2d, Layers
from streamer.models.basic_pitch.streaming_cqt import FULL_FILTER_FUTURE, StreamingCqt
from streamer.models.basic_pitch.weights import Weights

# Frames each layer may read ahead, uncut ((time taps − 1) / 2).
FULL_FUTURE = {"contour": 1, "contour_out": 2, "note_hidden": 3, "note_out": 3, "onset_hidden": 2, "onset_out": 1}


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    lookahead_frames: int = 17  # frame t is final lookahead_frames·256 samples (197 ms) after its centre sample
    conv_future: int = 2  # future time taps each conv layer keeps (0–3; ≥ 3 keeps them all)
    filter_future: int = 8  # future taps of the decimation low-pass filter (0–128)
    compensate: bool = False  # rescale cut CQT kernels and filters to keep a steady tone's level
    fold: bool = True  # cut conv taps' weights go to the last kept tap (input assumed to hold still)
    norm_frames: int = 86  # trailing span of the min/max normalisation, frames including the frame itself
    block_frames: int = 4  # frames of audio per stream per step

    def __post_init__(self) -> None:
        if self.block_frames < 1 or self.norm_frames < 1 or self.conv_future < 0:
            raise ValueError("block_frames and norm_frames must be ≥ 1 and conv_future ≥ 0")
        if not 0 <= self.filter_future <= FULL_FILTER_FUTURE:
            raise ValueError(f"filter_future must be in 0..{FULL_FILTER_FUTURE}")
        if self.lookahead_frames - self.conv_frames < 1:
            raise ValueError(
                f"lookahead_frames {self.lookahead_frames} leaves the CQT no look-ahead after the convs' "
                f"{self.conv_frames} frames"
            )

    @property
    def layer_future(self) -> dict[str, int]:
        return {name: min(full, self.conv_future) for name, full in FULL_FUTURE.items()}

    @property
    def conv_frames(self) -> int:
        """How far the onset output looks ahead of the CQT frames it reads."""
        f = self.layer_future
        notes = f["contour"] + f["contour_out"] + f["note_hidden"] + f["note_out"]
        return f["onset_out"] + max(f["onset_hidden"], notes)

    @property
    def cqt_frames(self) -> int:
        return self.lookahead_frames - self.conv_frames

    @property
    def lookahead_s(self) -> float:
        return self.lookahead_frames * cqt.FRAME_SAMPLES / cqt.SAMPLE_RATE


@dataclass(slots=True)
class FrameBlock:
    start_frame: int  # stream frame index of note[0]
    note: np.ndarray  # (n, 88) final note (frame) posteriors, n ≥ 0
    onset: np.ndarray  # (n, 88) final onset posteriors
    provisional_note: np.ndarray | None = None  # (m, 88) frames start_frame + n …, zeros assumed after the audio
    provisional_onset: np.ndarray | None = None


@dataclass(slots=True)
class StreamState:
    """One stream's memory: a few hundred samples per CQT level, the last norm_frames − 1 frames' dB range and a
    few frames per conv layer. Fixed size."""

    frames: int  # frames of audio received (whole blocks): samples 0 … 256·frames − 1
    emitted: int  # final frames returned so far
    cqt: list[np.ndarray]  # per level: its last samples
    low: np.ndarray  # per-frame dB minimum of the last norm_frames − 1 frames (+inf: before the stream)
    high: np.ndarray  # per-frame dB maximum (−inf: before the stream)
    carry: dict[str, np.ndarray]  # per conv input (or delay line): its last frames
    finished: bool = False

    def clone(self) -> StreamState:
        return StreamState(
            self.frames,
            self.emitted,
            [a.copy() for a in self.cqt],
            self.low.copy(),
            self.high.copy(),
            {name: a.copy() for name, a in self.carry.items()},
            self.finished,
        )


class _Plan:
    """Frame bookkeeping of the conv stacks: each stage's lag behind the CQT frames, and the delays that give
    onset_out its two inputs at the same frames."""

    def __init__(self, layers: Layers) -> None:
        f = {name: getattr(layers, name).future for name in FULL_FUTURE}
        self.lag = {"contour": f["contour"], "onset_hidden": f["onset_hidden"]}
        self.lag["contour_out"] = self.lag["contour"] + f["contour_out"]
        self.lag["note_hidden"] = self.lag["contour_out"] + f["note_hidden"]
        self.lag["note_out"] = self.lag["note_hidden"] + f["note_out"]
        joined = max(self.lag["note_out"], self.lag["onset_hidden"])
        # onset_out reads the note posteriors and onset_hidden at the same frames: the earlier one waits.
        self.delay = {"note_out": joined - self.lag["note_out"], "onset_hidden": joined - self.lag["onset_hidden"]}
        self.lag["joined"] = joined
        self.lag["onset_out"] = joined + f["onset_out"]


class StreamingNetwork:
    sample_rate = cqt.SAMPLE_RATE
    frame_samples = cqt.FRAME_SAMPLES

    def __init__(self, weights: Weights, config: StreamingConfig) -> None:
        self.weights = weights
        self.config = config
        self.layers = network.build_layers(weights, config.layer_future, config.fold)
        self.front = StreamingCqt(
            weights, config.cqt_frames, config.filter_future, config.compensate, config.block_frames
        )
        self.index = network.harmonic_index()
        self.plan = _Plan(self.layers)
        self.frames_ahead = config.lookahead_frames

    @property
    def lookahead_s(self) -> float:
        return self.config.lookahead_s

    @property
    def block_samples(self) -> int:
        return self.config.block_frames * cqt.FRAME_SAMPLES

    # ---- state ---------------------------------------------------------------------------------------------------

    def _carried(self) -> dict[str, tuple[int, tuple[int, int]]]:
        """Frames carried per conv input (or delay line), with the shape of one frame."""
        layers, stack = self.layers, (network.CONTOUR_BINS, len(network.HARMONICS))
        return {
            "contour": (layers.contour.taps - 1, stack),
            "onset_hidden": (layers.onset_hidden.taps - 1, stack),
            "contour_out": (layers.contour_out.taps - 1, (network.CONTOUR_BINS, layers.contour.cout)),
            "note_hidden": (layers.note_hidden.taps - 1, (network.CONTOUR_BINS, 1)),
            "note_out": (layers.note_out.taps - 1, (network.N_PITCHES, layers.note_hidden.cout)),
            "delay_note": (self.plan.delay["note_out"], (network.N_PITCHES, 1)),
            "delay_onset": (self.plan.delay["onset_hidden"], (network.N_PITCHES, layers.onset_hidden.cout)),
            "onset_out": (layers.onset_out.taps - 1, (network.N_PITCHES, 1 + layers.onset_hidden.cout)),
            "final_note": (self.plan.lag["onset_out"] - self.plan.lag["note_out"], (network.N_PITCHES, 1)),
        }

    def new_state(self) -> StreamState:
        span = self.config.norm_frames - 1
        return StreamState(
            frames=0,
            emitted=0,
            cqt=self.front.initial_state(),
            low=np.full(span, np.inf, dtype=np.float32),
            high=np.full(span, -np.inf, dtype=np.float32),
            carry={name: np.zeros((n, *shape), np.float32) for name, (n, shape) in self._carried().items()},
        )

    # ---- streaming -----------------------------------------------------------------------------------------------

    def step(
        self, states: Sequence[StreamState], blocks: np.ndarray, provisional: Sequence[bool] | None = None
    ) -> list[FrameBlock]:
        """One block of audio from each stream: blocks (len(states), block_samples) float32. Returns, per stream,
        the frames that became final, and for streams with provisional[i] also the frames whose centre sample has
        arrived but that are not final yet, computed as if silence followed the block."""
        if blocks.shape != (len(states), self.block_samples):
            raise ValueError(f"blocks must be ({len(states)}, {self.block_samples}), not {blocks.shape}")
        if len({id(s) for s in states}) != len(states) or any(s.finished for s in states):
            raise ValueError("each state at most once per step, and none finished")
        if not states:
            return []
        note, onset = self._advance(states, blocks.astype(np.float32, copy=False))
        out = [self._final(state, note[i], onset[i]) for i, state in enumerate(states)]
        wanted = [i for i, p in enumerate(provisional or ()) if p]
        if wanted:
            clones = [states[i].clone() for i in wanted]
            tails = self._drain(clones, [c.frames for c in clones])
            for i, (tail_note, tail_onset) in zip(wanted, tails, strict=True):
                out[i].provisional_note, out[i].provisional_onset = tail_note, tail_onset
        return out

    def finish(self, state: StreamState, tail: np.ndarray | None = None) -> FrameBlock:
        """End of stream: `tail` (fewer than block_samples samples, may be None) is its last audio; returns every
        frame not returned yet, up to frame ceil(N / 256) − 1, computed with silence after the audio."""
        if state.finished:
            raise ValueError("stream already finished")
        tail = np.zeros(0, np.float32) if tail is None else np.asarray(tail, dtype=np.float32)
        if len(tail) >= self.block_samples:
            raise ValueError(f"the tail must be shorter than a block ({self.block_samples} samples)")
        end = -(-(state.frames * cqt.FRAME_SAMPLES + len(tail)) // cqt.FRAME_SAMPLES)
        start = state.emitted
        parts = []
        if len(tail):
            block = np.zeros((1, self.block_samples), np.float32)
            block[0, : len(tail)] = tail
            note, onset = self._advance([state], block)
            done = self._final(state, note[0], onset[0])
            parts.append((done.note, done.onset))
        (notes, onsets), *_ = self._drain([state], [end])
        state.finished = True
        count = end - start
        notes = np.concatenate([*(p[0] for p in parts), notes])[:count]
        onsets = np.concatenate([*(p[1] for p in parts), onsets])[:count]
        return FrameBlock(start, notes, onsets)

    def _drain(self, states: list[StreamState], ends: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Feed silence until every state's frames before ends[i] are final (batched over the states that still
        need some); returns each state's frames from its first unreturned one up to ends[i]. Consumes the states."""
        collected: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in states]
        starts = [s.emitted for s in states]
        silence = np.zeros((len(states), self.block_samples), np.float32)
        while todo := [i for i, s in enumerate(states) if s.emitted < ends[i]]:
            note, onset = self._advance([states[i] for i in todo], silence[: len(todo)])
            for row, i in enumerate(todo):
                done = self._final(states[i], note[row], onset[row])
                collected[i].append((done.note, done.onset))
        out = []
        for i, parts in enumerate(collected):
            count = max(ends[i] - starts[i], 0)
            notes = [p[0] for p in parts] or [np.zeros((0, network.N_PITCHES), np.float32)]
            onsets = [p[1] for p in parts] or [np.zeros((0, network.N_PITCHES), np.float32)]
            out.append((np.concatenate(notes)[:count], np.concatenate(onsets)[:count]))
        return out

    def _final(self, state: StreamState, note: np.ndarray, onset: np.ndarray) -> FrameBlock:
        """The block's output rows that are real frames (not before frame 0), and the bookkeeping."""
        first = state.frames - self.frames_ahead + 1 - self.config.block_frames
        skip = max(0, -first)
        state.emitted = max(state.emitted, first + len(note))
        return FrameBlock(first + skip, note[skip:], onset[skip:])

    def _advance(self, states: Sequence[StreamState], blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run one block through every stage for a batch of streams; returns the (S, block_frames, 88) note and
        onset rows the block finalised (rows before frame 0 included, as garbage) and updates the states."""
        cfg, plan, layers = self.config, self.plan, self.layers
        b = cfg.block_frames
        for state in states:
            state.frames += b
        # First CQT frame of this block, per stream; rows of a stage lagging `lag` frames start lag frames earlier.
        base = np.array([s.frames - b - cfg.cqt_frames + 1 for s in states])

        history = [np.stack([s.cqt[k] for s in states]) for k in range(len(self.front.levels))]
        db, history = self.front.step(history, blocks)
        for i, s in enumerate(states):
            s.cqt = [h[i].copy() for h in history]  # a copy: a view would keep the whole batch's buffer alive

        stack = self._normalised_stack(states, db, base)
        carry = {name: np.stack([s.carry[name] for s in states]) for name in states[0].carry}

        def run(name: str, layer: Conv2d, x: np.ndarray, lag: int) -> np.ndarray:
            joined = np.concatenate([carry[name], x], axis=1)
            carry[name] = joined[:, b:]
            return _zero_before_start(layer(joined), base - lag)

        def delay(name: str, x: np.ndarray) -> np.ndarray:
            joined = np.concatenate([carry[name], x], axis=1)
            carry[name] = joined[:, b:]
            return joined[:, :b]

        contour = run("contour", layers.contour, stack, plan.lag["contour"])
        contour = run("contour_out", layers.contour_out, contour, plan.lag["contour_out"])
        hidden = run("note_hidden", layers.note_hidden, contour, plan.lag["note_hidden"])
        note = run("note_out", layers.note_out, hidden, plan.lag["note_out"])
        onset_hidden = run("onset_hidden", layers.onset_hidden, stack, plan.lag["onset_hidden"])
        joined = np.concatenate([delay("delay_note", note), delay("delay_onset", onset_hidden)], axis=-1)
        onset = run("onset_out", layers.onset_out, joined, plan.lag["onset_out"])
        note = delay("final_note", note)  # the note rows of the frames whose onsets are now final
        for i, s in enumerate(states):
            s.carry = {name: c[i].copy() for name, c in carry.items()}
        return note[..., 0], onset[..., 0]

    def _normalised_stack(self, states: Sequence[StreamState], db: np.ndarray, base: np.ndarray) -> np.ndarray:
        """dB frames (S, b, 309) → harmonic stack (S, b, 264, 8) with the trailing-span normalisation; rows before
        frame 0 are excluded from the span and zeroed."""
        b, span = self.config.block_frames, self.config.norm_frames - 1
        low, high = db.min(axis=2), db.max(axis=2)
        real = (base[:, None] + np.arange(b)[None, :]) >= 0
        low = np.where(real, low, np.inf).astype(np.float32)
        high = np.where(real, high, -np.inf).astype(np.float32)
        lows = np.concatenate([np.stack([s.low for s in states]), low], axis=1)
        highs = np.concatenate([np.stack([s.high for s in states]), high], axis=1)
        for i, s in enumerate(states):
            s.low, s.high = lows[i, b:].copy(), highs[i, b:].copy()
        window = span + 1
        lo = np.lib.stride_tricks.sliding_window_view(lows, window, axis=1).min(axis=2)
        hi = np.lib.stride_tricks.sliding_window_view(highs, window, axis=1).max(axis=2)
        lo = np.where(real, lo, 0).astype(np.float32)
        hi = np.where(real, hi, 0).astype(np.float32)
        normalised = network.normalise(db, lo[..., None], hi[..., None], self.weights)
        return _zero_before_start(network.harmonic_stack(normalised, self.index), base)

    # ---- the definition ------------------------------------------------------------------------------------------

    def one_pass(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The streaming network's definition over a whole stream: (note, onset), each (ceil(N / 256), 88)."""
        cfg, layers = self.config, self.layers
        n = -(-len(audio) // cqt.FRAME_SAMPLES)
        if n == 0:
            empty = np.zeros((0, network.N_PITCHES), np.float32)
            return empty, empty.copy()
        frames = n + cfg.conv_frames
        db = self.front.whole(np.asarray(audio, dtype=np.float32), frames)
        span = cfg.norm_frames - 1
        low = np.concatenate([np.full(span, np.inf, np.float32), db.min(axis=1)])
        high = np.concatenate([np.full(span, -np.inf, np.float32), db.max(axis=1)])
        lo = np.lib.stride_tricks.sliding_window_view(low, span + 1).min(axis=1)
        hi = np.lib.stride_tricks.sliding_window_view(high, span + 1).max(axis=1)
        stack = network.harmonic_stack(network.normalise(db, lo[:, None], hi[:, None], self.weights), self.index)

        def causal(layer: Conv2d, x: np.ndarray) -> np.ndarray:
            """Zeros before frame 0; the future side reads computed frames, so each layer ends `future` earlier."""
            return layer(np.pad(x[None], ((0, 0), (layer.past, 0), (0, 0), (0, 0))))[0]

        contour = causal(layers.contour_out, causal(layers.contour, stack))
        note = causal(layers.note_out, causal(layers.note_hidden, contour))
        onset_hidden = causal(layers.onset_hidden, stack)
        joined = self.plan.lag["joined"]
        both = np.concatenate([note[: frames - joined], onset_hidden[: frames - joined]], axis=-1)
        onset = causal(layers.onset_out, both)
        return note[:n, :, 0], onset[:n, :, 0]


def _zero_before_start(x: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Zero rows (axis 1) of each stream that lie before frame 0; first[i] is stream i's first row's frame."""
    for i in np.flatnonzero(first < 0):
        x[i, : -first[i]] = 0
    return x
