"""A small additive synthesizer for test signals: melodies and chords that the models should transcribe exactly.

Used by tests and benchmarks (no SoundFont needed). Each note is a sine at the pitch's equal-tempered frequency
with a 10 ms attack, an exponential decay and a 20 ms release: smooth edges, so no click reads as an onset.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from streamer.notes import Note

A4_HZ = 440.0
ATTACK_S = 0.01
RELEASE_S = 0.02
DECAY_PER_S = 1.5


def pitch_hz(pitch: int) -> float:
    return A4_HZ * 2.0 ** ((pitch - 69) / 12)


def render(notes: Iterable[Note], sample_rate: int, duration: float, gain: float = 0.3) -> np.ndarray:
    """Mono float32 audio of `duration` seconds with every note in `notes`."""
    out = np.zeros(round(duration * sample_rate), dtype=np.float64)
    for note in notes:
        start = round(note.onset * sample_rate)
        length = round((note.offset - note.onset) * sample_rate)
        t = np.arange(length) / sample_rate
        envelope = np.minimum(1.0, t / ATTACK_S) * np.exp(-t * DECAY_PER_S)
        envelope *= np.clip((length / sample_rate - t) / RELEASE_S, 0.0, 1.0)
        tone = np.sin(2 * np.pi * pitch_hz(note.pitch) * t) * envelope * (note.velocity / 127)
        end = min(len(out), start + length)
        out[start:end] += gain * tone[: end - start]
    return out.astype(np.float32)


def melody(start: float = 0.3, step: float = 0.6, length: float = 0.5) -> list[Note]:
    """A C-major scale fragment and a held top note, then a three-note chord."""
    pitches = [60, 62, 64, 65, 67, 69, 71]
    notes = [Note(start + i * step, start + i * step + length, p, 100) for i, p in enumerate(pitches)]
    t = start + len(pitches) * step
    notes.append(Note(t, t + 1.6, 72, 100))
    chord_at = t + 2.0
    notes += [Note(chord_at, chord_at + 1.0, p, 100) for p in (55, 59, 62)]
    return notes


def random_piece(duration: float, seed: int = 0, polyphony: int = 2) -> list[Note]:
    """Seeded random notes over `duration` seconds: up to `polyphony` voices, each a sequence of notes and rests."""
    rng = np.random.default_rng(seed)
    notes: list[Note] = []
    for voice in range(polyphony):
        low = 48 + 12 * voice
        t = 0.2 + 0.1 * voice
        while t < duration - 0.6:
            length = float(rng.uniform(0.25, 1.0))
            pitch = int(rng.integers(low, low + 12))
            notes.append(Note(round(t, 3), round(min(t + length, duration - 0.3), 3), pitch, 100))
            t += length + float(rng.uniform(0.05, 0.5))
    return sorted(notes, key=lambda n: (n.onset, n.pitch))
