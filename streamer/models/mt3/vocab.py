"""MT3 token ids (reference §6.1): the `mt3` vocabulary and `ismir2021`'s layout.

Model id = codec index + 3 (ids 0, 1, 2 are PAD/decoder start, EOS, UNK). The codec ranges come in a fixed
order: shift, pitch, velocity, tie, program, drum. After them sit 100 unused "extra ids", and the embedding
is rounded up to a multiple of 128 rows. Only the velocity range differs between the two vocabularies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

PAD_ID = 0
DECODER_START_ID = 0
EOS_ID = 1
UNK_ID = 2
SPECIAL_IDS = 3
EXTRA_IDS = 100
EMBEDDING_ROW_MULTIPLE = 128

STEPS_PER_SECOND = 100  # shift tokens count 10 ms steps
MAX_SHIFT_STEPS = 1000  # one shift token covers at most 10 s
MIDI_VALUES = 128  # pitches, programs and drums all range over 0..127
MAX_VELOCITY = 127


class EventType(Enum):
    SHIFT = "shift"
    PITCH = "pitch"
    VELOCITY = "velocity"
    TIE = "tie"
    PROGRAM = "program"
    DRUM = "drum"


@dataclass(frozen=True, slots=True)
class Vocabulary:
    name: str
    velocity_bins: int  # 1 for mt3 (on/off only), 127 for ismir2021; bin 0 is note-off
    uses_ties: bool  # segments begin with a tie section
    uses_programs: bool  # events carry program tokens

    def _sizes(self) -> list[tuple[EventType, int]]:
        return [
            (EventType.SHIFT, MAX_SHIFT_STEPS + 1),
            (EventType.PITCH, MIDI_VALUES),
            (EventType.VELOCITY, self.velocity_bins + 1),
            (EventType.TIE, 1),
            (EventType.PROGRAM, MIDI_VALUES),
            (EventType.DRUM, MIDI_VALUES),
        ]

    def _offset(self, kind: EventType) -> int:
        offset = SPECIAL_IDS
        for event, size in self._sizes():
            if event is kind:
                return offset
            offset += size
        raise AssertionError(kind)

    @property
    def codec_size(self) -> int:
        return sum(size for _, size in self._sizes())

    @property
    def embedding_rows(self) -> int:
        """1536 for mt3, 1664 for ismir2021."""
        base = SPECIAL_IDS + self.codec_size + EXTRA_IDS
        return EMBEDDING_ROW_MULTIPLE * math.ceil(base / EMBEDDING_ROW_MULTIPLE)

    def token(self, kind: EventType, value: int = 0) -> int:
        size = dict(self._sizes())[kind]
        if not 0 <= value < size:
            raise ValueError(f"{kind.value} value {value} outside 0..{size - 1}")
        return self._offset(kind) + value

    def event(self, token: int) -> tuple[EventType, int] | None:
        """The event a model id stands for; None for PAD, UNK, extra ids and out-of-range ids (invalid)."""
        index = token - SPECIAL_IDS
        if index < 0:
            return None
        for kind, size in self._sizes():
            if index < size:
                return kind, index
            index -= size
        return None

    def velocity_bin(self, velocity: int) -> int:
        """Encoding: ceil(bins · v / 127); 0 stays 0 (note-off)."""
        return math.ceil(self.velocity_bins * velocity / MAX_VELOCITY)

    def bin_velocity(self, velocity_bin: int) -> int:
        """Decoding: int(127 · bin / bins), so mt3 onsets decode to 127."""
        return int(MAX_VELOCITY * velocity_bin / self.velocity_bins)


MT3 = Vocabulary("mt3", velocity_bins=1, uses_ties=True, uses_programs=True)
ISMIR2021 = Vocabulary("ismir2021", velocity_bins=MAX_VELOCITY, uses_ties=False, uses_programs=False)
