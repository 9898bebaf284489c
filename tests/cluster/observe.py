"""What the tests read from a running cluster: each front end's sessions and readiness, and how a stream's notes
compare with the same audio streamed to a server alone."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from deploy.cluster import Cluster
from streamer.notes import Note
from tests.windowing import match


def sessions(cluster: Cluster) -> list[int | None]:
    """Each front end's open sessions (its /healthz), None for one that does not answer."""
    counts: list[int | None] = []
    for server in cluster.servers:
        try:
            with urllib.request.urlopen(f"{server.url}healthz", timeout=2) as response:
                counts.append(json.loads(response.read())["sessions"])
        except OSError:
            counts.append(None)
    return counts


async def sessions_async(cluster: Cluster) -> list[int | None]:
    return await asyncio.to_thread(sessions, cluster)


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


@dataclass
class Comparison:
    """A stream's notes against the reference: `missing` reference notes (no note of the same pitch within 50 ms),
    `duplicates` (notes striking again a pitch the reference holds at that moment: a note counted twice), and
    `others` (notes the reference does not have at all: the model hearing the same audio after a resume with a
    different history; a few frames of context make a ghost note come or go)."""

    missing: list[Note]
    duplicates: list[Note]
    others: list[Note]


def compare(reference: Sequence[Note], got: Sequence[Note]) -> Comparison:
    pairs = match(reference, got)
    used = {id(g) for _, g in pairs if g is not None}
    extra = [g for g in got if id(g) not in used]

    def held(note: Note) -> bool:
        return any(r.pitch == note.pitch and r.onset < note.onset < r.offset for r in reference)

    return Comparison(
        missing=[r for r, g in pairs if g is None],
        duplicates=[g for g in extra if held(g)],
        others=[g for g in extra if not held(g)],
    )
