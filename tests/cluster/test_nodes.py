"""Two nodes as one CSMS: a command through either reaches a station on the other, each
node's live feed shows the other's events, and a station that reconnects to the other node
leaves no stale socket behind (issue 13; docs/decisions/0024-cluster-broker.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import websockets

from csms.app import Csms
from csms.cluster.broker import EmbeddedBroker
from csms.config import Config
from simulators.station import Station, StationSpec
from tests.cluster.conftest import Node, node_config
from tests.e2e.conftest import _HASH, PASSWORD
from tests.raw_station import Raw, basic_auth
from tests.support import eventually


async def station_on(node: Node, station_id: str, provision: bool = True) -> Station:
    if provision:
        await node.csms.store.stations.add(station_id, _HASH, node.csms.clock.now())
    station = Station(StationSpec(station_id, password=PASSWORD), url=node.url)
    await station.start()
    return station


async def held_by(node: Node, station_id: str) -> bool:
    return node.csms.connections.is_connected(station_id)


async def test_remote_control_through_node_a_reaches_a_station_on_node_b(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["a"], nodes["b"]
    station = await station_on(b, "CS-B1")
    try:
        await eventually(lambda: held_by(a, "CS-B1"), timeout=20)
        assert a.csms.connections.local("CS-B1") is None  # the socket is on b
        # its boot (after the claim of its socket) reaches a too: the scheduler reads it
        await eventually(lambda: _booted(a, "CS-B1"), timeout=20)
        reply = await a.http.post("/api/stations/CS-B1/commands/trigger-message",
                                  json={"requested_message": "Heartbeat"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["reply"]["status"] == "Accepted"
        got = await a.http.post("/api/stations/CS-B1/commands/get-variables", json={
            "variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}]})
        assert got.status_code == 200, got.text
        assert got.json()["reply"]["getVariableResult"][0]["attributeStatus"] == "Accepted"
    finally:
        await station.stop()
    # gone from b: node a answers 409 as for a station of its own that is offline
    await eventually(lambda: _not(held_by(a, "CS-B1")), timeout=20)
    reply = await a.http.post("/api/stations/CS-B1/commands/trigger-message",
                              json={"requested_message": "Heartbeat"})
    assert reply.status_code == 409, reply.text


async def test_an_ocpp21_station_on_node_b_is_commanded_as_21_through_node_a(
    nodes: dict[str, Node],
) -> None:
    """Node a's stand-in knows the station's version: a request valid in 2.1 only (a
    DirectPayment token) passes node a's check and reaches the 2.1 station on node b."""
    a, b = nodes["a"], nodes["b"]
    await b.csms.store.stations.add("CS-B21", _HASH, b.csms.clock.now())
    async with websockets.connect(
        f"{b.url}/CS-B21", subprotocols=["ocpp2.1"],  # type: ignore[list-item]
        additional_headers=basic_auth("CS-B21", PASSWORD),
    ) as ws:
        station = Raw(ws, {"SendLocalList": {"status": "Accepted"}})
        await station.boot("2.1")
        await eventually(lambda: _booted(a, "CS-B21"), timeout=20)
        assert a.csms.connections.get("CS-B21").ctx.ocpp_version == "2.1"
        reply = await a.http.post("/api/stations/CS-B21/commands/send-local-list", json={
            "versionNumber": 3, "updateType": "Full", "localAuthorizationList": [
                {"idToken": {"idToken": "PAY-1", "type": "DirectPayment"},
                 "idTokenInfo": {"status": "Accepted"}}]})
        assert reply.status_code == 200, reply.text
        assert [action for action, _ in station.received] == ["SendLocalList"]
        station.stop()


async def _booted(node: Node, station_id: str) -> bool:
    return node.csms.connections.get(station_id).ctx.boot_status == "Accepted"


async def _not(check: object) -> bool:
    return not await check  # type: ignore[misc]


async def feed(node: Node) -> AsyncIterator[tuple[str, dict]]:
    async with node.http.stream("GET", "/api/events", params={
            "types": "StationConnected,StationDisconnected"}) as reply:
        assert reply.status_code == 200
        name, data = "message", ""
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data += line.split(":", 1)[1].strip()
            elif line == "" and data:
                yield name, json.loads(data)
                name, data = "message", ""


async def test_the_live_feed_of_each_node_shows_stations_connecting_to_the_other(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["a"], nodes["b"]
    feeds = {name: feed(node) for name, node in nodes.items()}
    for events in feeds.values():
        assert (await asyncio.wait_for(anext(events), 20))[0] == "ready"
    on_a = await station_on(a, "CS-A1")
    on_b = await station_on(b, "CS-B1")
    try:
        for events in feeds.values():
            seen = set()
            while seen != {"CS-A1", "CS-B1"}:
                name, data = await asyncio.wait_for(anext(events), 20)
                assert name == "StationConnected"
                seen.add(data["station_id"])
    finally:
        await on_a.stop()
        await on_b.stop()
        for events in feeds.values():
            await events.aclose()


async def test_a_station_that_reconnects_to_another_node_leaves_no_stale_socket(
    nodes: dict[str, Node],
) -> None:
    a, b = nodes["a"], nodes["b"]
    first = await station_on(a, "CS-MOVE")
    await eventually(lambda: held_by(b, "CS-MOVE"), timeout=20)
    old = a.csms.connections.local("CS-MOVE")
    assert old is not None
    second = await station_on(b, "CS-MOVE", provision=False)  # same station, new socket
    try:
        await eventually(lambda: _closed(old), timeout=20)
        assert a.csms.connections.local("CS-MOVE") is None
        assert b.csms.connections.local("CS-MOVE") is not None
        # the stale socket's end is no disconnection: the station is online, held by b
        await asyncio.sleep(1.0)
        record = await a.csms.store.stations.get("CS-MOVE")
        assert record is not None and record.online
        holdings = await eventually(lambda: _holdings(a, "b/0"), timeout=20)
        assert [h.station_id for h in holdings] == ["CS-MOVE"]
        reply = await a.http.post("/api/stations/CS-MOVE/commands/trigger-message",
                                  json={"requested_message": "Heartbeat"})
        assert reply.status_code == 200, reply.text
    finally:
        await first.stop()
        await second.stop()


async def _closed(conn: object) -> bool:
    return conn.ws.state.name == "CLOSED"  # type: ignore[attr-defined]


async def _holdings(node: Node, worker_id: str) -> list:
    assert node.csms.cluster is not None
    found = await node.csms.cluster.registry.holdings()
    return [h for h in found if h.worker_id == worker_id]


async def test_a_node_that_starts_later_knows_the_booted_stations_the_others_hold(
    nodes: dict[str, Node], config: Config, broker: EmbeddedBroker,
) -> None:
    b = nodes["b"]
    station = await station_on(b, "CS-B2")
    late = None
    try:
        await eventually(lambda: _holdings(b, "b/0"), timeout=20)
        await eventually(lambda: _stored_boot(b, "CS-B2"), timeout=20)
        late = await Csms.start(node_config(config, broker.url, "late"))
        assert late.connections.is_connected("CS-B2")
        assert late.connections.get("CS-B2").ctx.boot_status == "Accepted"
        reply = await late.commands.trigger_message("CS-B2", "Heartbeat")
        assert reply["status"] == "Accepted"
    finally:
        if late is not None:
            await late.stop()
        await station.stop()


async def _stored_boot(node: Node, station_id: str) -> bool:
    record = await node.csms.store.stations.get(station_id)
    return record is not None and record.boot_status == "Accepted"
