"""One timeline of committed events from the successive sessions of a stream that resumed on other servers.

Pure bookkeeping, no I/O: the client feeds each session's events and progress, and says when a session ended and
where the next one takes over; out come the events to show, play and keep, renumbered so that ids stay unique
(every session numbers its notes from 1) and with nothing committed repeated.

Events wait for confirmation (`confirm`): the server follows each model step's events with a `progress` message
(and, when asked, an `interim` one) at once, saying up to where everything is settled with the model's full
look-ahead. A session that ends
without confirming its last events is redone from its last confirmed point by the next session: a drained server
commits the end of the audio it heard without the look-ahead after it (notes starting in its last 0.2 s are lost,
sounding ones are cut), and a vanished one may have sent only part of a block's events. (A server that sends no
`progress` messages confirms nothing: its events are taken as they come.)

The rule at a resume point R (everything before R was committed by the earlier sessions):

- Before R the earlier sessions' word is final. The new session starts a little before R (its pre-roll, so that
  the model hears the music leading up to R); whatever it reports before R is dropped.
- A note sounding at R is one note, never struck again. The new session's note of the same pitch that sounds at R
  or starts within CONTINUATION_S after it takes over: its note_off ends it. If no such note comes, it ends at R.
- A note a draining server ended at R, where nothing was confirmed (a drained session closes its sounding notes at
  the end of the audio it heard), stays ended: the new session's continuation of it is dropped, so the note is
  shortened rather than struck twice.
- Pedals held at R follow the same rule, keyed by controller.

Deciding needs the new session to have committed a little past R + CONTINUATION_S; its events from R on are held
until then (a fraction of a second: a resumed session is sent its backlog at full speed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from streamer import protocol as p

# How late after a resume point the new session may start a note and still be continuing one already sounding:
# a model hearing a held note from its first block settles it within a few frames (basic-pitch: 12–35 ms).
CONTINUATION_S = 0.1
# Event times equal to the resume point, as JSON carries them.
TIME_SLACK = 1e-6
PEDAL_PRESSED = 64

Voice = tuple[int, int, bool]  # pitch, program, is_drum: what a note sounds as


def voice(event: p.NoteOn) -> Voice:
    return event.pitch, event.program, event.is_drum


@dataclass
class _Splice:
    """Where a new session takes over, and what it said before deciding how notes sounding there continue."""

    at: float
    ended: set[Voice]  # notes a draining server ended at `at`
    before: dict[int, Voice] = field(default_factory=dict)  # the new session's notes begun before `at`, sounding
    pedals_before: set[int] = field(default_factory=set)  # its pedals pressed before `at`
    held: list[p.NoteEvent] = field(default_factory=list)  # its events from `at` on, until decided


class Timeline:
    def __init__(self, *, confirm: bool = False) -> None:
        self.events: list[p.NoteEvent] = []  # everything emitted, in order
        self.committed = 0.0  # the latest point known committed (and confirmed) on this timeline
        self.confirm = confirm
        self._confirming = False  # this session's server confirms its events with `progress` messages
        self._unconfirmed: list[p.NoteEvent] = []
        self._next_id = 1
        self._first = True  # the first session keeps the server's ids
        self._ids: dict[int, int | None] = {}  # this session's id → timeline id (None: dropped)
        self._sounding: dict[int, Voice] = {}  # timeline id → voice, notes not yet ended
        self._pedals: set[int] = set()  # pedals pressed on the timeline
        self._note_ended: dict[Voice, float] = {}  # when each voice last ended
        self._splice: _Splice | None = None

    @property
    def deciding(self) -> bool:
        return self._splice is not None

    @property
    def sounding(self) -> int:
        return len(self._sounding)

    # ---- what the client reports -------------------------------------------------------------------------------

    def on_events(self, events: list[p.NoteEvent]) -> list[p.NoteEvent]:
        """A session's committed events; returns the timeline's events to emit now."""
        if self._confirming:
            self._unconfirmed += events
            return []
        return self._take(events)

    def on_progress(self, time: float) -> list[p.NoteEvent]:
        """A `progress` (or `interim`) message: the session committed everything before `time`, its events so far
        included."""
        self._confirming = self.confirm
        out = self._take(self._unconfirmed)
        self._unconfirmed = []
        splice = self._splice
        if splice is None:
            self.committed = max(self.committed, time)
        elif time > splice.at + CONTINUATION_S:
            out += self._decide()
        return out

    def on_session_end(self, duration: float | None, final: bool) -> list[p.NoteEvent]:
        """The session is over: `duration` from its `done`, if one came; `final`: the stream ends with it (`done`
        after the client's `stop`, or an end the client will not resume from). Otherwise events it did not
        confirm wait for the next session, which redoes them (`resume`), or for `close`."""
        out: list[p.NoteEvent] = []
        if final:
            out += self._take(self._unconfirmed)
            self._unconfirmed = []
        if self._splice is not None:
            out += self._decide()
        if duration is not None and (final or not self._confirming):
            self.committed = max(self.committed, duration)
        return out

    def resume(self, at: float, drained: bool) -> None:
        """The next session's events continue this timeline from `at` (the previous one's unconfirmed events are
        dropped: it redoes them); `drained`: the previous session ended with `done` from a draining server, which
        ended its sounding notes at `at`."""
        assert self._splice is None, "the previous session's end was not reported"
        at = max(at, self.events[-1].time) if self.events else at  # times never go backwards
        # Closes that were confirmed (by a server that sends no progress messages) are on the timeline.
        closed = drained and not self._confirming
        ended = {v for v, t in self._note_ended.items() if t >= at - TIME_SLACK} if closed else set()
        self._splice = _Splice(at, ended)
        self._first = False
        self._ids = {}
        self._confirming = False
        self._unconfirmed = []
        self.committed = max(self.committed, at)

    def close(self, at: float) -> list[p.NoteEvent]:
        """The stream ends without a last `done` (no server could be reached): the last session's unconfirmed
        events are the best there is; end what still sounds at `at`."""
        out = self._take(self._unconfirmed)
        self._unconfirmed = []
        if self._splice is not None:
            out += self._decide()
        at = max(at, self.events[-1].time) if self.events else at
        out += [self._end(tid, at) for tid in list(self._sounding)]
        out += [self._pedal(c, False, at) for c in sorted(self._pedals)]
        return out

    # ---- internals ---------------------------------------------------------------------------------------------

    def _take(self, events: list[p.NoteEvent]) -> list[p.NoteEvent]:
        out: list[p.NoteEvent] = []
        splice = self._splice
        for event in events:
            if splice is None:
                out += self._pass(event)
            elif event.time < splice.at - TIME_SLACK:
                self._before(splice, event)
            else:
                splice.held.append(event)
        if splice is not None and events and events[-1].time > splice.at + CONTINUATION_S:
            out += self._decide()
        return out

    def _before(self, splice: _Splice, event: p.NoteEvent) -> None:
        """The new session's view of the pre-roll: which notes and pedals it has sounding at the resume point."""
        if isinstance(event, p.NoteOn):
            splice.before[event.id] = voice(event)
        elif isinstance(event, p.NoteOff):
            splice.before.pop(event.id, None)
            self._ids[event.id] = None
        elif event.value >= PEDAL_PRESSED:
            splice.pedals_before.add(event.control)
        else:
            splice.pedals_before.discard(event.control)

    def _decide(self) -> list[p.NoteEvent]:
        splice = self._splice
        assert splice is not None
        self._splice = None
        soon = splice.at + CONTINUATION_S
        # The new session's note that continues each voice: one sounding at the resume point, else the first it
        # starts soon after.
        continuing: dict[Voice, int] = {}
        for sid, v in splice.before.items():
            continuing.setdefault(v, sid)
        pressed = set(splice.pedals_before)
        for event in splice.held:
            if isinstance(event, p.NoteOn) and event.time <= soon:
                continuing.setdefault(voice(event), event.id)
            elif isinstance(event, p.Control) and event.value >= PEDAL_PRESSED and event.time <= soon:
                pressed.add(event.control)
        out: list[p.NoteEvent] = []
        for tid, v in list(self._sounding.items()):
            if (sid := continuing.pop(v, None)) is not None:
                self._ids[sid] = tid
            else:
                out.append(self._end(tid, splice.at))
        for v in splice.ended:
            if (sid := continuing.pop(v, None)) is not None:
                self._ids[sid] = None
        for sid in splice.before:  # begun before the resume point by the new session only: the old word stands
            self._ids.setdefault(sid, None)
        for control in sorted(self._pedals - pressed):
            out.append(self._pedal(control, False, splice.at))
        for event in splice.held:
            out += self._pass(event)
        return out

    def _pass(self, event: p.NoteEvent) -> list[p.NoteEvent]:
        if isinstance(event, p.NoteOn):
            if event.id in self._ids:  # continues a sounding note, or was dropped
                return []
            tid = event.id if self._first else self._next_id
            self._next_id = max(self._next_id, tid + 1)
            self._ids[event.id] = tid
            self._sounding[tid] = voice(event)
            return self._emit(msgspec.structs.replace(event, id=tid))
        if isinstance(event, p.NoteOff):
            tid = self._ids.get(event.id)
            return [self._end(tid, event.time)] if tid is not None and tid in self._sounding else []
        down = event.value >= PEDAL_PRESSED
        if down == (event.control in self._pedals):  # already so: a continued press, or a dropped one's release
            return []
        return [self._pedal(event.control, down, event.time, event.value)]

    def _end(self, tid: int, time: float) -> p.NoteEvent:
        v = self._sounding.pop(tid)
        self._note_ended[v] = time
        return self._emit(p.NoteOff(id=tid, time=time))[0]

    def _pedal(self, control: int, down: bool, time: float, value: int | None = None) -> p.NoteEvent:
        if down:
            self._pedals.add(control)
        else:
            self._pedals.discard(control)
        value = value if value is not None else (127 if down else 0)
        return self._emit(p.Control(time=time, control=control, value=value))[0]

    def _emit(self, event: p.NoteEvent) -> list[p.NoteEvent]:
        if self.events and event.time < self.events[-1].time:  # within TIME_SLACK before the resume point
            event = msgspec.structs.replace(event, time=self.events[-1].time)
        self.events.append(event)
        self.committed = max(self.committed, event.time)
        return [event]
