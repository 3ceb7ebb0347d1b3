"""A node that dies (SIGKILL: no goodbye) costs its stations only their reconnect: the
broker drops its subscriptions at once, so a command to one of them is a plain 409, the
registry sweep marks them offline within the worker TTL, and they reconnect elsewhere."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from csms.cluster.broker import EmbeddedBroker, free_port
from simulators.station import Station, StationSpec
from tests.cluster.conftest import Node
from tests.cluster.test_nodes import station_on
from tests.support import eventually

CSMS = [sys.executable, "-m", "csms.cli"]


async def test_a_node_that_dies_leaves_its_stations_offline_and_free_to_reconnect(
    nodes: dict[str, Node], broker: EmbeddedBroker, database_url: str, private_dir: Path,
) -> None:
    a = nodes["a"]
    config = private_dir / "c.toml"
    config.write_text("[cluster]\nheartbeat_s = 0.5\nworker_ttl_s = 2.0\n[api]\nenabled = false\n")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *CSMS, "serve", "--workers", "1", "--config", str(config), "--database-url",
        database_url, "--broker-url", broker.url, "--node", "c", "--host", "127.0.0.1",
        "--port", str(port), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    assert "CSMS listening" in (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    await a.csms.store.stations.add("CS-C1", None, a.csms.clock.now())
    doomed = Station(StationSpec("CS-C1", password=None), url=f"ws://127.0.0.1:{port}/ocpp")
    await doomed.start()
    await eventually(lambda: _held(a, "CS-C1"), timeout=20)

    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    killed = time.monotonic()
    # the broker saw the connection go: no responders, a 409 at once (not a 30 s wait)
    await eventually(lambda: _answers(a, 409), timeout=20)
    record = await eventually(lambda: _offline(a, "CS-C1"), timeout=30)
    assert record
    swept_after = time.monotonic() - killed
    print(f"node death: 409 then offline after {swept_after:.1f} s")  # the decision record
    assert swept_after < 20, swept_after
    # the sweeper's "gone" message follows its database write: a's stand-in goes soon after
    await eventually(lambda: _gone(a, "CS-C1"), timeout=10)
    await doomed.stop()
    again = await station_on(a, "CS-C1", provision=False)  # it reconnects to a live node
    try:
        reply = await a.http.post("/api/stations/CS-C1/commands/trigger-message",
                                  json={"requested_message": "Heartbeat"})
        assert reply.status_code == 200, reply.text
    finally:
        await again.stop()


async def _held(node: Node, station_id: str) -> bool:
    return node.csms.connections.is_connected(station_id)


async def _gone(node: Node, station_id: str) -> bool:
    return not node.csms.connections.is_connected(station_id)


async def _answers(node: Node, status: int) -> bool:
    reply = await node.http.post("/api/stations/CS-C1/commands/trigger-message",
                                 json={"requested_message": "Heartbeat"})
    return reply.status_code == status


async def _offline(node: Node, station_id: str) -> bool:
    record = await node.csms.store.stations.get(station_id)
    return record is not None and not record.online
