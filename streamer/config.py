"""Typed configuration: TOML files in configs/, overridden by command-line flags.

`configs/default.toml` holds every key with its default; a user file passed with `--config` only needs the keys it
changes. Model options live in `[models.<name>]` tables (or in `configs/<name>.toml`, loaded on demand).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from streamer.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_MODEL = "basic-pitch"


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8765
    web_root: str = ""  # empty: clients/web next to the package
    shutdown_grace_s: float = 10.0


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True):
    max_sessions: int = 32
    max_sessions_per_client: int = 8
    max_frame_bytes: int = 1 << 20
    max_text_bytes: int = 16 << 10
    max_text_messages_per_s: float = 10.0  # start/flush/stop: a flush costs a model window
    max_frames_per_audio_s: float = 200.0  # audio frames must carry 5 ms on average (after a 100-frame burst)
    idle_timeout_s: float = 30.0
    max_session_s: float = 4 * 3600.0
    # A client whose audio runs ahead of 1.2 × wall time + its longest frame + this slack streams faster than real
    # time: its reads are throttled (backpressure, nothing skipped) or it is refused; live clients never are.
    realtime_slack_s: float = 0.25
    faster_than_realtime: str = "throttle"  # "throttle" | "refuse" | "allow"


class EngineConfig(msgspec.Struct, forbid_unknown_fields=True):
    max_batch: int = 8
    max_wait_ms: float = 4.0
    # A live session whose oldest queued window waited longer than this is lagging: its queued windows are merged
    # into the newest (bounded latency). A client sending faster than real time instead waits (backpressure) while
    # it has max_pending_windows queued.
    max_lag_s: float = 1.0
    max_pending_windows: int = 2


class WindowingConfig(msgspec.Struct, forbid_unknown_fields=True):
    hop: float | None = None  # seconds; None: the model's default
    commit_margin: float | None = None  # seconds; None: the model's default


class MidiConfig(msgspec.Struct, forbid_unknown_fields=True):
    port: str = ""  # empty: no MIDI port
    backend: str = "auto"
    per_session: bool = False
    files_dir: str = ""  # empty: session MIDI files are not kept


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    token: str = ""
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    tls_cert: str = ""
    tls_key: str = ""


class Config(msgspec.Struct, forbid_unknown_fields=True):
    model: str = DEFAULT_MODEL
    preload: list[str] = msgspec.field(default_factory=list)
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    windowing: WindowingConfig = msgspec.field(default_factory=WindowingConfig)
    midi: MidiConfig = msgspec.field(default_factory=MidiConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    models: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    def model_options(self, name: str) -> dict[str, Any]:
        """Options of one model: `[models.<name>]` of the loaded config over `configs/<name>.toml`'s `[model]`."""
        options: dict[str, Any] = {}
        per_model = CONFIG_DIR / f"{name}.toml"
        if per_model.is_file():
            options.update(_read_toml(per_model).get("model", {}))
        options.update(self.models.get(name, {}))
        return options


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
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
    default = CONFIG_DIR / "default.toml"
    if default.is_file():
        data = _read_toml(default)
    if path is not None:
        data = _merge(data, _read_toml(Path(path)))
    if overrides:
        data = _merge(data, overrides)
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        raise ConfigError(f"invalid configuration: {e}") from e
