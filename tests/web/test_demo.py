"""The browser demo at GET /, in Chromium, against a live server: the melody played into the (fake) microphone
appears in the piano roll; the MIDI download holds the same notes; refusals and failures say so on the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import soundfile
import websockets.sync.client
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from streamer.notes import Note
from streamer.sinks.midi_file import read_notes
from tests.web.conftest import ServerProcess, StartServer

VIEWPORT = {"width": 1200, "height": 660}
NOTES_TIMEOUT_MS = 30_000
ONSET_TOLERANCE_S = 0.06
TICK_S = 1 / 960  # the page's MIDI files: 480 ticks per quarter at 120 bpm


def open_demo(browser: Browser, server: ServerProcess, query: str = "", **context_options: Any) -> Page:
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    page = context.new_page()
    page.goto(server.url + query)
    expect(page.locator("#status")).to_have_attribute("data-status", "idle")
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


def record_events(page: Page) -> list[dict[str, Any]]:
    """Every note event the server sends to the page, straight off the socket."""
    events: list[dict[str, Any]] = []

    def on_frame(payload: str | bytes) -> None:
        if isinstance(payload, str) and (message := json.loads(payload))["type"] == "events":
            events.extend(message["events"])

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    return events


def notes_from_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    notes: dict[int, dict[str, Any]] = {}
    for e in events:
        if e["type"] == "note_on":
            notes[e["id"]] = {
                "id": e["id"],
                "pitch": e["pitch"],
                "velocity": e["velocity"],
                "program": e["program"],
                "isDrum": e["is_drum"],
                "onset": e["time"],
                "offset": None,
            }
        else:
            notes[e["id"]]["offset"] = e["time"]
    return list(notes.values())


def match_melody(
    heard: list[dict[str, Any]], played: list[Note]
) -> tuple[list[Note], list[dict[str, Any]], list[dict[str, Any]]]:
    """Pair heard notes with played ones (same pitch, onset within tolerance) under the clock shift that pairs the
    most (the fake microphone starts before the session does). Returns (missed, fragments, wrong): fragments are
    unpaired heard notes that start inside a played note of their pitch (a note split in two), wrong ones do not."""
    shifts = {h["onset"] - n.onset for h in heard for n in played if h["pitch"] == n.pitch} or {0.0}
    best: tuple[list[Note], list[dict[str, Any]], float] | None = None
    for shift in shifts:
        unused = list(heard)
        missed = []
        for note in played:
            twin = next(
                (
                    h
                    for h in unused
                    if h["pitch"] == note.pitch and abs(h["onset"] - shift - note.onset) < ONSET_TOLERANCE_S
                ),
                None,
            )
            if twin is None:
                missed.append(note)
            else:
                unused.remove(twin)
        if best is None or len(missed) + len(unused) < len(best[0]) + len(best[1]):
            best = (missed, unused, shift)
    assert best is not None
    missed, unused, shift = best

    def inside_a_played_note(h: dict[str, Any]) -> bool:
        return any(n.pitch == h["pitch"] and n.onset <= h["onset"] - shift <= n.offset for n in played)

    fragments = [h for h in unused if inside_a_played_note(h)]
    return missed, fragments, [h for h in unused if not inside_a_played_note(h)]


def test_melody_appears_in_piano_roll_and_midi_download(
    browser: Browser, server: ServerProcess, melody_notes: list[Note], melody_wav: Path, artifacts: Path
) -> None:
    page = open_demo(browser, server, accept_downloads=True)
    received = record_events(page)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    wait_for_audio(page, soundfile.info(melody_wav).duration)
    page.screenshot(path=artifacts / "melody-live.png")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    page.screenshot(path=artifacts / "melody-finished.png")

    result = state(page)
    heard = sorted(result["notes"], key=lambda n: (n["onset"], n["pitch"]))
    # The page keeps exactly what the server sent, every note closed once the session is done...
    assert sorted(heard, key=lambda n: n["id"]) == notes_from_events(received)
    assert all(n["offset"] is not None and n["offset"] > n["onset"] for n in heard)
    assert result["done"]["notes"] == len(heard)
    # ...and that is the melody: every note at the right relative time, none missed or invented. A held note may
    # come out split (a fragment inside a played note), seen only when the suite loads the 2 cores: most likely
    # Chromium's fake capture dropping a few milliseconds of audio, heard as a new onset (not confirmed). The same
    # melody rendered directly is transcribed exactly at any alignment (tests/test_end_to_end.py).
    missed, fragments, wrong = match_melody(heard, melody_notes)
    print(f"melody fragments (split held notes): {summary(fragments)}")
    assert (missed, wrong) == ([], []), (missed, summary(wrong), summary(heard))
    assert all(n["program"] == 0 and not n["isDrum"] for n in heard)
    assert result["errors"] == []

    # What a person sees: the count, the latest note names, a level, a latency.
    expect(page.locator("#count")).to_have_text(str(len(heard)))
    shown = page.locator("#recent li").evaluate_all("items => items.map(i => Number(i.dataset.pitch))")
    assert sorted(shown) == sorted(n["pitch"] for n in heard)
    expect(page.locator("#latency")).to_contain_text("ms")
    assert 0 < result["latencyMedianMs"] < 5_000, result["latencyMedianMs"]
    assert result["maxLevel"] > 0.1
    expect(page.locator("#legend li")).to_have_text(["Piano"])

    with page.expect_download() as download:
        page.get_by_role("button", name="Download MIDI").click()
    assert download.value.suggested_filename.endswith(".mid")
    midi = read_notes(Path(download.value.path()).read_bytes())
    heard.sort(key=lambda n: (n["onset"], n["pitch"]))
    assert [(n.pitch, n.velocity) for n in midi] == [(n["pitch"], n["velocity"]) for n in heard]
    for from_file, on_page in zip(midi, heard, strict=True):
        assert abs(from_file.onset - on_page["onset"]) <= TICK_S / 2 + 1e-9
        assert abs(from_file.offset - on_page["offset"]) <= TICK_S / 2 + 1e-9


def test_microphone_denied_is_explained(browser_without_permission: Browser, server: ServerProcess) -> None:
    page = open_demo(browser_without_permission, server)
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("alert")).to_contain_text("Microphone access was denied")
    expect(page.locator("#status")).to_have_text("Microphone denied")
    assert [e["code"] for e in state(page)["errors"]] == ["microphone_denied"]
    expect(page.get_by_role("button", name="Start")).to_be_enabled()


def test_server_stopped_shows_disconnected(browser: Browser, server: ServerProcess) -> None:
    page = open_demo(browser, server)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    page.wait_for_function("window.streamerDemo.samplesSent > 0")
    server.kill()
    expect(page.locator("#status")).to_have_text("Disconnected")
    expect(page.get_by_role("alert")).to_contain_text("Disconnected")
    assert [e["code"] for e in state(page)["errors"]] == ["disconnected"]
    expect(page.get_by_role("button", name="Start")).to_be_visible()


def test_busy_server_is_explained_keyboard_only(browser: Browser, start_server: StartServer) -> None:
    server = start_server("[limits]\nmax_sessions = 1\n")
    # Another musician holds the only session.
    with websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}/v1/stream") as other:
        other.send('{"type": "start", "sample_rate": 16000}')
        other.recv(timeout=10)
        page = open_demo(browser, server)
        page.get_by_role("button", name="Start").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_have_attribute("data-status", "busy")
        expect(page.get_by_role("alert")).to_contain_text("The server is busy")
        assert [e["code"] for e in state(page)["errors"]] == ["busy"]


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
