"""The protocol document is checked against the schemas and error codes defined in code."""

from __future__ import annotations

import typing
from pathlib import Path

from streamer import errors
from streamer import protocol as p

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()


def tags(union: object) -> set[str]:
    return {cls.__struct_config__.tag for cls in typing.get_args(union)}


def test_every_message_type_is_documented() -> None:
    names = tags(p.ClientMessage) | tags(p.ServerMessage) | tags(p.NoteEvent)
    missing = [name for name in sorted(names) if f"`{name}`" not in DOC]
    assert not missing, f"docs/protocol.md does not describe: {missing}"


def test_every_error_code_is_documented() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.StreamerError)
        and cls.code not in ("checkpoint_error", "config_error", "protocol_error")
    }
    missing = [code for code in sorted(codes) if f"`{code}`" not in DOC]
    assert not missing, f"docs/protocol.md has no row for: {missing}"


def test_every_start_field_is_documented() -> None:
    fields = p.Start.__struct_fields__
    missing = [f for f in fields if f"`{f}`" not in DOC]
    assert not missing


def test_close_codes_in_the_error_table_are_the_servers() -> None:
    rows = {}
    for line in DOC.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    for cls in vars(errors).values():
        if not (isinstance(cls, type) and issubclass(cls, errors.StreamerError)) or cls.code not in rows:
            continue
        expected = "—" if not cls.fatal else str(cls.close_code)
        assert rows[cls.code] == expected, f"{cls.code}: docs say {rows[cls.code]}, the server uses {expected}"
