"""Typed configuration: TOML files in configs/, overridden by command-line flags.

`configs/default.toml` holds every key with its default (a test checks that it equals `Config()`); a user file
passed with `--config` only needs the keys it changes. Model options live in `[models.<name>]` tables (or in
`configs/<name>.toml`, loaded on demand). Every field is range-checked: a bad value is a `config_error` naming its
key, at start-up.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from streamer.errors import ConfigError
from streamer.resources import config_dir

DEFAULT_MODEL = "basic-pitch"

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
FasterThanRealtime = Literal["throttle", "refuse", "allow"]
MidiBackend = Literal["auto", "alsa", "jack", "coremidi", "windows-mm"]
EngineBackend = Literal["local", "ray"]
FileFormat = Literal["midi", "notesequence"]


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    port: Port = 8765
    web_root: str = ""  # empty: the browser demo that ships with streamer
    # SIGTERM: sessions keep streaming this long (the client may move to another server meanwhile), then commit
    # what they heard, get `done` and 1001. Everything, the model's queue included, ends within it.
    shutdown_grace_s: Positive = 10.0
    # Of that grace, how long live sessions keep streaming after SIGTERM before they are stopped (readiness fails at
    # once, so a balancer sends no new sessions, and clients may resume elsewhere meanwhile). Less than the grace.
    drain_s: NonNegative = 5.0
    # A TCP connection must complete its HTTP request (the WebSocket upgrade) within this time.
    handshake_timeout_s: Positive = 10.0
    # Open TCP connections per client address, counted at accept time (before any HTTP is read).
    max_connections_per_client: Count = 16
    # Extra host names the server may be reached by (the Host header), besides its bind address, its IP literals
    # and localhost: a DNS-rebinding page names its own host, so it is refused. "*" allows any.
    allowed_hosts: list[str] = msgspec.field(default_factory=list)


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True):
    max_sessions: Count = 32
    max_sessions_per_client: Count = 8
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1 << 20
    max_frame_seconds: Positive = 1.0  # audio per binary frame; 20–50 ms is typical
    max_text_bytes: Annotated[int, msgspec.Meta(ge=256)] = 16 << 10
    max_text_messages_per_s: Positive = 10.0  # start/flush/stop: a flush costs a model window
    max_frames_per_audio_s: Positive = 200.0  # audio frames must carry 5 ms on average (after a 100-frame burst)
    start_timeout_s: Positive = 10.0  # a connection must send `start` this soon
    idle_timeout_s: Positive = 30.0  # no text or audio for this long (pings do not count) ends a session
    max_session_s: Positive = 4 * 3600.0
    # A client whose audio runs ahead of 1.2 × wall time + its longest frame + this slack streams faster than real
    # time: its reads are throttled (backpressure, nothing skipped) or it is refused; live clients never are.
    realtime_slack_s: NonNegative = 0.25
    faster_than_realtime: FasterThanRealtime = "throttle"
    max_outbox_messages: Count = 256  # messages waiting for a client that does not read; beyond: the session ends
    close_timeout_s: Positive = 5.0  # sending the last messages and closing, after `done` or an error


class EngineConfig(msgspec.Struct, forbid_unknown_fields=True):
    backend: EngineBackend = "local"
    max_batch: Annotated[int, msgspec.Meta(ge=0)] = 0  # windows per model call; 0: the model's own default
    max_wait_ms: NonNegative = 1.0  # an idle worker waits this long for a batch to fill; a busy one never does
    # A live session whose oldest queued window waited longer than this is lagging: its queued windows are merged
    # into the newest (bounded latency). A client sending faster than real time instead waits (backpressure) while
    # it has max_pending_windows queued.
    max_lag_s: Positive = 1.0
    max_pending_windows: Count = 2
    max_queued_windows: Count = 8  # per live session: older queued windows are skipped beyond this


class ReplicasConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[engine] backend = "ray"`: model replicas in Ray Serve (docs/scaling.md). `streamer replicas` reads the
    replica side (count, batching, resources); front ends read the address, retries, timeout and in-flight bound."""

    address: Annotated[str, msgspec.Meta(pattern=r"^https?://[^/]+$")] = "http://127.0.0.1:8000"
    ray_address: str = ""  # the Ray cluster `streamer replicas` joins; empty: it starts one on this machine
    count: Count = 2  # replicas per model
    max_batch: Count = 8  # windows per replica batch
    batch_wait_ms: NonNegative = 4.0  # how long a replica waits for its batch to fill
    cpus: Positive = 1.0  # Ray CPUs per replica
    gpus: NonNegative = 0.0  # Ray GPUs per replica
    retries: Annotated[int, msgspec.Meta(ge=0)] = 2  # a window whose replica failed is sent again this often
    timeout_s: Positive = 30.0  # a window unanswered this long counts as a failed attempt
    max_in_flight: Annotated[int, msgspec.Meta(ge=0)] = 0  # windows out per front end and model; 0: count × max_batch


class WindowingConfig(msgspec.Struct, forbid_unknown_fields=True):
    hop: Positive | None = None  # seconds; None: the model's default
    commit_margin: NonNegative | None = None  # seconds; None: the model's default


class MidiConfig(msgspec.Struct, forbid_unknown_fields=True):
    port: str = ""  # empty: no MIDI port
    backend: MidiBackend = "auto"
    per_session: bool = False
    files_dir: str = ""  # empty: session MIDI files are not kept
    files_formats: list[FileFormat] = msgspec.field(default_factory=lambda: ["midi"])  # in files_dir


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    token: str = ""
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    tls_cert: str = ""
    tls_key: str = ""


class Config(msgspec.Struct, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(min_length=1)] = DEFAULT_MODEL
    preload: list[str] = msgspec.field(default_factory=list)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    replicas: ReplicasConfig = msgspec.field(default_factory=ReplicasConfig)
    windowing: WindowingConfig = msgspec.field(default_factory=WindowingConfig)
    midi: MidiConfig = msgspec.field(default_factory=MidiConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    models: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def model_options(self, name: str) -> dict[str, Any]:
        """Options of one model: `[models.<name>]` of the loaded config over `configs/<name>.toml`'s `[model]`."""
        options: dict[str, Any] = {}
        per_model = config_dir() / f"{name}.toml"
        if per_model.is_file():
            options.update(read_toml(per_model).get("model", {}))
        options.update(self.models.get(name, {}))
        return options


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {e}") from e


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults from configs/default.toml, then the user's file, then flag overrides (nested dicts)."""
    data: dict[str, Any] = {}
    default = config_dir() / "default.toml"
    if default.is_file():
        data = read_toml(default)
    if path is not None:
        data = _merge(data, read_toml(Path(path)))
    if overrides:
        data = _merge(data, overrides)
    config: Config = convert_options(data, Config, "configuration")
    if config.server.drain_s >= config.server.shutdown_grace_s:
        raise ConfigError("invalid configuration: server.drain_s must be less than server.shutdown_grace_s")
    return config


def convert_options(data: dict[str, Any], schema: type[Any], what: str) -> Any:
    """`data` checked against a msgspec schema; a bad key or value is a ConfigError naming it."""
    try:
        return msgspec.convert(data, schema)
    except msgspec.ValidationError as e:
        raise ConfigError(f"invalid {what}: {_readable(str(e))}") from None


def _readable(message: str) -> str:
    """msgspec says "Expected `int` >= 1 - at `$.limits.max_sessions`"; say "limits.max_sessions: expected …"."""
    text, sep, where = message.rpartition(" - at `$")
    if not sep:
        return message
    key = where.rstrip("`").lstrip(".")
    return f"{key}: {text[0].lower()}{text[1:]}" if key else text
