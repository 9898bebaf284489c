"""Protocol fuzzing (Hypothesis): random message sequences and random bytes never break a session or the server.

(a) The pure `Session` state machine gets random text (valid and invalid JSON, random `start` fields), random
binary frames (odd sizes, NaN/Inf/huge floats), flush and stop, random ticks of time, and random window results
(notes, skipped or failed) delivered in random order. Nothing escapes: errors come out as coded `error` messages
with a close code, and the committed events keep every guarantee: nothing retracted or repeated, times never going
backwards, every note_on closed by `stop` or the disconnect.
(b) A live server on loopback gets random bytes and text: it answers with coded errors and close codes, stays up,
and a healthy session afterwards still gets every note.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import websockets
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings

from streamer import protocol as p
from streamer.config import load_config
from streamer.jobs import Failed, Job, Skipped
from streamer.notes import WindowNote
from streamer.server.app import STATE, create_app
from streamer.session import Output, Session, SessionOptions, State
from tests.fakes import SPEC, OracleModel
from tests.server.test_protocol import TRUTH, assert_healthy, healthy_session, recv_until_close
from tests.windowing import assert_event_invariants

MODELS = {SPEC.name: SPEC}
SAMPLE_RATES = [8000, 16000, 22050, 44100, 48000]

# ---- strategies --------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def start_messages(draw: st.DrawFn) -> str:
    """A `start` with plausible and implausible fields (wrong types, out-of-range values, unknown keys)."""
    fields: dict[str, Any] = {"type": "start"}
    if draw(st.booleans()) or draw(st.booleans()):
        fields["sample_rate"] = draw(
            st.sampled_from(SAMPLE_RATES) | st.integers(-10, 300_000) | st.floats(allow_nan=False) | json_values
        )
    if draw(st.booleans()):
        fields["encoding"] = draw(st.sampled_from(["s16le", "f32le", "u8", "", "S16LE"]) | json_values)
    if draw(st.booleans()):
        fields["channels"] = draw(st.sampled_from([1, 2]) | st.integers(-3, 9) | json_values)
    if draw(st.booleans()):
        fields["hop"] = draw(
            st.none() | st.floats(0.0, 3.0) | st.floats(allow_nan=False) | st.integers(-5, 5) | json_values
        )
    if draw(st.booleans()):
        fields["model"] = draw(st.sampled_from([None, "oracle", "", "nope"]) | json_values)
    if draw(st.integers(0, 9)) == 0:
        fields["midi_file"] = draw(st.booleans() | json_values)
    if draw(st.integers(0, 9)) == 0:
        fields[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    return json.dumps(fields)


def valid_start(draw: st.DrawFn) -> str:
    return json.dumps(
        {
            "type": "start",
            "sample_rate": draw(st.sampled_from(SAMPLE_RATES)),
            "encoding": draw(st.sampled_from(["s16le", "f32le"])),
            "channels": draw(st.sampled_from([1, 2])),
            "hop": draw(st.sampled_from([None, 0.1, 0.25, 0.5, 1.0, 1.75])),
        }
    )


text_messages = st.one_of(
    st.sampled_from(['{"type": "flush"}', '{"type": "stop"}', '{"type": "flush", "x": 1}', '{"type": "pause"}']),
    st.sampled_from(["", "{", "null", "[]", '{"type": 1}', '{"type": null}', "{}", '"start"', "\x00", "1e999"]),
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["type", "sample_rate", "x"]), json_values, max_size=3).map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40),  # aiohttp hands text frames over as str; the session also accepts bytes
)


@st.composite
def audio_frames(draw: st.DrawFn) -> bytes:
    """Whole-sample frames of plausible audio, odd-sized frames, and float frames with NaN/Inf/huge values."""
    kind = draw(st.sampled_from(["s16", "f32", "f32_special", "odd", "raw", "empty"]))
    n = draw(st.integers(1, 1600))
    if kind == "s16":
        return np.random.default_rng(n).integers(-32768, 32767, size=n * 2, dtype=np.int16).astype("<i2").tobytes()
    if kind == "f32":
        return (np.sin(np.arange(n * 2, dtype=np.float32) * 0.05) * 0.5).astype("<f4").tobytes()
    if kind == "f32_special":
        audio = np.zeros(n * 2, dtype="<f4")
        audio[draw(st.integers(0, n * 2 - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf, 3e38, 1e-45]))
        return audio.tobytes()
    if kind == "odd":
        return bytes(draw(st.sampled_from([1, 2, 3, 5, 6, 7, 9, 4 * n + 1, 4 * n + 2, 4 * n + 3])))
    if kind == "raw":
        return draw(st.binary(min_size=1, max_size=256))
    return b""


def window_notes(draw: st.DrawFn, job: Job) -> list[WindowNote]:
    """What some model (good or bad) might report for a window: notes with seen or unseen edges, onsets often
    near the window's commit region (which ends `margin` before the window's end)."""
    length_s = SPEC.window_s
    region_end = length_s - SPEC.commit_margin_s
    near_region = st.floats(max(0.0, region_end - 1.0), max(0.0, region_end), allow_nan=False)
    notes = []
    for _ in range(draw(st.integers(0, 6))):
        onset = draw(st.none() | st.floats(0.0, length_s, allow_nan=False) | near_region | near_region)
        offset_from = onset if onset is not None else 0.0
        offset = draw(st.none() | st.floats(offset_from, length_s + 0.5, allow_nan=False))
        notes.append(
            WindowNote(
                pitch=draw(st.integers(58, 62)),  # few keys: repeated and overlapping notes of one key are common
                onset=onset,
                offset=offset,
                velocity=draw(st.integers(1, 127)),
                program=draw(st.sampled_from([0, 0, 0, 40])),
                is_drum=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return notes


# ---- (a) the pure state machine ----------------------------------------------------------------------------------


class Harness:
    """Drives one Session like the server does and checks every event as it is committed."""

    def __init__(self) -> None:
        self.session = Session("fuzz", MODELS, SessionOptions(default_model=SPEC.name), now=0.0)
        self.pending: list[Job] = []
        self.events: list[p.NoteEvent] = []
        self.done: list[p.Done] = []
        self.errors: list[p.Error] = []
        self.closed: int | None = None
        self.now = 0.0

    @property
    def failed(self) -> bool:
        return any(e.fatal for e in self.errors)

    def take(self, out: Output) -> None:
        assert self.closed is None or out == Output(), f"output after the close: {out}"
        self.pending += out.jobs
        in_messages = [e for m in out.messages if isinstance(m, p.Events) for e in m.events]
        assert in_messages == out.events, "events in messages and in Output.events differ"
        self.events += out.events
        self.done += [m for m in out.messages if isinstance(m, p.Done)]
        self.errors += [m for m in out.messages if isinstance(m, p.Error)]
        for error in self.errors:
            assert error.code != "internal_error" and error.message
        if out.close is not None:
            self.closed = out.close
            assert self.session.state is State.DONE
            assert len(self.done) == 1 or (self.errors and self.errors[-1].fatal)
        for message in out.messages:
            p.decode_server(p.encode(message))  # everything sent must be valid protocol

    def text(self, text: str | bytes) -> None:
        self.now += 0.01
        self.take(self.session.on_message(text, self.now))

    def audio(self, data: bytes) -> None:
        self.now += 0.01
        self.take(self.session.on_audio(data, self.now))


def good_audio(draw: st.DrawFn, start: p.Start) -> bytes:
    """Up to a quarter second of valid audio in the session's own format (a tone, with silences)."""
    n = draw(st.integers(1, start.sample_rate // 4)) * start.channels
    audio = 0.4 * np.sin(np.arange(n, dtype=np.float64) * 0.07) if draw(st.booleans()) else np.zeros(n)
    if start.encoding == "f32le":
        return audio.astype("<f4").tobytes()
    return (audio * 32767).astype("<i2").tobytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_session_state_machine_survives_random_input(data: st.DataObject) -> None:
    draw = data.draw
    h = Harness()
    # Half the sessions are well-behaved clients (only the order of results is random), the others misbehave at a
    # random rate: a session that errors out at once says little about the stitching of what came before.
    chaos = 0.0 if draw(st.booleans()) else draw(st.sampled_from([0.05, 0.2, 0.6]))
    if chaos < 0.6 or draw(st.booleans()):
        h.text(valid_start(draw))
    for _ in range(draw(st.integers(10, 80))):
        if h.closed is not None:
            break
        if draw(st.floats(0, 1)) < chaos:
            action = draw(st.sampled_from(["start", "text", "audio", "stop", "tick"]))
            if action == "start":
                h.text(draw(start_messages()))
            elif action == "text":
                h.text(draw(text_messages))
            elif action == "audio":
                h.audio(draw(audio_frames()))
            elif action == "tick":
                h.now += draw(st.floats(0, 40))
                h.take(h.session.on_tick(h.now))
            else:
                h.text('{"type": "stop"}')
            continue
        action = draw(st.sampled_from(["audio", "audio", "audio", "flush", "result", "result", "result", "result"]))
        started = h.session.started
        if action == "audio" and started is not None:
            h.audio(good_audio(draw, started.message))
        elif action == "flush" and started is not None:
            h.text('{"type": "flush"}')
        elif action == "result" and h.pending:  # one job's result, in any order: notes, skipped or failed
            job = h.pending.pop(draw(st.integers(0, len(h.pending) - 1)))
            kind = draw(st.integers(0, 9))
            result = Skipped() if kind == 0 else Failed("boom") if kind == 1 else window_notes(draw, job)
            h.take(h.session.on_result(job.seq, result))
            if draw(st.integers(0, 9)) == 0:  # a stale or repeated result is ignored
                h.take(h.session.on_result(job.seq, []))
    ended_by_stop = False
    if h.closed is None and h.session.state is State.STREAMING and draw(st.integers(0, 3)):
        h.text('{"type": "stop"}')  # the client stops: every remaining job is delivered
        while h.pending and h.closed is None:
            job = h.pending.pop(draw(st.integers(0, len(h.pending) - 1)))
            h.take(h.session.on_result(job.seq, window_notes(draw, job)))
        ended_by_stop = h.closed is not None and bool(h.done)
    if not h.done:
        h.events += h.session.on_disconnect()  # the connection ends
    assert h.session.on_disconnect() == []  # twice adds nothing

    ending = "stop" if ended_by_stop else "error" if h.failed else "disconnect"
    event(f"ended: {ending}, events: {'none' if not h.events else '<10' if len(h.events) < 10 else '10+'}")
    assert_event_invariants(h.events)  # no repeats, times in order, every note_on closed
    if ended_by_stop:
        assert len(h.done) == 1 and h.done[0].notes == len(h.events) // 2
        assert h.done[0].duration == h.session.audio_seconds
    if h.session.started is not None and h.events:
        rate = h.session.started.message.sample_rate
        # Nothing is committed past the audio received (model-rate rounding: one model sample).
        assert h.events[-1].time <= h.session.audio_seconds + 1 / SPEC.sample_rate + 1 / rate


# ---- (b) a live server -------------------------------------------------------------------------------------------

CODES = {
    "bad_message": {1008},
    "unknown_message_type": {1008},
    "not_started": {1008},
    "already_started": {1008},
    "unsupported_format": {1003},
    "invalid_option": {1008},
    "unknown_model": {1008},
    "bad_audio": {1003},
    "frame_too_large": {1009},
    "rate_limited": {1008},
}


class ThreadServer:
    """A live server on its own event loop thread, so each Hypothesis example can run its own client loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        config = load_config(
            overrides={"limits": {"max_frame_bytes": 8192, "max_text_bytes": 512, "max_sessions_per_client": 32}}
        )
        self.runner = web.AppRunner(create_app(config, {SPEC.name: OracleModel(TRUTH)}), shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        assert self.ready.wait(30), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def thread_server() -> Iterator[ThreadServer]:
    with ThreadServer() as server:
        yield server


wire_items = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=8193, max_size=9000),  # over max_frame_bytes
    st.text(max_size=64),
    st.text(min_size=513, max_size=600),  # over max_text_bytes
    text_messages,
    start_messages(),
    audio_frames(),
)


async def throw(url: str, items: list[str | bytes]) -> tuple[list[p.ServerMessage], int | None]:
    async with websockets.connect(url, max_size=None) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            for item in items:
                await ws.send(item)
            await ws.send('{"type": "stop"}')
        try:
            messages = await asyncio.wait_for(recv_until_close(ws), 10)
        except TimeoutError:
            pytest.fail(f"the server neither finished nor refused the session after {items!r}")
    return messages, ws.close_code


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(wire_items, max_size=8), valid_first=st.booleans())
def test_live_server_answers_random_input_with_coded_errors(
    thread_server: ThreadServer, items: list[str | bytes], valid_first: bool
) -> None:
    if valid_first:
        items = ['{"type": "start", "sample_rate": 16000, "encoding": "f32le"}', *items]
    messages, close_code = asyncio.run(throw(thread_server.url, items))
    errors = [m for m in messages if isinstance(m, p.Error)]
    assert len(errors) <= 1, errors
    if errors:
        assert errors[0].code in CODES, errors[0]
        assert close_code in CODES[errors[0].code], (errors[0], close_code)
        assert not any(isinstance(m, p.Done) for m in messages)
    else:  # it ended with our `stop` (or refused nothing and never started: a stop before start is coded)
        assert isinstance(messages[-1], p.Done) and close_code == 1000, (messages, close_code)
        events = [e for m in messages if isinstance(m, p.Events) for e in m.events]
        assert_event_invariants(events)


def test_live_server_healthy_after_fuzzing(thread_server: ThreadServer) -> None:
    assert_healthy(asyncio.run(healthy_session(thread_server.url)))
    assert thread_server.runner is not None
    assert not thread_server.runner.app[STATE].connections, "every fuzzed session was released"
    with urllib.request.urlopen(f"http://127.0.0.1:{thread_server.port}/metrics", timeout=5) as r:
        tasks = [line for line in r.read().decode().splitlines() if line.startswith("streamer_asyncio_tasks ")]
    # Idle: the metrics request's own handler and aiohttp's few server tasks, nothing left over from the sessions.
    assert len(tasks) == 1 and 0 < float(tasks[0].split()[1]) < 10, tasks
