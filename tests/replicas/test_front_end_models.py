"""A front end on replicas knows its models by their specs alone: the loaded model's spec, without weights or torch;
streaming-native models are refused with a config_error that says what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamer.config import load_config
from streamer.errors import ConfigError
from streamer.models.registry import load_model, model_spec
from streamer.server.app import load_models
from streamer.server.process import default_command


@pytest.mark.parametrize("options", [{}, {"streaming": False}, {"streaming": True, "block_frames": 2}])
def test_basic_pitch_spec_without_loading(options: dict[str, Any]) -> None:
    assert model_spec("basic-pitch", options) == load_model("basic-pitch", options).spec


def test_mr_mt3_spec_without_loading(mr_mt3_options: dict[str, Any]) -> None:
    assert model_spec("mr-mt3", mr_mt3_options) == load_model("mr-mt3", mr_mt3_options).spec


def test_specs_of_torch_models_need_no_torch() -> None:
    script = (
        "import sys\n"
        "from streamer.models.registry import model_spec\n"
        "specs = [model_spec('mt3-pytorch', {}), model_spec('mr-mt3', {}), model_spec('transkun', {'window': 8.0})]\n"
        "assert specs[2].window_samples == 8 * 44100, specs[2]\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_front_ends_on_replicas_load_no_model(mr_mt3_options: dict[str, Any]) -> None:
    config = load_config(
        overrides={"model": "mr-mt3", "engine": {"backend": "ray"}, "models": {"mr-mt3": mr_mt3_options}}
    )
    (model,) = load_models(config).values()
    assert model.spec.name == "mr-mt3" and not hasattr(model, "network")


def test_streaming_models_on_replicas_are_a_config_error(tmp_path: Path) -> None:
    config = load_config(overrides={"engine": {"backend": "ray"}})  # basic-pitch streams by default
    with pytest.raises(ConfigError, match=r"streaming = false"):
        load_models(config)
    path = tmp_path / "ray.toml"
    path.write_text('[engine]\nbackend = "ray"\n')
    out = subprocess.run([*default_command(), "serve", "--config", str(path), "--port", "0"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and out.stderr.startswith("error [config_error]: basic-pitch is a streaming-native")


@pytest.mark.parametrize(
    "replicas,key",
    [
        ({"address": "127.0.0.1:8000"}, "replicas.address"),  # no scheme: not a URL aiohttp can post to
        ({"address": "http://host:8000/basic-pitch"}, "replicas.address"),  # the model's path is added per model
        ({"count": 0}, "replicas.count"),
        ({"retries": -1}, "replicas.retries"),
        ({"timeout_s": 0}, "replicas.timeout_s"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_bad_replica_settings_are_config_errors_naming_their_key(replicas: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"engine": {"backend": "ray"}, "replicas": replicas})
    assert key in info.value.message
