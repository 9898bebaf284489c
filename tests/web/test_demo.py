"""The browser demo at GET /, in Chromium, against live servers: the melody played into the (fake) microphone appears
in the piano roll, interim notes are drawn until confirmed or dropped, the MIDI download is the server's own file, a
run survives its server going away, and refusals and failures say so on the page."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import soundfile
import websockets.sync.client
from playwright.sync_api import Browser, Page, WebSocket, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from streamer.client.stream import stream_audio
from streamer.notes import Note
from streamer.server.process import start_server as launch
from streamer.sinks.midi_file import read_notes
from tests.web.conftest import SERVER_START_TIMEOUT, ServerProcess, StartServer

VIEWPORT = {"width": 1200, "height": 660}
NOTES_TIMEOUT_MS = 30_000
ONSET_TOLERANCE_S = 0.06
TICK_S = 1 / 1920  # the server's MIDI files: 1920 ticks per second
# Artefacts of the streaming model, not of the page (the same audio streamed from Python gives them too):
STUB_LEAD_S = 0.15  # at most this long: a note ended by a new start of its pitch (a double onset)
HARMONICS = {-24, -19, -12, 12, 19, 24}  # octaves and twelfths of a sounding played note
MAX_MISSED = 1  # played notes the model may miss, depending on where its blocks fall


# Uncaught exceptions of every page a test opened (checked after each test).
PAGE_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    yield
    errors, PAGE_ERRORS[:] = list(PAGE_ERRORS), []
    assert errors == [], errors


def open_demo(browser: Browser, server: ServerProcess, query: str = "", **context_options: Any) -> Page:
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    page = context.new_page()
    page.on("pageerror", lambda error: PAGE_ERRORS.append(f"{page.url}: {error}"))
    page.goto(server.url + query)
    # Start is enabled once the server answered and its models are listed.
    expect(page.locator("#status")).to_have_text("Ready: press Start and play")
    expect(page.locator("#start")).to_be_enabled()
    return page


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("window.streamerDemo")


def summary(notes: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(n["pitch"], round(n["onset"], 3)) for n in notes]


def wait_for_audio(page: Page, seconds: float) -> None:
    """Wait until the page has sent `seconds` of audio; on timeout, fail with what the page had."""
    condition = f"window.streamerDemo.samplesSent >= {seconds} * window.streamerDemo.sampleRate"
    try:
        page.wait_for_function(condition, timeout=(seconds + 20) * 1000, polling=100)
    except PlaywrightTimeout:
        got = state(page)
        raise AssertionError(
            f"status {got['status']}, errors {got['errors']}, warnings {got['warnings']}, "
            f"{got['samplesSent']} samples sent at {got['sampleRate']} Hz, notes {summary(got['notes'])}"
        ) from None


# ---- what went over the wire ------------------------------------------------------------------------------------


@dataclass
class Socket:
    """One WebSocket of the page as Playwright saw it: the text messages both ways and the audio sent."""

    url: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["type"] == kind]

    @property
    def ready(self) -> dict[str, Any] | None:
        return next(iter(self.of_type("ready")), None)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for m in self.of_type("events") for e in m["events"]]

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio), dtype="<i2")


def record_wire(page: Page) -> list[Socket]:
    sockets: list[Socket] = []

    def on_socket(ws: WebSocket) -> None:
        socket = Socket(ws.url)
        sockets.append(socket)

        def sent(payload: str | bytes) -> None:
            if isinstance(payload, str):
                socket.sent.append(json.loads(payload))
            else:
                socket.audio.extend(payload)

        def received(payload: str | bytes) -> None:
            if isinstance(payload, str):
                socket.received.append(json.loads(payload))

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    page.on("websocket", on_socket)
    return sockets


def notes_from_wire(sockets: list[Socket]) -> list[dict[str, Any]]:
    """The notes the server sessions sent, as the page keeps them (keyed by session and id)."""
    notes: dict[str, dict[str, Any]] = {}
    for socket in sockets:
        if socket.ready is None:
            continue
        session = socket.ready["session"]
        for e in socket.events:
            key = f"{session}#{e['id']}"
            if e["type"] == "note_on":
                notes[key] = {
                    "session": session,
                    "id": e["id"],
                    "key": key,
                    "pitch": e["pitch"],
                    "velocity": e["velocity"],
                    "program": e["program"],
                    "isDrum": e["is_drum"],
                    "onset": e["time"],
                    "offset": None,
                }
            elif e["type"] == "note_off":
                notes[key]["offset"] = e["time"]
    return list(notes.values())


def save_run(path: Path, final: dict[str, Any], sockets: list[Socket]) -> None:
    """The page's final state and the text messages of each socket, for a look after a failure."""
    wire = [{"url": s.url, "sent": s.sent, "received": s.received, "audio_bytes": len(s.audio)} for s in sockets]
    path.write_text(json.dumps({"state": final, "sockets": wire}, indent=1))


def stream_directly(server: ServerProcess, pcm: np.ndarray, rate: int, resume_at: float) -> list[dict[str, Any]]:
    """The events a server sends for `pcm` streamed from Python (40 ms frames, as fast as it takes them) starting
    at `resume_at`. In a thread: Playwright's sync API holds this thread's event loop."""
    audio = (pcm.astype(np.float32) / 32768)[:, None]

    def run() -> list[dict[str, Any]]:
        result = asyncio.run(
            stream_audio(server.ws_url, audio, rate, speed=0, frame_seconds=0.04, resume_at=resume_at, interim=True)
        )
        assert result.done is not None and not result.errors and not result.lagging, result
        return [msgspec.to_builtins(e) for e in result.events]

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(timeout=60)


def notes_of(events: list[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(pitch, onset, offset) of each note, to the microsecond."""
    onsets: dict[int, dict[str, Any]] = {e["id"]: e for e in events if e["type"] == "note_on"}
    offsets = {e["id"]: e["time"] for e in events if e["type"] == "note_off"}
    return [(on["pitch"], round(on["time"], 6), round(offsets[i], 6)) for i, on in onsets.items()]


def by_key(notes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["key"]: n for n in notes}


def wav_pieces(timeline: np.ndarray, samples: np.ndarray, block: int = 256) -> list[tuple[int, int]]:
    """Where each stretch of `timeline` comes from in the WAV: (timeline index, WAV index) at the start of each
    stretch that equals the WAV sample for sample, in order. One piece when nothing was dropped or repeated; a
    stretch found nowhere in the WAV fails (altered audio)."""
    windows = np.lib.stride_tricks.sliding_window_view(samples, block)
    start = int(np.flatnonzero(timeline)[0])
    pieces = [(start, int(np.flatnonzero(samples)[0]))]
    i, j = pieces[0]
    while i < len(timeline) and j < len(samples):
        same = timeline[i : i + len(samples) - j] == samples[j : j + len(timeline) - i]
        run = int(np.argmin(same)) if not same.all() else len(same)
        i, j = i + run, j + run
        if i >= len(timeline) - block or j >= len(samples):
            break
        found = np.flatnonzero((windows == timeline[i : i + block]).all(axis=1))
        assert found.size, f"sent audio at timeline sample {i} is not in the WAV (altered)"
        j = int(found[np.argmin(np.abs(found - j))])
        pieces.append((i, j))
    return pieces


def assert_audio_is_the_wav(timeline: np.ndarray, wav: Path, rate: int, seam: int | None = None) -> None:
    """The audio the page sent, on its timeline, is the microphone's WAV in order: nothing repeated or altered
    (after the silence before the melody, where the session began), and nothing dropped at `seam` (where a resumed
    session's audio joins the first's). Chromium's file-backed fake microphone skips ahead when its audio thread
    runs late on a loaded machine: such skips elsewhere are printed, not failed. Only checkable when the page's
    audio runs at the WAV's rate; otherwise Chromium resampled it."""
    samples, wav_rate = soundfile.read(wav, dtype="int16")
    if rate != wav_rate:
        print(f"audio not compared: the page ran at {rate} Hz, the WAV is {wav_rate} Hz")
        return
    pieces = wav_pieces(timeline, samples)
    covered = len(timeline) - pieces[0][0]
    assert covered > 0.9 * (len(samples) - pieces[0][1]), (pieces, len(timeline), len(samples))
    for (i0, j0), (i1, j1) in itertools.pairwise(pieces):
        skipped = (j1 - j0) - (i1 - i0)
        assert skipped > 0, f"audio repeated at timeline sample {i1}: {-skipped} samples sent twice"
        assert seam is None or abs(i1 - seam) > 0.05 * rate, f"{skipped} samples lost where the sessions join"
        print(f"the fake microphone skipped {skipped} samples at timeline sample {i1}")


# ---- the melody, as heard ---------------------------------------------------------------------------------------


@dataclass
class Heard:
    shift: float  # heard onset − played onset
    missed: list[Note]
    stubs: list[dict[str, Any]]  # a short early start of a played note: the model's double onset
    harmonics: list[dict[str, Any]]  # an octave or a twelfth of a sounding played note
    wrong: list[dict[str, Any]]


def is_stub(note: dict[str, Any], heard: list[dict[str, Any]]) -> bool:
    """A note ended by the start of another of its pitch and instrument soon after its own: the streaming
    tracker's double onset (the same audio streamed from Python gives it too; the melody repeats no note this
    fast)."""
    return any(
        other is not note
        and other["pitch"] == note["pitch"]
        and other["program"] == note["program"]
        and abs(other["onset"] - note["offset"]) < 1e-6
        and 0 < other["onset"] - note["onset"] <= STUB_LEAD_S
        for other in heard
    )


def hear(heard: list[dict[str, Any]], played: list[Note]) -> Heard:
    """Set the stubs aside, pair the other heard notes with played ones (same pitch, onset within tolerance) under
    the clock shift that pairs the most and most closely (the fake microphone starts before the session does),
    then sort what is left over."""
    stubs = [h for h in heard if is_stub(h, heard)]
    notes = sorted((h for h in heard if not is_stub(h, heard)), key=lambda h: h["onset"])
    shifts = {h["onset"] - n.onset for h in notes for n in played if h["pitch"] == n.pitch} or {0.0}
    best: tuple[int, float, list[Note], list[dict[str, Any]], float] | None = None
    for shift in sorted(shifts):
        unused = list(notes)
        missed = []
        error = 0.0
        for note in played:
            twin = min(
                (
                    h
                    for h in unused
                    if h["pitch"] == note.pitch and abs(h["onset"] - shift - note.onset) < ONSET_TOLERANCE_S
                ),
                key=lambda h: abs(h["onset"] - shift - note.onset),
                default=None,
            )
            if twin is None:
                missed.append(note)
            else:
                unused.remove(twin)
                error += abs(twin["onset"] - shift - note.onset)
        candidate = (len(missed) + len(unused), error, missed, unused, shift)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    assert best is not None
    _, _, missed, unused, shift = best
    result = Heard(shift, missed, stubs, [], [])
    for h in unused:
        onset = h["onset"] - shift
        if any(h["pitch"] - n.pitch in HARMONICS and n.onset - ONSET_TOLERANCE_S <= onset <= n.offset for n in played):
            result.harmonics.append(h)
        else:
            result.wrong.append(h)
    print(
        f"melody heard with shift {shift:.3f} s: missed {[(n.pitch, n.onset) for n in missed]}, "
        f"stubs {summary(result.stubs)}, harmonics {summary(result.harmonics)}, wrong {summary(result.wrong)}"
    )
    return result


def assert_heard_the_melody(result: Heard, lagging: list[dict[str, Any]]) -> None:
    """The played notes at the right relative times (one may be missed: the streaming model drops a note at some
    alignments of its blocks to the audio, which is where the session happens to begin; the same audio streamed from
    Python at those alignments drops it too) and nothing else but the model's known artefacts, unless the server
    said it fell behind and skipped audio (a loaded machine), which is then printed."""
    if lagging:
        print(f"the server fell behind ({lagging}): missed or extra notes tolerated")
        return
    assert len(result.missed) <= MAX_MISSED and result.wrong == [], (result.missed, summary(result.wrong))


# ---- a whole melody, once, for several tests -------------------------------------------------------------------


@dataclass
class MelodyRun:
    page: Page
    sockets: list[Socket]
    final: dict[str, Any]  # window.streamerDemo once finished
    live_interim: dict[str, Any]  # a moment when interim notes were on the page
    status_while_live: str
    hop_disabled: bool
    hop_help: str
    live_regions: list[str]


@pytest.fixture(scope="module")
def melody_server(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = artifacts / "melody-server.log"
    server = launch(config_dir=tmp_path_factory.mktemp("melody-server"), log=log, timeout=SERVER_START_TIMEOUT)
    yield server
    server.stop(timeout=15)


@pytest.fixture(scope="module")
def melody_run(browser: Browser, melody_server: ServerProcess, melody_wav: Path, artifacts: Path) -> MelodyRun:
    page = open_demo(browser, melody_server, accept_downloads=True)
    sockets = record_wire(page)
    hop_disabled = page.locator("#hop").is_disabled()
    hop_help = page.locator("#hop-help").inner_text()
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    status_while_live = page.locator("#status").inner_text()
    # Interim notes live a few hundred milliseconds: catch one on the page, then photograph it.
    page.wait_for_function(
        "window.streamerDemo.interim.length > 0 && window.streamerDemo.notes.length >= 6",
        timeout=NOTES_TIMEOUT_MS,
        polling="raf",
    )
    live_interim = page.evaluate(
        "({interim: structuredClone(window.streamerDemo.interim), notes: window.streamerDemo.notes.length})"
    )
    page.screenshot(path=artifacts / "melody-live.png")
    # The picture for docs/demo.md: the whole melody, with the chord still interim (if caught in time).
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("window.streamerDemo.interim.length >= 2", timeout=NOTES_TIMEOUT_MS, polling="raf")
        page.screenshot(path=artifacts / "melody-chord-interim.png")
    wait_for_audio(page, soundfile.info(melody_wav).duration)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    page.screenshot(path=artifacts / "melody-finished.png")
    live_regions = page.evaluate(LIVE_REGIONS)
    final = state(page)
    save_run(artifacts / "melody-run.json", final, sockets)
    return MelodyRun(page, sockets, final, live_interim, status_while_live, hop_disabled, hop_help, live_regions)


# Every element a screen reader would announce on change: explicit live regions and the roles that imply one.
LIVE_REGIONS = """[...document.querySelectorAll(
    'output, [aria-live], [role=status], [role=alert], [role=log], [role=timer], [role=marquee]')]
  .filter((e) => e.getAttribute('aria-live') !== 'off').map((e) => e.id)"""


def test_streaming_model_takes_no_hop_and_shows_its_look_ahead(melody_run: MelodyRun) -> None:
    (socket,) = melody_run.sockets
    start = socket.sent[0]
    assert start["type"] == "start" and "hop" not in start, start
    assert start["interim"] is True and start["midi_file"] is True
    assert socket.ready is not None and socket.ready["lookahead"] > 0
    assert melody_run.hop_disabled
    assert "no hop" in melody_run.hop_help
    lookahead_ms = round(socket.ready["lookahead"] * 1000)
    assert f"{lookahead_ms} ms look-ahead" in melody_run.status_while_live, melody_run.status_while_live


def test_melody_appears_in_piano_roll(
    melody_run: MelodyRun, melody_server: ServerProcess, melody_notes: list[Note], melody_wav: Path
) -> None:
    result, (socket,), page = melody_run.final, melody_run.sockets, melody_run.page
    heard = sorted(result["notes"], key=lambda n: (n["onset"], n["pitch"]))
    # The page keeps exactly what the server sent, every note closed once the session is done...
    assert by_key(heard) == by_key(notes_from_wire([socket]))
    assert all(n["offset"] is not None and n["offset"] >= n["onset"] for n in heard)
    assert result["done"]["notes"] == len(heard)
    assert result["errors"] == []
    # ...from exactly the microphone's audio...
    assert_audio_is_the_wav(socket.pcm, melody_wav, result["sampleRate"])
    # ...and that is the melody: every note at the right relative time, nothing invented. The streaming model
    # sometimes starts a note twice (a short stub just before the real onset) and hears a piano's octaves in the
    # chord: both come from the server, with the same audio streamed from Python too, and are printed.
    assert_heard_the_melody(hear(heard, melody_notes), socket.of_type("lagging"))
    assert all(n["program"] == 0 and not n["isDrum"] for n in heard)
    # Exactly what the server makes of that audio: the same samples streamed from Python give the same notes.
    if not socket.of_type("lagging"):
        direct = stream_directly(melody_server, socket.pcm, result["sampleRate"], 0.0)
        assert notes_of(socket.events) == notes_of(direct), (notes_of(socket.events), notes_of(direct))

    # What a person sees: the count, the latest note names, a level, a latency.
    expect(page.locator("#count")).to_have_text(str(len(heard)))
    shown = page.locator("#recent li").evaluate_all("items => items.map(i => Number(i.dataset.pitch))")
    assert len(shown) == min(16, len(heard)) and set(shown) <= {n["pitch"] for n in heard}
    expect(page.locator("#latency")).to_contain_text("ms")
    assert 0 < result["latencyMedianMs"] < 5_000, result["latencyMedianMs"]
    assert result["maxLevel"] > 0.1
    expect(page.locator("#legend li")).to_have_text(["Piano"])
    expect(page.locator("#status")).to_have_text(
        f"Finished: {len(heard)} notes in {result['samplesSent'] / result['sampleRate']:.1f} s"
    )


def test_interim_notes_are_drawn_until_confirmed_or_dropped(melody_run: MelodyRun) -> None:
    result, (socket,) = melody_run.final, melody_run.sockets
    interim_messages = socket.of_type("interim")
    assert interim_messages, "the server sent no interim message"
    # Caught live: interim notes on the page, none of them among the notes...
    caught = melody_run.live_interim["interim"]
    assert caught and all(set(n) == {"pitch", "onset", "velocity", "program", "isDrum"} for n in caught)
    assert result["interimDrawn"] > 0, "the roll never drew an interim note"
    # ...each interim message replacing the last: all of them ended confirmed by a note_on or dropped.
    stats = result["interimStats"]
    assert stats["messages"] == len(interim_messages)
    assert stats["shown"] > 0 and stats["confirmed"] > 0
    assert stats["shown"] == stats["confirmed"] + stats["dropped"], stats
    assert stats["confirmed"] <= len(result["notes"])
    assert result["interim"] == []
    # Interim notes never become notes, counts or MIDI: the notes are exactly the committed events.
    assert len(result["notes"]) == result["done"]["notes"] == len([e for e in socket.events if e["type"] == "note_on"])


def test_midi_download_is_the_servers_file(melody_run: MelodyRun) -> None:
    page, result, (socket,) = melody_run.page, melody_run.final, melody_run.sockets
    (done,) = socket.of_type("done")
    assert done["midi"] and done["midi_error"] is None
    with page.expect_download() as download:
        page.get_by_role("button", name="Download MIDI").click()
    assert download.value.suggested_filename == f"streamer-{socket.ready['session']}.mid"
    data = Path(download.value.path()).read_bytes()
    assert data == base64.b64decode(done["midi"])
    # And it holds the page's notes.
    heard = sorted(result["notes"], key=lambda n: (n["onset"], n["pitch"]))
    from_file = read_notes(data)
    assert [(n.pitch, n.velocity) for n in from_file] == [(n["pitch"], n["velocity"]) for n in heard]
    for note, on_page in zip(from_file, heard, strict=True):
        assert abs(note.onset - on_page["onset"]) <= TICK_S / 2 + 1e-9
        assert abs(note.offset - on_page["offset"]) <= TICK_S / 2 + 1e-9
    expect(page.locator("#midi-parts")).to_be_hidden()  # one session, one file


def test_fast_readouts_are_not_announced(melody_run: MelodyRun) -> None:
    """Only the status line and the alert areas are live regions; the level, latency, counts, audio sent and
    backlog change many times a second and are read when the person asks."""
    assert sorted(melody_run.live_regions) == ["error", "status", "warning"]
    page = melody_run.page
    expect(page.get_by_role("status")).to_have_count(1)
    for readout in ["#level-text", "#latency", "#count", "#sent", "#backlog"]:
        assert page.locator(readout).evaluate("e => e.tagName") == "SPAN"


# ---- the server goes away ---------------------------------------------------------------------------------------


def run_through_a_server_change(
    page: Page, melody_wav: Path, replace: Callable[[], ServerProcess], artifacts: Path, name: str
) -> tuple[dict[str, Any], list[Socket], ServerProcess]:
    """Start, let the first server go while the held C5 sounds (played from 4.5 s to 6.1 s; the melody starts
    1.5 s into the WAV) with `replace`, which starts another on the same port; play to the end, Stop."""
    sockets = record_wire(page)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    wait_for_audio(page, 6.5)
    second = replace()
    expect(page.locator("#status")).to_have_text("Listening again: reconnected, lost 0.0 s", timeout=20_000)
    page.screenshot(path=artifacts / f"{name}-reconnected.png")
    wait_for_audio(page, soundfile.info(melody_wav).duration)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    page.screenshot(path=artifacts / f"{name}-finished.png")
    result = state(page)
    save_run(artifacts / f"{name}-run.json", result, sockets)
    assert second.process.poll() is None
    return result, sockets, second


def check_resumed_run(
    result: dict[str, Any],
    sockets: list[Socket],
    second: ServerProcess,
    melody_wav: Path,
    melody_notes: list[Note],
    close_code: int,
) -> tuple[Socket, Socket, float]:
    """What a resumed run must be, however the first server went: returns the two sessions' sockets and the
    resume point."""
    old, new = (s for s in sockets if s.ready is not None)
    (resume,) = result["resumes"]
    resume_at = resume["resumeAt"]
    assert resume["lostSeconds"] == 0 and resume["closeCode"] == close_code
    assert [s["session"] for s in result["sessions"]] == [old.ready["session"], new.ready["session"]]
    # The new session: a `start` with resume_at at the committed point, then the audio from there on.
    start = new.sent[0]
    assert start == {**old.sent[0], "resume_at": resume_at}, (old.sent[0], start)
    committed = max(
        [e["time"] for e in old.events]
        + [m["time"] for m in old.of_type("interim")]
        + [m["duration"] for m in old.of_type("done")]
    )
    rate = result["sampleRate"]
    assert resume_at == np.ceil(committed * rate - 1e-6) / rate
    from_sample = round(resume_at * rate)
    assert from_sample <= len(old.pcm)
    overlap = min(len(old.pcm) - from_sample, len(new.pcm))
    assert np.array_equal(new.pcm[:overlap], old.pcm[from_sample : from_sample + overlap])
    timeline = np.concatenate([old.pcm[:from_sample], new.pcm])
    assert len(timeline) == result["samplesSent"]
    assert_audio_is_the_wav(timeline, melody_wav, rate, seam=from_sample)
    # One timeline: the old session's events before the resume point, the new one's after it.
    assert all(e["time"] <= resume_at for e in old.events)
    assert new.events and all(e["time"] >= resume_at for e in new.events)

    # The page holds both sessions' notes; any the old server left sounding end at the resume point.
    heard = result["notes"]
    wire = by_key(notes_from_wire([old, new]))
    assert by_key(heard).keys() == wire.keys()
    for note in heard:
        sent_offset = wire[note["key"]]["offset"]
        assert note["offset"] == (resume_at if sent_offset is None else sent_offset), note
        assert {**note, "offset": None} == {**wire[note["key"]], "offset": None}
    # Nothing twice: notes of one pitch never overlap.
    for pitch in {n["pitch"] for n in heard}:
        spans = sorted((n["onset"], n["offset"]) for n in heard if n["pitch"] == pitch)
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans)), (pitch, spans)
    assert not old.of_type("lagging") and not new.of_type("lagging"), "the servers fell behind: notes were skipped"
    # Before the resume point the first session heard the melody: the played notes it missed come after what it
    # committed (but for the one the model may miss anyway).
    before = hear([n for n in heard if n["session"] == old.ready["session"]], melody_notes)
    assert before.wrong == [], summary(before.wrong)
    early = [n for n in before.missed if n.onset + before.shift < resume_at - ONSET_TOLERANCE_S]
    assert len(early) <= MAX_MISSED, early
    # After it, the new session heard what a server makes of that audio from that point: the same audio streamed
    # from Python with the same `resume_at` gives the same events, on the same timeline. (A session that begins in
    # the middle of a held note hears it as a new note, and the streaming model, starting cold, may add low notes
    # for a second or so: the server's doing, which this comparison leaves to the server's tests.)
    direct = stream_directly(second, timeline[from_sample:], rate, resume_at)
    assert notes_of(new.events) == notes_of(direct), (notes_of(new.events), notes_of(direct))
    assert result["errors"] == []
    return old, new, resume_at


def test_resumes_on_a_new_server_after_the_first_is_killed(
    browser: Browser, start_server: StartServer, melody_notes: list[Note], melody_wav: Path, artifacts: Path
) -> None:
    first = start_server()
    page = open_demo(browser, first, accept_downloads=True)

    def crash_and_replace() -> ServerProcess:
        first.kill()
        expect(page.locator("#status")).to_have_attribute("data-status", "reconnecting")
        return start_server(port=first.port)

    result, sockets, second = run_through_a_server_change(page, melody_wav, crash_and_replace, artifacts, "resume-kill")
    old, new, _ = check_resumed_run(result, sockets, second, melody_wav, melody_notes, close_code=1006)
    assert old.of_type("done") == []
    expect(page.locator("#warning")).to_contain_text("Reconnected after the server went away")
    # The MIDI file is the new server's; the first went away without one, and the page says so.
    expect(page.locator("#midi-parts li")).to_have_count(2)
    expect(page.locator("#midi-parts li").first).to_contain_text("no MIDI file")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download MIDI").click()
    (done,) = new.of_type("done")
    assert Path(download.value.path()).read_bytes() == base64.b64decode(done["midi"])


def test_resumes_on_a_new_server_after_the_first_drains(
    browser: Browser, start_server: StartServer, melody_notes: list[Note], melody_wav: Path, artifacts: Path
) -> None:
    config = "[server]\ndrain_s = 0.5\nshutdown_grace_s = 5.0\n"
    first = start_server(config)
    page = open_demo(browser, first, accept_downloads=True)

    def drain_and_replace() -> ServerProcess:
        first.stop(timeout=15)  # SIGTERM: the session gets its last events, `done` and 1001
        return start_server(config, port=first.port)

    result, sockets, second = run_through_a_server_change(
        page, melody_wav, drain_and_replace, artifacts, "resume-drain"
    )
    old, new, resume_at = check_resumed_run(result, sockets, second, melody_wav, melody_notes, close_code=1001)
    # The drained server committed all it heard and closed its notes: the resume point is the end of its audio.
    (old_done,) = old.of_type("done")
    assert resume_at == np.ceil(old_done["duration"] * result["sampleRate"] - 1e-6) / result["sampleRate"]
    assert all(n["offset"] is not None for n in notes_from_wire([old]))
    # Both servers sent their MIDI files: one for each part of the run, the download is the latest.
    (new_done,) = new.of_type("done")
    links = page.locator("#midi-parts a")
    expect(links).to_have_count(2)
    for link, done in zip(links.all(), [old_done, new_done], strict=True):
        with page.expect_download() as download:
            link.click()
        assert Path(download.value.path()).read_bytes() == base64.b64decode(done["midi"])
    assert [(f["from"], f["to"]) for f in result["midiFiles"]] == [
        (0, old_done["duration"]),
        (resume_at, new_done["duration"]),
    ]


def test_server_gone_for_good_shows_disconnected(browser: Browser, server: ServerProcess) -> None:
    page = open_demo(browser, server)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    page.wait_for_function("window.streamerDemo.samplesSent > 0")
    server.kill()
    expect(page.locator("#status")).to_contain_text("Reconnecting")
    # A few tries over about 8 s, then the page gives up.
    expect(page.locator("#status")).to_have_text("Disconnected", timeout=30_000)
    expect(page.get_by_role("alert")).to_contain_text("no server answered")
    assert [e["code"] for e in state(page)["errors"]] == ["disconnected"]
    expect(page.get_by_role("button", name="Start")).to_be_visible()


# ---- refusals, settings, files ----------------------------------------------------------------------------------


def test_microphone_denied_is_explained(browser_without_permission: Browser, server: ServerProcess) -> None:
    page = open_demo(browser_without_permission, server)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("alert")).to_contain_text("Microphone access was denied")
    expect(page.locator("#status")).to_have_text("Microphone denied")
    assert [e["code"] for e in state(page)["errors"]] == ["microphone_denied"]
    expect(page.get_by_role("button", name="Start")).to_be_enabled()


def test_busy_server_is_explained_keyboard_only(browser: Browser, start_server: StartServer) -> None:
    server = start_server("[limits]\nmax_sessions = 1\n")
    # Another musician holds the only session.
    with websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}/v1/stream") as other:
        other.send('{"type": "start", "sample_rate": 16000}')
        other.recv(timeout=10)
        page = open_demo(browser, server)
        page.keyboard.press("Tab")  # the first stop in the page's tab order
        expect(page.get_by_role("button", name="Start")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_attribute("data-status", "busy")
        expect(page.get_by_role("alert")).to_contain_text("The server is busy")
        assert [e["code"] for e in state(page)["errors"]] == ["busy"]
        expect(page.get_by_role("button", name="Start")).to_be_focused()


def test_token_from_the_page_address_opens_a_session(browser: Browser, start_server: StartServer) -> None:
    server = start_server('[auth]\ntoken = "letmein"\n')
    refused = open_demo(browser, server)
    refused.get_by_role("button", name="Start").click()
    expect(refused.get_by_role("alert")).to_contain_text("not authorized")
    assert [e["code"] for e in state(refused)["errors"]] == ["unauthorized"]
    page = open_demo(browser, server, query="?token=letmein")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming", timeout=15_000)
    assert state(page)["errors"] == []


def test_windowed_model_sends_the_hop_chosen(browser: Browser, start_server: StartServer) -> None:
    server = start_server("[models.basic-pitch]\nstreaming = false\n")
    page = open_demo(browser, server)
    sockets = record_wire(page)
    hop = page.get_by_label("Hop (s)")
    expect(hop).to_be_enabled()
    expect(hop).to_have_value("0.5")
    hop.fill("0.25")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_contain_text("Listening: basic-pitch, hop")
    expect(hop).to_be_disabled()  # no changes mid-session
    assert sockets[0].sent[0]["hop"] == 0.25
    ready = sockets[0].ready
    assert ready is not None  # the server rounds the hop to whole model frames: the status shows its value
    expect(page.locator("#status")).to_have_text(f"Listening: basic-pitch, hop {ready['hop']:.2f} s")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    expect(hop).to_be_enabled()


def test_midi_file_trouble_on_the_server_is_shown(browser: Browser, start_server: StartServer, tmp_path: Path) -> None:
    files = tmp_path / "midi"
    server = start_server(f'[midi]\nfiles_dir = "{files}"\n')
    files.rmdir()
    files.write_text("not a folder any more")  # the server's copy cannot be kept now
    page = open_demo(browser, server)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    page.wait_for_function("window.streamerDemo.samplesSent > 0")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    expect(page.locator("#warning")).to_contain_text("The server had trouble with the session's MIDI file")
    done = state(page)["done"]
    assert done["midi_error"] and done["midi"]  # the file sent to the page was still made
    expect(page.get_by_role("button", name="Download MIDI")).to_be_enabled()
