"""Files a session leaves behind (`[midi] files_dir`): each a sink that collects the committed events and, when the
session ends, builds its file and writes it atomically. Written before `done` goes out, so a client hears of a
failure (`done.midi_error`)."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from streamer.errors import ConfigError
from streamer.protocol import NoteEvent


class SessionFile(ABC):
    """An `EventSink` that keeps a session as `<directory>/<session id><suffix>` (or only in memory: `data`)."""

    suffix = ""

    def __init__(self, session_id: str, directory: str | os.PathLike[str] | None = None) -> None:
        self.session_id = session_id
        self._directory = Path(directory) if directory else None
        self.data: bytes | None = None
        self.path: Path | None = None

    @abstractmethod
    def send(self, events: Sequence[NoteEvent]) -> None: ...

    @abstractmethod
    def build(self, end_time: float | None) -> bytes:
        """The file's bytes; notes still sounding end at `end_time` (session length), else at the last event."""

    def close(self, end_time: float | None = None) -> None:
        """Finish the file (once). A file that cannot be written raises OSError and leaves nothing behind."""
        if self.data is not None:
            return
        self.data = self.build(end_time)
        if self._directory is not None:
            self.path = write_atomically(self._directory / (file_stem(self.session_id) + self.suffix), self.data)


def finish_files(files: Sequence[SessionFile], end_time: float) -> list[str]:
    """Close every file of a session; returns what went wrong, one line per file that failed."""
    errors = []
    for sink in files:
        try:
            sink.close(end_time)
        except OSError as e:
            errors.append(f"cannot write {file_stem(sink.session_id)}{sink.suffix}: {e.strerror or e}")
    return errors


def probe_directory(directory: str | os.PathLike[str]) -> None:
    """Start-up check that session files can be kept in `directory`: created if missing, and writable."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_atomically(path / ".streamer-probe", b"")
        (path / ".streamer-probe").unlink()
    except OSError as e:
        raise ConfigError(f"[midi] files_dir {str(path)!r} is not writable: {e.strerror or e}") from e


def file_stem(session_id: str) -> str:
    # Session ids come from the server, but a file name must never climb out of the configured folder.
    return re.sub(r"[^A-Za-z0-9._-]", "_", session_id).lstrip(".")


def write_atomically(path: Path, data: bytes) -> Path:
    # Whoever watches the folder (a DAW, a sync tool) never sees half a file, and a failed write leaves nothing.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return path
