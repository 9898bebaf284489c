"""A real MIDI system for the sink tests: a JACK server on its dummy backend, and a DAW-like client to record.

The fixture installs JACK (Debian package jackd2) when `jackd` is missing and we are root, starts a server under
a name unique to this test run, points libjack at it, and stops it afterwards whatever the tests did.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mido
import pytest
import rtmidi

JACK_APT_PACKAGES = ("jackd2",)
JACK_START_TIMEOUT = 10.0
RECEIVE_TIMEOUT = 10.0  # returns as soon as the messages are there; generous for a loaded CI machine
PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>
SETTLE = 0.05  # seconds to wait after the expected messages, to catch any extra ones


def _ensure_jackd() -> str:
    found = shutil.which("jackd")
    if found:
        return found
    if not sys.platform.startswith("linux"):
        pytest.skip("the JACK dummy-backend tests run on Linux")
    if os.geteuid() != 0:
        pytest.fail(f"jackd is missing and we are not root: apt-get install {' '.join(JACK_APT_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *JACK_APT_PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        # Package lists may be missing in a fresh container; fetch them once and try again.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    found = shutil.which("jackd")
    if not found:
        pytest.fail("installed jackd2 but jackd is still not on PATH")
    return found


def _wait_until_serving(process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + JACK_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jackd exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="probe").delete()
            return
        except rtmidi.RtMidiError:
            time.sleep(0.1)
    pytest.fail(f"jackd did not start within {JACK_START_TIMEOUT} s")


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM to jackd if pytest dies without tearing down.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a running JACK server (dummy backend) that every JACK client in this process uses."""
    jackd = _ensure_jackd()
    name = f"streamer-test-{os.getpid()}"
    saved = {key: os.environ.get(key) for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    log_path = tmp_path_factory.mktemp("jackd") / "jackd.log"
    command = [jackd, "--no-realtime", "--name", name, "-d", "dummy", "-r", "48000", "-p", "256"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
            preexec_fn=_die_with_parent,
        )
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"  # a test must never spawn a stray server of its own
    try:
        _wait_until_serving(process, log_path)
        yield name
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Daw:
    """Records what arrives on one MIDI output port, as a DAW's MIDI input would."""

    def __init__(self, api: int, port: str) -> None:
        self._input = rtmidi.MidiIn(api, name="daw")
        ports = self._input.get_ports()
        matches = [i for i, name in enumerate(ports) if name == port or name.startswith(f"{port}:")]
        assert matches, f"port {port!r} not among {ports}"
        self._input.open_port(matches[0])
        self.received: list[mido.Message] = []

    def expect(self, count: int) -> list[mido.Message]:
        """Everything received once `count` messages have arrived (and nothing more came just after)."""
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while len(self.received) < count and time.monotonic() < deadline:
            self._drain() or time.sleep(0.002)
        time.sleep(SETTLE)
        self._drain()
        received, self.received = self.received, []
        return received

    def _drain(self) -> bool:
        got = False
        while (item := self._input.get_message()) is not None:
            self.received.append(mido.Message.from_bytes(item[0]))
            got = True
        return got

    def close(self) -> None:
        self._input.close_port()
        self._input.delete()


@pytest.fixture
def daw() -> Iterator[Callable[[int, str], Daw]]:
    """Connects DAW-like recorders to ports by name; closes them after the test."""
    opened: list[Daw] = []

    def connect(api: int, port: str) -> Daw:
        opened.append(Daw(api, port))
        return opened[-1]

    yield connect
    for recorder in opened:
        recorder.close()


def _jack_outputs() -> list[str]:
    client = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="lister")
    try:
        return client.get_ports()
    finally:
        client.delete()


@pytest.fixture
def jack_outputs(jack_server: str) -> Callable[[], list[str]]:
    """Lists the output ports (client:port) the JACK server has now."""
    return _jack_outputs
