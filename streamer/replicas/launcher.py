"""`streamer replicas`: model replicas in Ray Serve, for front ends with `[engine] backend = "ray"`.

With `[replicas] ray_address` empty it starts a Ray cluster on this machine (one machine, or a first try); with an
address it joins that cluster and deploys there. Either way each model is one Serve application at `/<model>` on the
HTTP ingress `[replicas] address` names, and the command holds it until SIGTERM or SIGINT.

On a cluster it starts itself, the ingress is Ray Serve's HAProxy (RAY_SERVE_ENABLE_HA_PROXY, documented for Ray
2.56 and later): measured on loopback, a window's round trip took 5 ms through it and 17 ms through Ray's Python
proxy (docs/scaling.md). Its files go to a folder of this run, not /tmp/haproxy-serve, so that two clusters on one
machine do not overwrite each other's, and the ports Ray would bind on fixed numbers are free ones.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from streamer.config import Config
from streamer.errors import ConfigError
from streamer.replicas.remote_model import remote_models
from streamer.server.process import free_port

log = logging.getLogger(__name__)

HAPROXY_FILES = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
}
HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")
READY = "streamer: replicas ready"  # the line tests and scripts wait for


def check_windowed(config: Config, models: Sequence[str]) -> None:
    """Refuse models that cannot run on replicas before anything starts: a config_error naming the fix."""
    remote_models(config, models)


def serve_replicas(config: Config, models: Sequence[str]) -> None:
    """Deploy `models`' replicas and hold them until SIGTERM or SIGINT."""
    check_windowed(config, models)
    cfg = config.replicas
    local = not cfg.ray_address
    # Short: Ray adds a 56-character node id below it, and HAProxy's socket paths may not exceed 97 characters.
    with tempfile.TemporaryDirectory(prefix="shp-", dir="/tmp") as folder:
        if local:
            _private_haproxy(Path(folder))
        _deploy(config, models, local)


def _deploy(config: Config, models: Sequence[str], local: bool) -> None:
    cfg = config.replicas
    ingress = urlsplit(cfg.address)
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigError('Ray Serve is not installed: pip install "streamer[cluster]"') from None

    from streamer.replicas.deployment import build_app

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    needed = math.ceil(cfg.count * cfg.cpus * len(models))
    # A local cluster gets the CPUs its replicas ask for even on a smaller machine: Ray's CPUs are only counted, and
    # replicas that cannot be placed would leave `serve.run` waiting forever.
    ray.init(
        address=cfg.ray_address or None,
        num_cpus=max(os.cpu_count() or 1, needed) if local else None,
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    try:
        serve.start(http_options={"host": ingress.hostname, "port": ingress.port or 80})
        for name in models:
            serve.run(build_app(name, config.model_options(name), cfg), name=name, route_prefix=f"/{name}")
        print(f"{READY}: {cfg.count} × {', '.join(models)} at {cfg.address}/<model>", flush=True)
        while not stop.wait(1.0):
            pass
        log.info("stopping replicas")
    finally:
        if not local:
            for name in models:
                serve.delete(name)
        # A local cluster goes as a whole: its replicas with it (faster than Serve's own graceful shutdown).
        ray.shutdown()


def _private_haproxy(folder: Path) -> None:
    """HAProxy's files in `folder`, and free ports for what Ray otherwise binds on fixed ones (its stats page on
    8404, metrics on 9101, Serve's fallback proxy on 8500): another cluster or balancer on this machine may hold
    those."""
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    os.environ.setdefault("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", str(folder))
    for key, name in HAPROXY_FILES.items():
        os.environ.setdefault(key, str(folder / name))
    for key in HAPROXY_PORTS:
        os.environ.setdefault(key, str(free_port()))
