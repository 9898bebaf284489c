"""Note types shared by models, the stitcher and the sinks.

Two views of a note: `WindowNote` is what a model saw inside one window (times relative to the window's first
sample, with either end possibly outside the window), `Note` is a finished note on the session clock.
"""

from __future__ import annotations

from dataclasses import dataclass

DRUM_CHANNEL = 9  # General MIDI channel 10, zero-based
DEFAULT_VELOCITY = 100
SUSTAIN_PEDAL = 64  # MIDI control numbers of the pedals a piano model reports
SOFT_PEDAL = 67

NoteKey = tuple[int, int, bool, int | None]


@dataclass(frozen=True, slots=True)
class WindowNote:
    """A note as one window saw it. Times are seconds from the window's first sample.

    onset None: the note was already sounding when the window began (an MT3 tie, or a frame-based note that
    touches the window's first frame). offset None: the note was still sounding when the window ended.
    A pedal held from onset to offset is a `WindowNote` with `control` set (SUSTAIN_PEDAL, SOFT_PEDAL) and pitch 0:
    it is stitched like a note and committed as control events.
    """

    pitch: int
    onset: float | None
    offset: float | None
    velocity: int = DEFAULT_VELOCITY
    program: int = 0
    is_drum: bool = False
    control: int | None = None

    @property
    def key(self) -> NoteKey:
        return (self.pitch, self.program, self.is_drum, self.control)


@dataclass(frozen=True, slots=True)
class Note:
    """A complete note on the session clock (seconds)."""

    onset: float
    offset: float
    pitch: int
    velocity: int = DEFAULT_VELOCITY
    program: int = 0
    is_drum: bool = False
    control: int | None = None

    @property
    def key(self) -> NoteKey:
        return (self.pitch, self.program, self.is_drum, self.control)
