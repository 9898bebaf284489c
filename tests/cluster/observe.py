"""What the tests read from a running cluster: each front end's sessions and readiness."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

from deploy.cluster import Cluster


async def sessions_async(cluster: Cluster) -> list[int | None]:
    return await asyncio.to_thread(cluster.sessions)


async def wait_for_sessions(cluster: Cluster, total: int, timeout: float = 10.0) -> list[int | None]:
    """Sessions per front end, once they add up to `total`."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await sessions_async(cluster)
        if sum(n or 0 for n in counts) == total:
            return counts
        assert time.monotonic() < deadline, f"sessions per server {counts}, not {total} in all, after {timeout:g} s"
        await asyncio.sleep(0.02)


def readiness(url: str) -> tuple[int, str]:
    """A front end's /readyz: status code and status word."""
    try:
        with urllib.request.urlopen(f"{url}readyz", timeout=2) as response:
            return response.status, json.loads(response.read())["status"]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["status"]
