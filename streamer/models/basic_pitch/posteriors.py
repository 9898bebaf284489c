"""Notes from one window of basic-pitch posteriors, with the thresholds basic-pitch documents.

basic-pitch's own note creation (`basic_pitch.note_creation.output_to_notes_polyphonic`) reads a whole file's
posteriorgram and imports librosa, resampy, scipy and pretty_midi. We apply the same procedure to one window at a
time and additionally report which notes run into the window's edges, so the stitcher can continue them:

1. onset candidates are local maxima in time of the onset posterior (optionally max-combined with positive frame
   differences over 1 and 2 frames, rescaled to the onset maximum: "inferred onsets") that reach onset_threshold;
2. from each onset, latest first, a note extends while the frame posterior has not stayed below frame_threshold for
   energy_tolerance frames; notes not longer than the minimum length are dropped; the used energy is cleared at
   the pitch and its two neighbours;
3. "melodia trick": while any remaining frame energy exceeds frame_threshold, the strongest remaining frame grows
   into a note forwards and backwards by the same rule.
A note whose growth reached the window's last (first) frame is open at that end: offset (onset) None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.notes import WindowNote

MIDI_OFFSET = 21  # pitch bin 0 is A0
ENERGY_TOLERANCE = 11  # frames below threshold that end a note


@dataclass(frozen=True, slots=True)
class NoteRules:
    onset_threshold: float = 0.5
    frame_threshold: float = 0.3
    min_note_frames: int = 11  # round(127.70 ms × 86.13 frames/s)
    infer_onsets: bool = True
    melodia_trick: bool = True
    energy_tolerance: int = ENERGY_TOLERANCE


def _inferred_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    diffs = []
    for n in range(1, n_diff + 1):
        shifted = np.zeros_like(frames)
        shifted[n:] = frames[:-n]
        diffs.append(frames - shifted)
    rise = np.min(diffs, axis=0)
    rise[rise < 0] = 0
    rise[:n_diff] = 0
    peak = rise.max()
    if peak > 0:
        rise = rise * (onsets.max() / peak)
    return np.maximum(onsets, rise)


def _time_peaks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strict local maxima along time (first axis); the edge frames never count."""
    inner = (x[1:-1] > x[:-2]) & (x[1:-1] > x[2:])
    t, f = np.nonzero(inner)
    return t + 1, f


def _grow(energy: np.ndarray, start: int, pitch: int, step: int, stop: int, rules: NoteRules, clear: bool) -> int:
    """Walk from `start` in direction `step` until the energy stayed low for energy_tolerance frames or `stop`
    is reached. Returns the index just past the last frame above threshold (in walking direction)."""
    i = start
    low = 0
    # A note grown from the window's last (first) frame starts outside the window: nothing to walk.
    while i != stop and 0 <= i < energy.shape[0] and low < rules.energy_tolerance:
        low = low + 1 if energy[i, pitch] < rules.frame_threshold else 0
        if clear:
            _clear(energy, i, i + 1, pitch)
        i += step
    return i - step * low


def _clear(energy: np.ndarray, lo: int, hi: int, pitch: int) -> None:
    energy[lo:hi, max(pitch - 1, 0) : pitch + 2] = 0


def window_notes(frames: np.ndarray, onsets: np.ndarray, frame_seconds: float, rules: NoteRules) -> list[WindowNote]:
    """frames, onsets: (n_frames, 88) posteriors of one window; frame i starts at i · frame_seconds."""
    n = frames.shape[0]
    if n < 3:
        return []
    onset_strength = _inferred_onsets(onsets, frames) if rules.infer_onsets else onsets
    peak_t, peak_f = _time_peaks(onset_strength)
    strong = onset_strength[peak_t, peak_f] >= rules.onset_threshold
    peak_t, peak_f = peak_t[strong], peak_f[strong]
    energy = frames.copy()
    last = n - 1
    found: list[tuple[int, int, int, bool, bool]] = []  # start, end, bin, open_start, open_end

    for t, f in sorted(zip(peak_t.tolist(), peak_f.tolist(), strict=True), reverse=True):
        if t >= last:
            continue
        end = _grow(energy, t + 1, f, +1, last, rules, clear=False)
        if end - t <= rules.min_note_frames:
            continue
        _clear(energy, t, end, f)
        found.append((t, end, f, False, _reached(end, last, rules)))

    if rules.melodia_trick:
        while True:
            flat = int(np.argmax(energy))
            mid, f = divmod(flat, energy.shape[1])
            if energy[mid, f] <= rules.frame_threshold:
                break
            energy[mid, f] = 0
            end = _grow(energy, mid + 1, f, +1, last, rules, clear=True)
            start = _grow(energy, mid - 1, f, -1, 0, rules, clear=True) + 1
            if end - start <= rules.min_note_frames:
                continue
            found.append((start, end, f, start <= rules.energy_tolerance, _reached(end, last, rules)))

    notes = []
    for start, end, f, open_start, open_end in found:
        amplitude = float(frames[start:end, f].mean())
        notes.append(
            WindowNote(
                pitch=f + MIDI_OFFSET,
                onset=None if open_start else start * frame_seconds,
                offset=None if open_end else end * frame_seconds,
                velocity=int(np.clip(round(127 * amplitude), 1, 127)),
            )
        )
    return notes


def _reached(end: int, last: int, rules: NoteRules) -> bool:
    """True when a note's end is not final: it lies so close to the window's end that the energy could not be
    seen staying low for energy_tolerance frames (likewise a start within energy_tolerance of frame 0)."""
    return end > last - rules.energy_tolerance
