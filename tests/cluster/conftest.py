"""A real cluster on loopback for each test: three `streamer serve` processes (basic-pitch, streaming, CPU) behind
HAProxy, started by deploy/cluster.py as `make cluster` starts them. HAProxy is installed by `make test`
(scripts/install-test-system-packages.sh)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deploy.cluster import Cluster, start_cluster
from streamer.audio.test_signals import random_piece
from tests.piano import piano

SERVERS = 3
PIECE_S = 6.0


@pytest.fixture(scope="session")
def piece() -> np.ndarray:
    """Six seconds of two-voice piano, (frames, 1) float32 at PIANO_RATE."""
    return piano(random_piece(PIECE_S, seed=1, polyphony=2), PIECE_S)[:, None]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`cluster(settings)` starts one (server TOML settings as a dict); every process is stopped afterwards."""
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").is_file():
        pytest.fail("haproxy is missing: bash scripts/install-test-system-packages.sh (make test runs it)")
    started: list[Cluster] = []

    def start(settings: dict[str, Any] | None = None) -> Cluster:
        started.append(start_cluster(SERVERS, tmp_path, settings=settings, timeout=30))
        return started[-1]

    yield start
    for c in started:
        for server in c.servers:
            server.kill()
        c.stop()
