"""The CQT front end with bounded look-ahead, computed block by block per stream or over a whole signal at once.

Definition. The stream is silence before its first sample (index 0). Level 0 is the audio; level k ≥ 1 is
x_k[m] = Σ_j lowpass[j]·x_(k−1)[2m + j − 127] over the taps j − 127 ≤ `filter_future` (the later taps are cut, the
rest optionally rescaled to unit DC gain); level k sample m is therefore known once level k−1 reaches 2m +
filter_future, which makes x_k[m] = 0 for m < z_k (z_0 = 0, z_k = ceil((z_(k−1) − filter_future) / 2)). CQT frame t
at level k reads x_k[t·h_k + o] for kernel offsets o up to the largest that level k has computed once the audio up
to sample 256·(t + frames_ahead) − 1 has arrived: frame t of every level is final exactly `frames_ahead` frames
after its centre sample 256·t. Cut kernels are optionally rescaled (see cqt.truncated_kernels).

Arithmetic is float64 here (the result is rounded to float32 dB): in float32, the rounding of the long filter
chain differs with the order of summation by up to ~0.01 dB in bins 90 dB below the loudest, which the network
turns into posterior differences near 1e-4 between a streamed and a one-pass evaluation of the same definition.

Streaming: each block of `block_frames`·256 samples adds exactly block_frames·h_k samples to every level and
block_frames CQT frames, so every stream of a batch runs the same shapes whatever its age. A stream's state is each
level's last few hundred samples; a new stream's state is zeros, which is exact (silence before the stream).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.models.basic_pitch import cqt
from streamer.models.basic_pitch.weights import Weights

FULL_FILTER_FUTURE = cqt.LOWPASS_TAPS - 1 - cqt.LOWPASS_CENTRE  # 128: the uncut low-pass filter's future taps
WHOLE_PAD = 512  # zeros kept before index 0 of each level in `whole` (its deepest read is 383 samples back)


@dataclass(frozen=True, slots=True)
class Level:
    hop: int  # level samples per frame
    first: int  # z_k: the first sample index that may be non-zero
    kernels: cqt.LevelKernels
    lowpass: np.ndarray | None  # the (cut) filter that makes this level from the previous one; None for level 0
    bins: slice  # which output bins it fills


class StreamingCqt:
    def __init__(self, weights: Weights, frames_ahead: int, filter_future: int, compensate: bool, block_frames: int):
        if frames_ahead < 1:
            raise ValueError("the CQT needs at least one frame of look-ahead")
        if not 0 <= filter_future <= FULL_FILTER_FUTURE:
            raise ValueError(f"filter_future must be in 0..{FULL_FILTER_FUTURE}, not {filter_future}")
        self.frames_ahead = frames_ahead
        self.filter_future = filter_future
        self.block_frames = block_frames
        self.scale = weights.cqt_scale.astype(np.float64)
        taps = cqt.lowpass_taps(weights.lowpass, filter_future, compensate).astype(np.float64)
        full_last = cqt.truncated_kernels(weights.cqt_kernels, 0, None, compensate=False).last
        levels = []
        first = 0
        for k in range(cqt.N_LEVELS):
            hop = cqt.level_hop(k)
            if k:
                first = -((filter_future - first) // 2)
            future = min(full_last, first + frames_ahead * hop - 1)
            cut = cqt.truncated_kernels(weights.cqt_kernels, k, future, compensate)
            kernels = cqt.LevelKernels(cut.first, cut.matrix.astype(np.float64))
            levels.append(Level(hop, first, kernels, taps if k else None, cqt.level_bins(k)))
        self.levels = levels
        self._plan_streaming()

    @property
    def lookahead_samples(self) -> int:
        return self.frames_ahead * cqt.FRAME_SAMPLES

    # ---- streaming -------------------------------------------------------------------------------------------

    def _plan_streaming(self) -> None:
        """Per level: samples added per block, history kept, and where in (history + new) the reads start."""
        b = self.block_frames
        self.new = [b * lv.hop for lv in self.levels]
        self.decimators: list[cqt.Decimator | None] = [None]
        need = []
        for k, lv in enumerate(self.levels):
            # CQT reads: the block's frames end `slack` samples before the level's newest sample.
            slack = lv.first + self.frames_ahead * lv.hop - 1 - lv.kernels.last
            span = (b - 1) * lv.hop + lv.kernels.matrix.shape[0]
            reads = slack + span
            if k + 1 < len(self.levels):
                nxt = self.levels[k + 1]
                assert nxt.lowpass is not None
                slack_d = lv.first + 1 - 2 * nxt.first - self.filter_future
                reads = max(reads, slack_d + 2 * (self.new[k + 1] - 1) + len(nxt.lowpass))
                self.decimators.append(cqt.Decimator(nxt.lowpass, min(cqt.DECIMATE_CHUNK, self.new[k + 1])))
            need.append(reads)
        self.history = [max(n - new, 0) for n, new in zip(need, self.new, strict=True)]

    def initial_state(self) -> list[np.ndarray]:
        """A new stream's per-level history: silence."""
        return [np.zeros(h, dtype=np.float64) for h in self.history]

    def step(self, history: list[np.ndarray], audio: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """history: per level (S, history_k); audio: (S, block_frames·256). Returns the dB of the block's
        block_frames final frames (S, block_frames, 309) and the new history. A stream that has received n frames
        of audio gets frames n − frames_ahead + 1 − block_frames … n − frames_ahead."""
        s, b = audio.shape[0], self.block_frames
        db = np.empty((s, b, cqt.N_BINS), dtype=np.float32)
        buf = audio.astype(np.float64)
        kept = []
        for k, lv in enumerate(self.levels):
            new = buf
            if k:
                # The new samples of level k read level k−1's (history + new) up to its newest known sample.
                start = buf.shape[1] + 2 * lv.first - self.levels[k - 1].first - 2 * self.new[k] - cqt.LOWPASS_CENTRE
                decimate = self.decimators[k]
                assert decimate is not None and lv.lowpass is not None
                new = decimate(buf[:, start : start + 2 * (self.new[k] - 1) + len(lv.lowpass)])
            buf = np.concatenate([history[k], new], axis=1) if self.history[k] else new
            centre = buf.shape[1] - lv.first - (self.frames_ahead + b - 1) * lv.hop
            values = cqt.frames(buf, lv.kernels, lv.hop, centre, b)
            db[:, :, lv.bins] = cqt.decibels(cqt.power(values, self.scale[lv.bins]))
            kept.append(buf[:, buf.shape[1] - self.history[k] :])
        return db, kept

    # ---- one pass ----------------------------------------------------------------------------------------------

    def whole(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        """The dB of frames 0 … n_frames − 1 of a whole signal followed by silence, straight from the definition:
        (n_frames, 309)."""
        # Level k must reach the last frame's reads and the next level's; work out the ends top-down.
        ends = [0] * len(self.levels)
        for k in reversed(range(len(self.levels))):
            lv = self.levels[k]
            ends[k] = (n_frames - 1) * lv.hop + lv.kernels.last + 1
            if k + 1 < len(self.levels):
                ends[k] = max(ends[k], 2 * (ends[k + 1] - 1) + self.filter_future + 1)
        out = np.empty((n_frames, cqt.N_BINS), dtype=np.float32)
        x = np.zeros((1, WHOLE_PAD + ends[0]), dtype=np.float64)
        x[0, WHOLE_PAD : WHOLE_PAD + min(len(audio), ends[0])] = audio[: ends[0]]
        for k, lv in enumerate(self.levels):
            if k:
                assert lv.lowpass is not None
                lo = WHOLE_PAD + 2 * lv.first - cqt.LOWPASS_CENTRE
                hi = WHOLE_PAD + 2 * (ends[k] - 1) + self.filter_future + 1
                level = np.zeros((1, WHOLE_PAD + ends[k]), dtype=np.float64)
                level[:, WHOLE_PAD + lv.first :] = cqt.Decimator(lv.lowpass, cqt.DECIMATE_CHUNK)(x[:, lo:hi])
                x = level
            values = cqt.frames(x, lv.kernels, lv.hop, WHOLE_PAD, n_frames)
            out[:, lv.bins] = cqt.decibels(cqt.power(values[0], self.scale[lv.bins]))
        return out
