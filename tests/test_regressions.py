"""Regression tests for server bugs found while fuzzing, soaking and load testing."""

from __future__ import annotations

import json

import numpy as np
import websockets

from streamer import protocol as p
from streamer.session import Session, SessionOptions, State
from tests.fakes import SPEC, OracleModel
from tests.server.test_protocol import TRUTH, recv_until_close
from tests.windowing import assert_event_invariants


def test_text_after_stop_is_ignored_even_when_malformed() -> None:
    """docs/protocol.md: messages after `stop` are ignored. A malformed one used to raise `bad_message` (a second
    `start`, `already_started`), ending the session before its last windows were committed and `done` sent."""
    session = Session("s", {SPEC.name: SPEC}, SessionOptions(default_model=SPEC.name))
    session.on_message(json.dumps({"type": "start", "sample_rate": 16000}), 0.0)
    out = session.on_audio(np.zeros(16000 * 3 // 4, dtype="<i2").tobytes(), 0.0)
    for _ in range(3):
        out.extend(session.on_audio(np.zeros(16000 * 3 // 4, dtype="<i2").tobytes(), 0.0))
    out.extend(session.on_message('{"type": "stop"}', 0.0))
    assert session.state is State.STOPPING and out.jobs
    for junk in ["{not json", '{"type": "start", "sample_rate": 16000}', '{"type": "pause"}', b"\xff"]:
        assert session.on_message(junk, 0.0).messages == []
    events = []
    for job in out.jobs:
        result = session.on_result(job.seq, [])
        events += result.events
    assert session.state is State.DONE and isinstance(result.messages[-1], p.Done)
    assert_event_invariants(events)


async def test_text_limit_counts_bytes_not_characters(serve) -> None:  # type: ignore[no-untyped-def]
    """`limits.max_text_bytes` is in bytes: 600 two-byte characters (1200 bytes) exceed a 1000-byte limit."""
    server = await serve({SPEC.name: OracleModel(TRUTH)}, overrides={"limits": {"max_text_bytes": 1000}})
    async with websockets.connect(server.url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "model": "é" * 600}, ensure_ascii=False))
        messages = await recv_until_close(ws)
    assert [m.code for m in messages if isinstance(m, p.Error)] == ["frame_too_large"]
    assert ws.close_code == 1009
