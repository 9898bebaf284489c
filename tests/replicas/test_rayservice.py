"""deploy/k8s/replicas/rayservice.yaml names applications this code can build, with arguments it accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.errors import ConfigError

yaml = pytest.importorskip("yaml")
deployment = pytest.importorskip("streamer.replicas.deployment")
MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "replicas" / "rayservice.yaml"


def test_every_application_of_the_rayservice_builds() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    applications = yaml.safe_load(manifest["spec"]["serveConfigV2"])["applications"]
    assert applications
    for application in applications:
        assert application["import_path"] == "streamer.replicas.deployment:app"
        assert application["route_prefix"] == f"/{application['args']['model']}"  # where front ends send windows
        deployment.app(application["args"])


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="count"):
        deployment.app({"model": "mt3-pytorch", "count": 0})
    with pytest.raises(ConfigError, match="unknown field `batch`"):
        deployment.app({"model": "mt3-pytorch", "batch": 8})
