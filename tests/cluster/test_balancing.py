"""HAProxy in front of three front ends: new sessions go to the server with the fewest open connections, and a
server that is draining (its /readyz answers 503) gets none."""

from __future__ import annotations

import asyncio
import signal

import websockets

from deploy.cluster import Cluster
from streamer import protocol as p
from tests.cluster.observe import readiness, sessions_async, wait_for_sessions

RATE = 16000
START = p.encode(p.Start(sample_rate=RATE))
DOWN_WITHIN_S = 5.0  # checks every 1 s, then every 0.25 s, down after 2 failures: about 1.5 s, generous on 2 cores


async def open_session(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url)
    await ws.send(START)
    assert isinstance(p.decode_server(await ws.recv()), p.Ready)
    return ws


async def end_session(ws: websockets.ClientConnection) -> None:
    await ws.send(p.encode(p.Stop()))
    async for _ in ws:  # `done`, then the server closes
        pass


async def open_counted(cluster: Cluster) -> tuple[websockets.ClientConnection, int]:
    """Open a session through the balancer; returns it and the index of the front end it landed on."""
    before = await sessions_async(cluster)
    ws = await open_session(cluster.url)
    after = await sessions_async(cluster)
    grew = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if (b or 0) > (a or 0)]
    assert len(grew) == 1, f"sessions per server went from {before} to {after}"
    return ws, grew[0]


async def test_new_sessions_go_to_the_server_with_the_fewest_connections(cluster) -> None:  # type: ignore[no-untyped-def]
    c = cluster()
    opened = [await open_counted(c) for _ in range(6)]
    assert await sessions_async(c) == [2, 2, 2]
    # Free one server: the next two sessions both go there (round robin would send one elsewhere).
    freed = opened[0][1]
    await asyncio.gather(*(end_session(ws) for ws, where in opened if where == freed))
    counts = await wait_for_sessions(c, 4)  # the server forgets a session a moment after its close
    assert counts[freed] == 0
    again = [await open_counted(c) for _ in range(2)]
    assert [where for _, where in again] == [freed, freed]
    remaining = [ws for ws, where in opened if where != freed] + [ws for ws, _ in again]
    await asyncio.gather(*(end_session(ws) for ws in remaining))


async def test_health_checks_take_a_draining_server_out(cluster) -> None:  # type: ignore[no-untyped-def]
    # A long drain: the server keeps its session, and fails readiness, for the whole test.
    c = cluster({"server": {"drain_s": 20.0, "shutdown_grace_s": 25.0}})
    held, draining = await open_counted(c)
    c.servers[draining].process.send_signal(signal.SIGTERM)
    name = f"s{draining + 1}"
    await asyncio.to_thread(c.wait_states, lambda s: s[name] == "DOWN", DOWN_WITHIN_S, f"{name} down")
    assert readiness(c.servers[draining].url) == (503, "draining")
    assert all(state == "UP" for server, state in c.states().items() if server != name)
    # New sessions all go to the two others, though the draining server has the fewest connections.
    opened = [await open_counted(c) for _ in range(4)]
    assert draining not in {where for _, where in opened}
    counts = await sessions_async(c)
    assert counts[draining] == 1 and sorted(n for i, n in enumerate(counts) if i != draining) == [2, 2]
    await asyncio.gather(*(end_session(ws) for ws, _ in [*opened, (held, draining)]))
