"""`streamer replicas` in a process of its own, waited for until its replicas are ready: how tests and benchmarks
start model replicas, find a replica's process (to kill it) and take the whole Ray cluster down again.

The command runs in a session of its own: Ray's processes (GCS, raylet, replicas, HAProxy) stay in that session
whatever process groups they make, so stopping kills exactly what this started, nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from streamer.replicas.launcher import READY
from streamer.server.process import CHECKOUT, default_command, free_port, stop_process


class ReplicasProcess:
    def __init__(self, process: subprocess.Popen[bytes], address: str, log: Path) -> None:
        self.process = process
        self.address = address
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while READY not in self.log_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"streamer replicas exited with {self.process.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas not ready after {timeout:g} s:\n{self.log_text()[-5000:]}")
            time.sleep(0.2)

    def session_pids(self) -> list[int]:
        """Every process of the command's session (Ray's included), the command itself first."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry.name)) == self.process.pid:
                        pids.append(int(entry.name))
        return sorted(pids, key=lambda pid: pid != self.process.pid)

    def replica_pids(self, model: str) -> list[int]:
        """The processes of `model`'s replicas (Ray names them ray::ServeReplica:<app>:<deployment>)."""
        found = []
        for pid in self.session_pids():
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if command.startswith(f"ray::ServeReplica:{model}:".encode()):
                    found.append(pid)
        return found

    def kill_replica(self, model: str) -> int:
        """SIGKILL one of `model`'s replicas, as a crash would; returns its pid."""
        pids = self.replica_pids(model)
        if not pids:
            raise RuntimeError(f"no replica of {model} is running")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the command takes its cluster down), then SIGKILL whatever of its session is left."""
        stop_process(self.process, timeout)
        for pid in self.session_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> ReplicasProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_replicas(
    config_dir: Path,
    config_toml: str,
    models: Sequence[str],
    *,
    port: int | None = None,
    log: Path | None = None,
    timeout: float = 180.0,
) -> ReplicasProcess:
    """Start `streamer replicas --model M... --config FILE --address http://127.0.0.1:PORT`, wait until ready.

    `config_toml` is written to a file in `config_dir` (the `[models.<name>]` options and `[replicas]` keys)."""
    port = port or free_port()
    address = f"http://127.0.0.1:{port}"
    config = config_dir / f"replicas-{port}.toml"
    config.write_text(config_toml)
    log = log or config_dir / f"replicas-{port}.log"
    command = [*default_command(), "replicas", "--config", str(config), "--address", address]
    for model in models:
        command += ["--model", model]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=CHECKOUT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    replicas = ReplicasProcess(process, address, log)
    try:
        replicas.wait_ready(timeout)
    except BaseException:
        replicas.stop(5.0)
        raise
    return replicas
