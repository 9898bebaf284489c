"""A real browser against a real server: Debian's Chromium driven by Playwright, with a WAV file as its microphone.

Chromium and the `playwright` package must be installed beforehand (Playwright's own browser download cannot work
here); a missing one fails the tests with the commands that install it. Each server is `streamer serve` in a
subprocess on a free loopback port (or a given one, to stand in for a server that went away), killed with the test
(or with pytest, should pytest die).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile

from streamer.audio.test_signals import melody
from streamer.notes import Note
from streamer.server.process import ServerProcess
from streamer.server.process import start_server as launch
from tests.piano import PIANO_RATE, piano

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "apt-get install -y chromium && pip install playwright (never `playwright install`)"
SERVER_START_TIMEOUT = 30.0

LEAD_IN_S = 1.5  # silence before the melody: the page connects while the fake microphone already plays
TAIL_S = 1.5

# Flags for a browser in a box: no network of its own, no GPU, nothing from outside.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def _require_tools() -> None:
    missing = [
        what for what, ok in (("chromium", Path(CHROMIUM).is_file()), ("playwright", _has_playwright())) if not ok
    ]
    if missing:
        pytest.fail(f"browser tests need {' and '.join(missing)}: {INSTALL_HINT}", pytrace=False)


def _has_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def melody_notes() -> list[Note]:
    return melody()


@pytest.fixture(scope="session")
def melody_wav(tmp_path_factory: pytest.TempPathFactory, melody_notes: list[Note]) -> Path:
    """The melody on FluidSynth's piano after a lead-in of silence, as 16-bit PCM at 44.1 kHz (what Chromium's fake
    capture reads; headless Chromium's audio runs at 44.1 kHz, so the page sends these very samples). A piano, not
    sine tones: the streaming model misses some soft-attacked sines (as in tests/test_end_to_end.py)."""
    shifted = [Note(n.onset + LEAD_IN_S, n.offset + LEAD_IN_S, n.pitch, n.velocity) for n in melody_notes]
    duration = max(n.offset for n in shifted) + TAIL_S
    audio = piano(shifted, duration)
    path = tmp_path_factory.mktemp("web") / "melody.wav"
    soundfile.write(path, np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16), PIANO_RATE, subtype="PCM_16")
    return path


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread while it lives,
# which would break every asyncio test that ran after it.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    _require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, melody_wav: Path) -> Iterator[Browser]:
    """Chromium whose microphone plays the melody once, with the permission prompt answered "allow"."""
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={melody_wav}%noloop",
    ]
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=args)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_without_permission(playwright_driver: Playwright) -> Iterator[Browser]:
    """Chromium with a (fake) microphone but no automatic answer to the permission prompt: it is refused."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream"]
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=args)
    yield browser
    browser.close()


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(artifacts: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartServer]:
    """`start_server(config_toml="", port=None)` runs `streamer serve` (optionally with a config file, on a given
    port) and waits until healthy."""
    servers: list[ServerProcess] = []

    def start(config_toml: str = "", port: int | None = None) -> ServerProcess:
        log = artifacts / f"{request.node.name}-server-{len(servers)}.log"
        try:
            server = launch(
                config_dir=tmp_path, config_toml=config_toml, port=port, log=log, timeout=SERVER_START_TIMEOUT
            )
        except RuntimeError as e:
            pytest.fail(str(e))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=15)


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    return start_server()
