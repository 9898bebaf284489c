"""Where a session's committed events go besides its socket: MIDI ports and session files, off the event loop.

Opening a MIDI port, building and writing files and closing ports are slow (a JACK client, disk); they run in
threads. Events are handed to the sinks on the loop (cheap: a port's writer thread paces them, files collect them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from streamer import protocol as p
from streamer.sinks.base import EventSink
from streamer.sinks.midi_file import MidiFileSink
from streamer.sinks.session_file import SessionFile, finish_files


class SessionOutputs:
    def __init__(self, session_id: str, log: logging.LoggerAdapter, on_file_error: Callable[[], None]) -> None:
        self.session_id = session_id
        self.log = log
        self._on_file_error = on_file_error
        self._sinks: list[EventSink] = []
        self._files: list[SessionFile] = []  # finished before `done` is sent, so the client hears of failures
        self._session_file: MidiFileSink | None = None  # what `done.midi` carries, when `start` asked for it
        self._opening: asyncio.Task[None] | None = None

    def open(self, open_sinks: Callable[[str], list[EventSink]], midi_file: bool) -> None:
        """Start opening the session's sinks (in a thread); `opened()` waits for them."""
        if midi_file:
            self._session_file = MidiFileSink(self.session_id)
            self._files.append(self._session_file)
        self._opening = asyncio.get_running_loop().create_task(self._open(open_sinks))

    async def opened(self) -> None:
        if self._opening is not None:
            with contextlib.suppress(Exception):
                await self._opening

    async def _open(self, open_sinks: Callable[[str], list[EventSink]]) -> None:
        opened = await asyncio.to_thread(open_sinks, self.session_id)
        self._files += [s for s in opened if isinstance(s, SessionFile)]
        self._sinks += [s for s in opened if not isinstance(s, SessionFile)]

    def send(self, events: Sequence[p.NoteEvent]) -> None:
        for sink in [*self._sinks, *self._files]:
            try:
                sink.send(events)
            except Exception:
                self.log.exception("sink %s failed", type(sink).__name__)

    async def finish_files(self, done: p.Done, end_time: float) -> None:
        """Build (and keep, with `[midi] files_dir`) the session's files before `done` goes out."""
        files, self._files = self._files, []
        errors = await asyncio.to_thread(finish_files, files, end_time)
        for error in errors:
            self._on_file_error()
            self.log.error("session file: %s", error)
        if errors:
            done.midi_error = "; ".join(errors)
        if self._session_file is not None and self._session_file.data is not None:
            done.midi = self._session_file.base64()

    async def close(self, last: Sequence[p.NoteEvent]) -> None:
        """The session is over: `last` (the notes still sounding, ended) to the sinks, then close them all."""
        await self.opened()
        self.send(last)
        sinks, self._sinks = self._sinks, []
        files, self._files = self._files, []
        await asyncio.to_thread(_close_all, [*sinks, *files], self.log)


def _close_all(sinks: Sequence[EventSink], log: logging.LoggerAdapter) -> None:
    for sink in sinks:
        try:
            sink.close()
        except Exception:
            log.exception("closing sink %s failed", type(sink).__name__)
