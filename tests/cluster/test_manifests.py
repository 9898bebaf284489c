"""The deployment files agree with each other and with the server: the Kubernetes manifests (deploy/k8s), the
container build file (deploy/Dockerfile) and the balancer's config (deploy/haproxy.cfg). Nothing here runs a
cluster: the files are parsed and their essentials compared."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config import Config, load_config
from streamer.server.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"


def documents() -> list[dict[str, Any]]:
    """Every manifest kustomization.yaml applies."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [d for name in kustomization["resources"] for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def one(kind: str) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def container() -> dict[str, Any]:
    (c,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def port_number(port: int | str, c: dict[str, Any]) -> int:
    """A port given by number or by the container port's name."""
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return int(match)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The ConfigMap's TOML, read by the server's own loader (unknown keys or bad values fail here)."""
    (name,) = one("ConfigMap")["data"]
    path = tmp_path_factory.mktemp("configmap") / name
    path.write_text(one("ConfigMap")["data"][name])
    return load_config(path)


def test_the_server_listens_where_the_container_port_and_the_probes_point(config: Config) -> None:
    c = container()
    assert config.server.host == "0.0.0.0"
    assert [p["containerPort"] for p in c["ports"]] == [config.server.port]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(c[probe]["httpGet"]["port"], c) == config.server.port


def test_the_server_reads_the_configmap(config: Config) -> None:
    deployment = one("Deployment")
    c = container()
    args = c["args"]
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert config_path.name in one("ConfigMap")["data"]


def test_the_grace_period_outlasts_the_pause_and_the_servers_own_shutdown(config: Config) -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    assert config.server.drain_s < config.server.shutdown_grace_s
    # The kubelet counts the grace period from the start of preStop, and kills at its end.
    assert spec["terminationGracePeriodSeconds"] > pause + config.server.shutdown_grace_s


def test_the_service_targets_the_container_port(config: Config) -> None:
    service = one("Service")
    labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert one("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port_number(port["targetPort"], container()) == config.server.port
    # The ingress routes to that Service port.
    (rule,) = one("Ingress")["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"].get("name") == port["name"] or backend["port"].get("number") == port["port"]


def test_the_ingress_balances_like_deploy_haproxy_cfg(config: Config) -> None:
    annotations = one("Ingress")["metadata"]["annotations"]
    assert annotations["haproxy.org/load-balance"] == "leastconn"
    assert annotations["haproxy.org/check-http"] == "/readyz"
    assert int(annotations["haproxy.org/pod-maxconn"]) == config.limits.max_sessions
    (rule,) = one("Ingress")["spec"]["rules"]
    assert rule["host"] in config.server.allowed_hosts  # the Host header the pods will see


def test_the_autoscaler_scales_the_deployment_on_a_metric_the_server_exports(config: Config) -> None:
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == one("Deployment")["metadata"]["name"]
    (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    name = metric["pods"]["metric"]["name"]
    exported = {m.name for m in Metrics().registry.collect()}
    assert name in exported
    assert float(metric["pods"]["target"]["averageValue"]) < config.limits.max_sessions
    # The Prometheus adapter's rule serves it under that name.
    adapter = yaml.safe_load((K8S / "prometheus-adapter.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == name and name in rule["seriesQuery"]


def test_the_pods_are_scraped_on_the_stream_port(config: Config) -> None:
    annotations = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == config.server.port
    assert annotations["prometheus.io/path"] == "/metrics"


def dockerfile() -> dict[str, list[str]]:
    """Instruction → its arguments, in order (continued lines joined)."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in (line.strip() for line in text.splitlines()):
        if line and not line.startswith("#"):
            word, rest = line.split(None, 1)
            instructions.setdefault(word, []).append(rest)
    return instructions


def test_the_image_runs_the_server_as_a_user_on_all_interfaces(config: Config) -> None:
    image = dockerfile()
    assert image["FROM"] == ["python:3.11-slim"]
    (user,) = image["USER"]
    assert user.isdigit() and int(user) != 0
    assert int(container()["securityContext"].get("runAsUser", user)) == int(user)
    assert image["EXPOSE"] == [str(config.server.port)]
    command = [*yaml.safe_load(image["ENTRYPOINT"][0]), *yaml.safe_load(image["CMD"][0])]
    assert command[:2] == ["streamer", "serve"] and command[command.index("--host") + 1] == "0.0.0.0"
    assert any("basic-pitch==" in run and "--no-deps" in run for run in image["RUN"])
    # The Deployment's args replace CMD: they must still serve on all interfaces.
    args = container()["args"]
    assert args[0] == "serve" and args[args.index("--host") + 1] == "0.0.0.0"


def test_the_balancer_config_matches_the_server() -> None:
    config = load_config(None)  # what `make cluster` runs behind it
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    directives = [shlex.split(line.split("#", 1)[0]) for line in cfg.splitlines()]
    directives = [d for d in directives if d]
    assert ["option", "httpchk", "GET", "/readyz"] in directives
    assert ["http-check", "expect", "status", "200"] in directives
    assert ["balance", "leastconn"] in directives
    (defaults,) = [d for d in directives if d[0] == "default-server"]
    assert int(defaults[defaults.index("maxconn") + 1]) == config.limits.max_sessions
    (tunnel,) = [d for d in directives if d[:2] == ["timeout", "tunnel"]]
    assert _seconds(tunnel[2]) > config.limits.idle_timeout_s
    (http_request,) = [d for d in directives if d[:2] == ["timeout", "http-request"]]
    assert _seconds(http_request[2]) >= config.server.handshake_timeout_s


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[unit]
