"""The browser demo at GET /, in Chromium, against a live server: the melody played into the (fake) microphone
appears in the piano roll; the MIDI download holds the same notes; refusals and failures say so on the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from streamer.notes import Note
from streamer.sinks.midi_file import read_notes
from tests.web.conftest import ServerProcess, StartServer

VIEWPORT = {"width": 1200, "height": 780}
NOTES_TIMEOUT_MS = 30_000
ONSET_TOLERANCE_S = 0.06
TICK_S = 1 / 960  # the page's MIDI files: 480 ticks per quarter at 120 bpm


def open_demo(browser: Browser, server: ServerProcess, **context_options: Any) -> Page:
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    page = context.new_page()
    page.goto(server.url)
    expect(page.locator("#status")).to_have_attribute("data-status", "idle")
    return page


def state(page: Page) -> dict[str, Any]:
    return page.evaluate("window.streamerDemo")


def summary(notes: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(n["pitch"], round(n["onset"], 3)) for n in notes]


def wait_for_notes(page: Page, count: int) -> None:
    """Wait until `count` notes are on the page; on timeout, fail with what the page had."""
    try:
        page.wait_for_function(f"window.streamerDemo.notes.length >= {count}", timeout=NOTES_TIMEOUT_MS, polling=100)
    except PlaywrightTimeout:
        got = state(page)
        seen = summary(got["notes"])
        raise AssertionError(
            f"{len(seen)} of {count} notes: {seen}; status {got['status']}, errors {got['errors']}, "
            f"warnings {got['warnings']}, sample rate {got['sampleRate']}, "
            f"{got['samplesSent']} samples sent, peak level {got['maxLevel']:.3f}"
        ) from None


def test_melody_appears_in_piano_roll_and_midi_download(
    browser: Browser, server: ServerProcess, melody_notes: list[Note], artifacts: Path
) -> None:
    page = open_demo(browser, server, accept_downloads=True)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "streaming")
    wait_for_notes(page, len(melody_notes))
    page.screenshot(path=artifacts / "melody-live.png")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_attribute("data-status", "idle", timeout=15_000)
    page.screenshot(path=artifacts / "melody-finished.png")

    result = state(page)
    # Chord notes may come a frame apart, so pair notes by pitch, then onset.
    heard = sorted(result["notes"], key=lambda n: (n["pitch"], n["onset"]))
    played = sorted(melody_notes, key=lambda n: (n.pitch, n.onset))
    assert [n["pitch"] for n in heard] == [n.pitch for n in played], summary(heard)
    # The fake microphone starts before the session does, so compare onsets relative to the first note.
    shift = min(n["onset"] for n in heard) - min(n.onset for n in played)
    for got, want in zip(heard, played, strict=True):
        assert abs(got["onset"] - shift - want.onset) < ONSET_TOLERANCE_S, (got, want)
        assert got["offset"] is not None and got["offset"] > got["onset"]
    assert all(n["program"] == 0 and not n["isDrum"] for n in heard)
    assert result["errors"] == []
    assert result["done"]["notes"] == len(melody_notes)

    # What a person sees: the count, the latest note names, a level, a latency.
    expect(page.locator("#count")).to_have_text(str(len(melody_notes)))
    shown = page.locator("#recent li").evaluate_all("items => items.map(i => Number(i.dataset.pitch))")
    assert sorted(shown) == sorted(n.pitch for n in melody_notes)
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
    server = start_server("[limits]\nmax_sessions = 0\n")
    page = open_demo(browser, server)
    page.get_by_role("button", name="Start").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_attribute("data-status", "busy")
    expect(page.get_by_role("alert")).to_contain_text("The server is busy")
    assert [e["code"] for e in state(page)["errors"]] == ["busy"]
