"""Onset candidates of a stream of basic-pitch posteriors, found causally: frame t is known once frame t + 1 is.

basic-pitch (`note_creation.get_infered_onsets`) strengthens the onset posterior with "inferred onsets": the rise of
the frame posterior over one and two frames (the smaller of the two, floored at 0, zero for the first two frames),
rescaled so its maximum equals the onset posterior's maximum, then max-combined with the onsets. Offline the maxima
are those of the whole posteriorgram (a file, or one window in the windowed server). A stream knows neither in
advance, so the scale at frame f is the ratio of the two maxima over frames 0..f (cumulative maxima). It converges
to the whole-file ratio as soon as the stream's strongest onset and rise have been heard, and it can never lift a
rise above the strongest onset posterior seen so far, so silence or noise at a stream's start is not amplified
into onsets. On the accuracy set the rise's maximum is 0.14–0.22 against onset maxima of 0.8–0.97: the rescaling
multiplies rises by 4–7, which is why a fixed scale of 1 would all but disable inferred onsets.

An onset candidate is a strict local maximum in time of that strength reaching onset_threshold; the first and the
last frame of the stream never count (`scipy.signal.argrelmax` semantics, as upstream).
"""

from __future__ import annotations

import numpy as np

N_DIFF = 2  # rises are measured over one and two frames
_NONE = np.zeros(0, dtype=np.intp)


class OnsetPeaks:
    """Per-stream state: the last frames needed for rises and peaks, and the cumulative maxima."""

    __slots__ = ("_infer", "_max_onset", "_max_rise", "_n", "_scale", "_strength_tail", "_tail", "_threshold")

    def __init__(self, n_pitches: int, onset_threshold: float, infer_onsets: bool) -> None:
        self._threshold = onset_threshold
        self._infer = infer_onsets
        self._n = 0
        self._tail = np.zeros((N_DIFF, n_pitches), dtype=np.float32)  # last frame posteriors (zeros before start)
        self._strength_tail = np.zeros((0, n_pitches), dtype=np.float32)  # strengths of frames n − 2, n − 1
        self._max_onset = 0.0
        self._max_rise = 0.0
        self._scale = np.float32(0)  # max_onset / max_rise as of the last frame

    def push(self, note: np.ndarray, onset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Consume the next frames; returns (frames, pitch bins) of the candidates they reveal, ordered by frame.

        Candidates at frame t are revealed together with frame t + 1."""
        if len(note) == 0:
            return _NONE, _NONE
        strength = self._strength(note, onset)
        ext = np.concatenate((self._strength_tail, strength))
        first = self._n - len(self._strength_tail)  # stream frame of ext[0]
        self._n += len(note)
        self._strength_tail = ext[-2:]
        middle = ext[1:-1]
        strong = middle >= self._threshold
        if not strong.any():  # the usual case: skip the peak test
            return _NONE, _NONE
        t, p = np.nonzero(strong & (middle > ext[:-2]) & (middle > ext[2:]))
        return t + first + 1, p

    def _strength(self, note: np.ndarray, onset: np.ndarray) -> np.ndarray:
        if not self._infer:
            return onset
        ext = np.concatenate((self._tail, note))
        self._tail = ext[-N_DIFF:]
        current = ext[N_DIFF:]
        rise = np.minimum(current - ext[N_DIFF - 1 : -1], current - ext[:-N_DIFF])
        np.maximum(rise, 0, out=rise)
        if self._n < N_DIFF:  # upstream zeroes the first two frames' rises
            rise[: N_DIFF - self._n] = 0
        if onset.max() <= self._max_onset and rise.max() <= self._max_rise:
            # Neither maximum grows (the usual case once a stream has been heard): the scale stands. The same
            # float32 division as below, so the result does not depend on how frames are blocked.
            return np.maximum(onset, rise * self._scale)
        top_onset = np.maximum.accumulate(np.maximum(onset.max(axis=1), self._max_onset))
        top_rise = np.maximum.accumulate(np.maximum(rise.max(axis=1), self._max_rise))
        self._max_onset, self._max_rise = float(top_onset[-1]), float(top_rise[-1])
        scale = np.divide(top_onset, top_rise, out=np.zeros_like(top_onset), where=top_rise > 0)
        self._scale = scale[-1]
        return np.maximum(onset, rise * scale[:, None])

    def copy(self) -> OnsetPeaks:
        other = OnsetPeaks.__new__(OnsetPeaks)
        other._threshold = self._threshold
        other._infer = self._infer
        other._n = self._n
        other._tail = self._tail  # never written in place: push replaces these arrays
        other._strength_tail = self._strength_tail
        other._max_onset = self._max_onset
        other._max_rise = self._max_rise
        other._scale = self._scale
        return other
