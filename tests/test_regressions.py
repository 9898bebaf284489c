"""Regression tests for server bugs found while fuzzing, soaking and load testing."""

from __future__ import annotations

import json

import numpy as np

from streamer.server import protocol as p
from streamer.session import Session, SessionOptions, State
from tests.fakes import SPEC
from tests.windowing import assert_event_invariants


def test_text_after_stop_is_ignored_even_when_malformed() -> None:
    """docs/protocol.md: messages after `stop` are ignored. A malformed one used to raise `bad_message` (a second
    `start`, `already_started`), ending the session before its last windows were committed and `done` sent."""
    session = Session("s", {SPEC.name: SPEC}, SessionOptions(default_model=SPEC.name))
    session.on_text(json.dumps({"type": "start", "sample_rate": 16000}))
    out = session.on_audio(np.zeros(16000 * 3, dtype="<i2").tobytes())
    out.extend(session.on_text('{"type": "stop"}'))
    assert session.state is State.STOPPING and out.windows
    for junk in ["{not json", '{"type": "start", "sample_rate": 16000}', '{"type": "pause"}', b"\xff"]:
        assert session.on_text(junk).messages == []
    events = []
    for window in out.windows:
        result = session.on_window_done(window.seq, [])
        events += result.events
    assert session.state is State.DONE and isinstance(result.messages[-1], p.Done)
    assert_event_invariants(events)

