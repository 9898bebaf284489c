"""`streamer serve` in a process of its own, on a free loopback port, waited for until it answers: the one way
tests, benchmarks and the local cluster (`make cluster`) start servers."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1  # Linux prctl: a signal for the child when its parent dies
CHECKOUT = Path(__file__).resolve().parents[2]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL if `process` has not exited within `timeout`; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_command() -> list[str]:
    """The `streamer` script next to this interpreter, or the module when there is none."""
    script = Path(sys.executable).with_name("streamer")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "streamer.cli"]


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGKILL if whoever started it dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerProcess:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path | None) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}/"
        self.ws_url = f"ws://127.0.0.1:{port}/v1/stream"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None and self.log.is_file() else ""

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after {timeout:g} s:\n{self.log_text()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the graceful shutdown), then SIGKILL if it has not exited within `timeout`."""
        return stop_process(self.process, timeout)

    def kill(self) -> None:
        """Stop abruptly, as a crash or a pulled cable would: no goodbye to the clients."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    command: Sequence[str] | None = None,
    config_dir: Path | None = None,
    *,
    config_toml: str = "",
    args: Sequence[str] = (),
    port: int | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    timeout: float = 60.0,
) -> ServerProcess:
    """Start `streamer serve --port P [--config FILE] ARGS` and wait until /healthz answers.

    `config_toml` is written to a file in `config_dir`; the server's output goes to `log` (or is discarded)."""
    port = port or free_port()
    cmd = [*(command or default_command()), "serve", "--port", str(port), *args]
    if config_toml:
        assert config_dir is not None, "config_toml needs a config_dir to write it in"
        path = config_dir / f"server-{port}.toml"
        path.write_text(config_toml)
        cmd += ["--config", str(path)]
    out: IO[bytes] | int = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        on_linux = sys.platform.startswith("linux")
        process = subprocess.Popen(
            cmd, cwd=cwd or CHECKOUT, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if on_linux else None,
        )  # fmt: skip
    finally:
        if not isinstance(out, int):
            out.close()
    server = ServerProcess(process, port, log)
    try:
        server.wait_healthy(timeout)
    except BaseException:
        server.kill()
        raise
    return server
