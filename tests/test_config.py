"""Configuration: one source of truth, every value range-checked, every start-up mistake one clear line."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest

from streamer.config import Config, load_config
from streamer.errors import ConfigError
from streamer.models.basic_pitch import build_model
from streamer.resources import config_dir

ROOT = Path(__file__).resolve().parents[1]


def test_the_defaults_file_is_the_code() -> None:
    with (config_dir() / "default.toml").open("rb") as f:
        from_file = msgspec.convert(tomllib.load(f), Config)
    assert from_file == Config()
    assert load_config() == Config()


def test_model_files_hold_only_what_is_read() -> None:
    for path in config_dir().glob("*.toml"):
        if path.name == "default.toml":
            continue
        with path.open("rb") as f:
            assert set(tomllib.load(f)) == {"model"}, f"{path.name}: only a [model] table is read"


@pytest.mark.parametrize(
    "overrides,key",
    [
        ({"engine": {"max_pending_windows": 0}}, "engine.max_pending_windows"),
        ({"limits": {"max_frame_bytes": 0}}, "limits.max_frame_bytes"),
        ({"limits": {"max_frame_bytes": -1}}, "limits.max_frame_bytes"),
        ({"limits": {"idle_timeout_s": -5}}, "limits.idle_timeout_s"),
        ({"limits": {"faster_than_realtime": "alow"}}, "limits.faster_than_realtime"),
        ({"windowing": {"commit_margin": -0.1}}, "windowing.commit_margin"),
        ({"windowing": {"hop": 0}}, "windowing.hop"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"host": ""}}, "server.host"),
        ({"midi": {"backend": "coreaudio"}}, "midi.backend"),
        ({"limits": {"max_sessions": 0}}, "limits.max_sessions"),
        ({"server": {"drain_s": 10.0}}, "server.drain_s"),
        ({"limits": {"volume": 11}}, "limits"),
    ],
)
def test_out_of_range_values_are_config_errors_naming_their_key(overrides: dict, key: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert key in info.value.message and info.value.code == "config_error"


def test_basic_pitch_options_are_strict() -> None:
    with pytest.raises(ConfigError, match="onset_treshold"):
        build_model({"onset_treshold": 0.4})
    with pytest.raises(ConfigError, match="frame_threshold"):
        build_model({"frame_threshold": 2.0})


def run_serve(tmp_path: Path, *args: str, config: bytes | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamer.cli", "serve", *args]
    if config is not None:
        path = tmp_path / "my.toml"
        path.write_bytes(config)
        cmd += ["--config", str(path)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_a_busy_port_is_one_clear_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, "--port", str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "config_error" in result.stderr


@pytest.mark.parametrize(
    "config,expected",
    [
        (b"[limits]\nmax_pending_windows = 0\n", "limits"),
        (b"[engine]\nmax_pending_windows = 0\n", "engine.max_pending_windows"),
        (b'[auth]\ntls_cert = "/nonexistent/cert.pem"\n', "auth.tls_cert"),
        (b'[server]\nhost = "no.such.host.invalid"\n', "cannot listen on no.such.host.invalid"),
        (b"# caf\xe9\n[limits]\n", "cannot read config"),
        (b"[limits\n", "cannot read config"),
        (b'[midi]\nfiles_dir = "/proc/streamer-cannot-write-here"\n', "files_dir"),
    ],
)
def test_start_up_mistakes_are_config_errors_without_a_traceback(tmp_path: Path, config: bytes, expected: str) -> None:
    result = run_serve(tmp_path, "--port", "0", config=config)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "config_error" in result.stderr and expected in result.stderr, result.stderr
