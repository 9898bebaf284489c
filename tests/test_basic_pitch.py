"""basic-pitch's per-window note creation, on posteriors built by hand (no model run needed)."""

from __future__ import annotations

import numpy as np

from streamer.models.basic_pitch.model import FRAME_SECONDS
from streamer.models.basic_pitch.posteriors import MIDI_OFFSET, NoteRules, window_notes

FRAMES = 172


def posteriors(*notes: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(start frame, end frame, pitch) notes → frame and onset posteriors with a clean onset peak at each start."""
    frames = np.zeros((FRAMES, 88), np.float32)
    onsets = np.zeros((FRAMES, 88), np.float32)
    for start, end, pitch in notes:
        frames[max(start, 0) : end, pitch - MIDI_OFFSET] = 0.8
        if start > 0:
            onsets[start, pitch - MIDI_OFFSET] = 0.9
    return frames, onsets


def test_a_clean_note_inside_the_window() -> None:
    (note,) = window_notes(*posteriors((20, 60, 60)), FRAME_SECONDS, NoteRules())
    assert (note.pitch, note.onset, note.offset) == (60, 20 * FRAME_SECONDS, 60 * FRAME_SECONDS)


def test_notes_running_into_the_edges_are_open() -> None:
    notes = window_notes(*posteriors((-5, 40, 62), (100, FRAMES, 64)), FRAME_SECONDS, NoteRules())
    by_pitch = {n.pitch: n for n in notes}
    assert by_pitch[62].onset is None and by_pitch[62].offset == 40 * FRAME_SECONDS
    assert by_pitch[64].onset == 100 * FRAME_SECONDS and by_pitch[64].offset is None


def test_energy_peaking_on_the_last_or_first_frame_does_not_crash() -> None:
    frames = np.zeros((FRAMES, 88), np.float32)
    frames[-1, 10] = 0.9  # the strongest remaining energy sits on the window's last frame
    frames[0, 20] = 0.9  # and on its first
    frames[-30:, 30] = 0.7  # a note sounding through the end, grown by the melodia trick
    notes = window_notes(frames, np.zeros_like(frames), FRAME_SECONDS, NoteRules())
    assert [(n.pitch, n.offset) for n in notes] == [(30 + MIDI_OFFSET, None)]


def test_short_blips_are_dropped() -> None:
    assert window_notes(*posteriors((50, 55, 60)), FRAME_SECONDS, NoteRules()) == []
