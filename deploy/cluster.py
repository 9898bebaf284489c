"""A cluster on one machine: N `streamer serve` processes on loopback ports and HAProxy in front of them.

    make cluster N=3                                  # or: .venv/bin/python -m deploy.cluster --servers 3
    .venv/bin/streamer stream song.wav --url ws://127.0.0.1:8765/v1/stream
    open http://127.0.0.1:8404/                       # HAProxy's view: which server is up, sessions on each

Ctrl-C stops everything. The balancer runs deploy/haproxy.cfg with the server lines written for the chosen ports;
tests and benchmarks start the same cluster through `start_cluster`. Running it on several machines: README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streamer.server.process import ServerProcess, _die_with_parent, free_port, start_server, stop_process

TEMPLATE = Path(__file__).with_name("haproxy.cfg")
BEGIN, END = "# BEGIN servers", "# END servers"
# Behind the balancer every connection comes from its address, so the per-client caps would cap the whole
# cluster's traffic to one server: they are raised to the server's own total (X-Forwarded-For is not used).
PROXIED: dict[str, dict[str, Any]] = {"server": {"max_connections_per_client": 1024}}
DEFAULT_MAX_SESSIONS = 32  # [limits] max_sessions in configs/default.toml
Settings = Mapping[str, Any]  # a server TOML document as tomllib reads it: keys, and tables of keys


def render_config(template: str, servers: list[tuple[str, int]]) -> str:
    """The balancer's config with `server` lines for these (host, port) front ends between the markers."""
    head, rest = template.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    indent = head[head.rindex("\n") + 1 :]
    lines = [f"server s{i} {host}:{port}" for i, (host, port) in enumerate(servers, 1)]
    return head + BEGIN + "\n" + "".join(f"{indent}{line}\n" for line in lines) + indent + END + tail


def server_settings(overrides: Settings | None = None) -> dict[str, Any]:
    """A front end's settings behind the balancer: the caller's, with the per-client caps raised."""
    tables = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (overrides or {}).items()}
    for table, values in PROXIED.items():
        for key, value in values.items():
            tables.setdefault(table, {}).setdefault(key, value)
    limits = tables.setdefault("limits", {})
    limits.setdefault("max_sessions_per_client", limits.get("max_sessions", DEFAULT_MAX_SESSIONS))
    return tables


def to_toml(document: Settings) -> str:
    """Keys and tables of plain values (strings, numbers, booleans, lists of them) as TOML."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    keys = [f"{k} = {value(v)}\n" for k, v in document.items() if not isinstance(v, Mapping)]
    tables = [f"\n[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items())
              for name, table in document.items() if isinstance(table, Mapping)]  # fmt: skip
    return "".join(keys + tables)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    if found is None:
        raise RuntimeError("haproxy is not installed (Debian/Ubuntu: apt-get install haproxy)")
    return found


class Cluster:
    def __init__(self, servers: list[ServerProcess], haproxy: subprocess.Popen[bytes], port: int, stats_port: int,
                 workdir: Path) -> None:  # fmt: skip
        self.servers = servers
        self.haproxy = haproxy
        self.port = port
        self.stats_port = stats_port
        self.workdir = workdir
        self.url = f"ws://127.0.0.1:{port}/v1/stream"

    def server(self, name: str) -> ServerProcess:
        """A front end by its name in the balancer (s1, s2, ...)."""
        return self.servers[int(name.removeprefix("s")) - 1]

    def sessions(self) -> list[int | None]:
        """Each front end's open sessions (its /healthz), None for one that does not answer."""
        counts: list[int | None] = []
        for server in self.servers:
            try:
                with urllib.request.urlopen(f"{server.url}healthz", timeout=2) as response:
                    counts.append(json.loads(response.read())["sessions"])
            except OSError:
                counts.append(None)
        return counts

    def states(self) -> dict[str, str]:
        """The balancer's view of each front end: UP, DOWN, and the transitions between (e.g. "UP 1/2")."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=5) as response:
            text = response.read().decode().removeprefix("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "frontends" and r["svname"].startswith("s")}

    def wait_states(self, ok: Callable[[dict[str, str]], bool], timeout: float, what: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            if self.haproxy.poll() is not None:
                output = self.log_text() or "(in its output)"
                raise RuntimeError(f"haproxy exited with {self.haproxy.returncode}:\n{output}")
            with contextlib.suppress(OSError):
                states = self.states()
                if ok(states):
                    return states
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not seen within {timeout:g} s")
            time.sleep(0.05)

    def log_text(self) -> str:
        log = self.workdir / "haproxy.log"
        return log.read_text(errors="replace") if log.is_file() else ""

    def stop(self) -> None:
        """Servers first (SIGTERM: their sessions end properly; all at once), then the balancer."""
        for server in self.servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in self.servers:
            server.stop()
        stop_process(self.haproxy, 10)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(
    servers: int,
    workdir: Path,
    *,
    port: int | None = None,
    stats_port: int | None = None,
    settings: Settings | None = None,
    haproxy_output: int | None = None,
    timeout: float = 60.0,
) -> Cluster:
    """Start `servers` front ends and HAProxy in front; returns once the balancer sees every server up. Logs and
    the generated config are in `workdir` (the balancer's log goes to `haproxy_output` instead, if given)."""
    config = to_toml(server_settings(settings))
    started: list[ServerProcess] = []
    try:
        # One after the other, from this thread: a server dies with the thread that started it (PR_SET_PDEATHSIG).
        for i in range(1, servers + 1):
            log = workdir / f"server-{i}.log"
            started.append(start_server(config_dir=workdir, config_toml=config, log=log, timeout=timeout))
        port = port or free_port()
        stats_port = stats_port or free_port()
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(render_config(TEMPLATE.read_text(), [("127.0.0.1", s.port) for s in started]))
        env = {**os.environ, "STREAMER_LB_BIND": f"127.0.0.1:{port}", "STREAMER_LB_STATS": f"127.0.0.1:{stats_port}"}
        out: Any = haproxy_output if haproxy_output is not None else (workdir / "haproxy.log").open("wb")
        try:
            haproxy = subprocess.Popen([haproxy_binary(), "-db", "-f", str(cfg)], env=env, stdout=out,
                                       stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # fmt: skip
        finally:
            if haproxy_output is None:
                out.close()
    except BaseException:
        for server in started:
            server.kill()
        raise
    cluster = Cluster(started, haproxy, port, stats_port, workdir)
    try:
        cluster.wait_states(lambda s: len(s) == servers and all(v == "UP" for v in s.values()), timeout, "all up")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--servers", type=int, default=3, help="front ends to start (default 3)")
    parser.add_argument("--port", type=int, default=8765, help="the balancer's port (default 8765)")
    parser.add_argument("--stats-port", type=int, default=8404, help="HAProxy's status page (default 8404)")
    parser.add_argument("--config", type=Path, help="a server TOML file for every front end")
    args = parser.parse_args(argv)
    settings = tomllib.loads(args.config.read_text()) if args.config else {}
    with tempfile.TemporaryDirectory(prefix="streamer-cluster-") as tmp:
        cluster = start_cluster(args.servers, Path(tmp), port=args.port, stats_port=args.stats_port,
                                settings=settings, haproxy_output=sys.stderr.fileno())  # fmt: skip
        for i, server in enumerate(cluster.servers, 1):
            print(f"front end s{i}: {server.ws_url} (log {server.log})", flush=True)
        print(f"balancer: {cluster.url}   status: http://127.0.0.1:{cluster.stats_port}/   Ctrl-C stops", flush=True)
        # Also when started in the background, where SIGINT comes ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        # Front ends may be stopped or killed to watch clients resume on the others; the cluster runs until Ctrl-C
        # (which reaches the whole process group: the servers start draining on their own) or the balancer exits.
        exited: set[int] = set()
        try:
            while cluster.haproxy.poll() is None:
                for i, server in enumerate(cluster.servers, 1):
                    if i not in exited and (code := server.process.poll()) is not None:
                        exited.add(i)
                        print(f"front end s{i} exited ({code})", flush=True)
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            cluster.stop()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
