"""Protocol v1: every message on the wire, defined once as typed schemas (docs/protocol.md is written from these).

Client → server text messages: `start`, `flush`, `stop`; binary frames carry interleaved PCM after `start`.
Server → client text messages: `ready`, `events` (note_on / note_off), `lagging`, `error`, `done`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

PROTOCOL_VERSION = 1
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000

Encoding = Literal["s16le", "f32le"]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=False):
    pass


# ---- client → server -----------------------------------------------------------------------------------------


class Start(_Message, tag="start"):
    sample_rate: int
    encoding: Encoding = "s16le"
    channels: int = 1
    model: str | None = None
    hop: float | None = None
    midi_file: bool = False


class Flush(_Message, tag="flush"):
    pass


class Stop(_Message, tag="stop"):
    pass


ClientMessage = Start | Flush | Stop


# ---- server → client -----------------------------------------------------------------------------------------


class Ready(_Message, tag="ready"):
    session: str
    model: str
    sample_rate: int
    window: float
    hop: float
    protocol: int = PROTOCOL_VERSION


class NoteOn(_Message, tag="note_on", frozen=True):
    id: int
    time: float
    pitch: int
    velocity: int
    program: int
    is_drum: bool


class NoteOff(_Message, tag="note_off", frozen=True):
    id: int
    time: float


NoteEvent = NoteOn | NoteOff


class Events(_Message, tag="events"):
    events: list[NoteEvent]


class Lagging(_Message, tag="lagging"):
    skipped_windows: int
    behind: float
    message: str


class Error(_Message, tag="error"):
    code: str
    message: str
    fatal: bool = True


class Done(_Message, tag="done"):
    notes: int
    duration: float
    windows: int
    skipped_windows: int
    midi: str | None = None  # base64 of the session's standard MIDI file, when `start` asked for it


ServerMessage = Ready | Events | Lagging | Error | Done

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


def decode_client(text: str | bytes) -> ClientMessage:
    """Parse one client text message; raises msgspec.ValidationError / DecodeError on bad input."""
    return _client_decoder.decode(text)


def decode_server(text: str | bytes) -> ServerMessage:
    return _server_decoder.decode(text)


def encode(message: _Message) -> str:
    return _encoder.encode(message).decode()
