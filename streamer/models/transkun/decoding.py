"""From Transkun's scores to window-relative notes and pedals.

Each output track (2 pedals, 88 keys) is a semi-Markov chain of non-overlapping intervals [b, e] of frames
(the neural semi-CRF of Yan et al., NeurIPS 2021): a path walks from the first frame to the last, each step
either moving on one frame (scoring 0) or taking an interval [b, e], b < e, and continuing from e (so an interval
may begin where the previous one ended). One-frame intervals are scored on their own: one is taken on every frame
the path stands on (not inside an interval) where its score is positive. The best path maximises the sum.

The maximisation runs backwards in time on the model's device for all windows and tracks at once, one step
per frame; the chosen intervals are read back on the host. Each interval then gets a velocity (the most likely
of 128 classes) and sub-frame onset and offset corrections (the mean of a continuous Bernoulli, within ±½
frame). An interval touching the window's first (last) frame has an onset (offset) only when the model says
it has one there; otherwise the note was already sounding (still sounds), which the stitcher needs to know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamer.models.device_io import to_host
from streamer.models.transkun.spec import FRAME_S, TRACK_CODES
from streamer.notes import WindowNote

PEDAL_VELOCITY = 127  # pedals are on/off here: the control value sent while pressed
MIN_NOTE_S = 1e-8  # a refined note is never shorter than this (offset ≥ onset + MIN_NOTE_S)
# Refinement outputs are continuous-Bernoulli means in [0, 1], mapped to frame offsets: (mean − ½) / 0.99,
# the inverse of training's target map (offset · 0.99 + ½), clipped to ±½ frame.
REFINE_SPAN = 0.99
REFINE_LIMIT = 0.5
# Near p = ½ the closed form of the continuous Bernoulli's mean is 0/0: a Taylor series is used in (0.499, 0.501].
CB_UNSTABLE = (0.499, 0.501)


@dataclass(frozen=True, slots=True)
class Interval:
    """Frames [begin, end] (inclusive) of one track of one window."""

    window: int
    track: int
    begin: int
    end: int


def best_intervals(products: Tensor, single: Tensor, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Backward max-sum for every chain at once. `products` (chains, frames, frames) and `single` (chains,
    frames) come from the scorer: interval [b, e] scores products[b, e] · (e − b) · scale. Returns, on the host,
    the choice at each frame (−1: no interval begins here, else the end frame of the interval that does), shape
    (chains, frames − 1), and the one-frame intervals taken, (chains, frames)."""
    chains, frames = single.shape
    length = torch.arange(frames, device=single.device, dtype=products.dtype) * scale
    best = torch.empty(chains, frames, dtype=products.dtype, device=single.device)
    choice = torch.empty(chains, frames - 1, dtype=torch.int64, device=single.device)
    bonus = single.clamp(min=0)
    best[:, frames - 1] = bonus[:, frames - 1]
    for p in range(frames - 2, -1, -1):
        # Candidate 0 continues without an interval; candidate i ≥ 1 takes [p, p + i] and continues from p + i.
        span = products[:, p, p + 1 :] * length[1 : frames - p]
        candidates = torch.cat([best[:, p + 1 : p + 2], best[:, p + 1 :] + span], dim=1)
        value, index = candidates.max(dim=1)
        best[:, p] = value + bonus[:, p]
        choice[:, p] = torch.where(index > 0, index + p, -1)
    return to_host(choice).numpy(), to_host(single > 0).numpy()


def trace(choice: np.ndarray, taken: np.ndarray, chain: int) -> list[tuple[int, int]]:
    """One chain's intervals, in time order, from frame 0 along the choices made by `best_intervals`."""
    last = taken.shape[1] - 1
    begins = choice[chain]
    singles = taken[chain]
    stops = np.flatnonzero((begins >= 0) | singles[:-1])  # frames where something happens
    result: list[tuple[int, int]] = []
    frame, k = 0, 0
    while frame < last:
        while k < len(stops) and stops[k] < frame:
            k += 1
        if k == len(stops):
            break
        frame = int(stops[k])
        if singles[frame]:
            result.append((frame, frame))
        end = int(begins[frame])
        if end >= 0:
            result.append((frame, end))
            frame = end
        else:
            frame += 1
    if singles[last]:
        result.append((last, last))
    return result


def continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    """Mean of a continuous Bernoulli with parameter p = sigmoid(logits): p/(2p−1) + 1/(ln(1−p) − ln p)."""
    tiny = torch.finfo(logits.dtype).eps
    p = torch.sigmoid(logits).clamp(tiny, 1 - tiny)
    stable = (p <= CB_UNSTABLE[0]) | (p > CB_UNSTABLE[1])
    safe = torch.where(stable, p, torch.full_like(p, CB_UNSTABLE[0]))
    closed = safe / (2 * safe - 1) + 1 / (torch.log1p(-safe) - torch.log(safe))
    x = p - 0.5
    taylor = 0.5 + (1 / 3 + 16 / 45 * x * x) * x
    return torch.where(stable, closed, taylor)


def refinement(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(…, 4) refinement logits → (onset and offset shifts in frames, onset and offset presence)."""
    shift = ((continuous_bernoulli_mean(logits[..., :2]) - 0.5) / REFINE_SPAN).clamp(-REFINE_LIMIT, REFINE_LIMIT)
    return shift, logits[..., 2:] > 0


def window_notes(
    intervals: Sequence[Interval], velocity: np.ndarray, shift: np.ndarray, present: np.ndarray, last_frame: int
) -> list[WindowNote]:
    """One window's intervals (grouped by track, in time order) with their attributes → notes and pedals.

    Within a track a refined onset never goes before the previous interval's refined offset, so shifted notes
    of one key never overlap."""
    notes: list[WindowNote] = []
    previous_track, previous_end = -1, 0.0
    for i, it in enumerate(intervals):
        if it.track != previous_track:
            previous_track, previous_end = it.track, 0.0
        onset = max((it.begin + float(shift[i, 0])) * FRAME_S, previous_end)
        offset = max((it.end + float(shift[i, 1])) * FRAME_S, onset + MIN_NOTE_S)
        previous_end = offset
        # An interval on the window's edge frame may have begun (may go on) outside the window; the presence
        # logits say whether the onset (offset) itself is there.
        has_onset = it.begin > 0 or bool(present[i, 0])
        has_offset = it.end < last_frame or bool(present[i, 1])
        code = TRACK_CODES[it.track]
        is_pedal = code < 0
        notes.append(
            WindowNote(
                pitch=0 if is_pedal else code,
                onset=onset if has_onset else None,
                offset=offset if has_offset else None,
                velocity=PEDAL_VELOCITY if is_pedal else max(1, int(velocity[i])),
                control=-code if is_pedal else None,
            )
        )
    return notes
