"""Protocol v1: every message on the wire, defined once as typed schemas (docs/protocol.md is written from these).

Client → server text messages: `start`, `flush`, `stop`; binary frames carry interleaved PCM after `start`.
Server → client text messages: `ready`, `events` (note_on / note_off / control), `interim`, `progress`, `lagging`,
`error`, `done`. This module is shared by the session core, the sinks and the clients; it does no I/O.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec

from streamer.errors import BadMessage, UnknownMessageType

PROTOCOL_VERSION = 1
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000

Encoding = Literal["s16le", "f32le"]
ENCODINGS: tuple[str, ...] = ("s16le", "f32le")
CLIENT_TYPES = ("start", "flush", "stop")

Seconds = Annotated[float, msgspec.Meta(ge=0)]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=False):
    pass


# ---- client → server -----------------------------------------------------------------------------------------


class Start(_Message, tag="start"):
    sample_rate: int
    # A plain string, checked by the session, so that an unknown encoding gets `unsupported_format` like an
    # unknown channel count or sample rate.
    encoding: str = "s16le"
    channels: int = 1
    model: str | None = None
    hop: float | None = None
    midi_file: bool = False
    interim: bool = False  # also send `interim` messages: the notes believed started but not yet committed
    progress: bool = False  # also send `progress` messages: how far the session has committed (costs nothing)
    # Continue a timeline: this session's audio starts at this time of the client's clock (a client resuming on
    # another server after its first one went away). Event times are on that clock.
    resume_at: Seconds = 0.0


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
    lookahead: float = 0.0  # seconds of audio after an instant before the server can commit it (streaming models)


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


class Control(_Message, tag="control", frozen=True):
    """A MIDI controller change: pedals (64 sustain, 67 soft) pressed (value 127) and released (value 0)."""

    time: float
    control: int
    value: int


NoteEvent = NoteOn | NoteOff | Control


class Events(_Message, tag="events"):
    events: list[NoteEvent]


class InterimNote(msgspec.Struct, frozen=True):
    pitch: int
    onset: float
    velocity: int
    program: int = 0
    is_drum: bool = False


class Interim(_Message, tag="interim"):
    """Notes the server believes have started after its last committed point; each replaces the previous one.
    Never final, never sent to MIDI ports or files."""

    time: float  # everything before this is committed (final `events`)
    notes: list[InterimNote]


class Progress(_Message, tag="progress"):
    """No note will start before `time` any more: every note_on before it was sent (with the window models,
    every event). Sent after each model step; what a resuming client uses as its resume point."""

    time: float


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
    failed_windows: int = 0
    midi: str | None = None  # base64 of the session's standard MIDI file, when `start` asked for it
    midi_error: str | None = None  # why the session's MIDI file could not be made or kept


ServerMessage = Ready | Events | Interim | Progress | Lagging | Error | Done

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()


def decode_client(text: str | bytes) -> ClientMessage:
    """Parse one client text message; raises BadMessage / UnknownMessageType with a message a person can act on."""
    try:
        return _client_decoder.decode(text)
    except RecursionError:
        raise BadMessage("message is nested too deeply") from None
    except msgspec.ValidationError as e:
        if "`$.type`" in str(e):
            raise _type_error(text, e) from None
        raise BadMessage(f"invalid message: {e}") from None
    except msgspec.DecodeError as e:
        raise BadMessage(f"malformed JSON: {e}") from None


def _type_error(text: str | bytes, error: msgspec.ValidationError) -> BadMessage:
    """A `type` the decoder refused: unknown, or known but given twice (the decoder only sees the last one)."""
    types: list[object] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        # Called for every object, innermost first: the outermost (the message) is the last call.
        types[:] = [value for key, value in items if key == "type"]
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return BadMessage(f"invalid message: {error}")
    if len(types) > 1:
        return BadMessage("the `type` field appears more than once")
    if types and isinstance(types[0], str) and types[0] not in CLIENT_TYPES:
        return UnknownMessageType(f"unknown message type {types[0]!r}; expected one of {', '.join(CLIENT_TYPES)}")
    return BadMessage(f"invalid message: {error}")


def decode_server(text: str | bytes) -> ServerMessage:
    return _server_decoder.decode(text)


def encode(message: _Message) -> str:
    return _encoder.encode(message).decode()
