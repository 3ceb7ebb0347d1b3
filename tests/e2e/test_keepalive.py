"""A station that vanishes without closing its socket (power cut, lost network) is noticed
by the CSMS's keepalive ping and marked offline; one that answers pings stays connected."""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import replace

import pytest

from csms.app import Csms
from csms.config import Config
from tests.e2e.conftest import PASSWORD, StationFactory


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, server=replace(config.server, ping_interval_s=0.5))


async def silent_station(csms: Csms, station_id: str
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket handshake by hand, then silence: no pong is ever sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", csms.ocpp.port)
    auth = base64.b64encode(f"{station_id}:{PASSWORD}".encode()).decode()
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((
        f"GET /ocpp/{station_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: ocpp2.0.1\r\nAuthorization: Basic {auth}\r\n\r\n"
    ).encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer  # the writer too: dropping it would close the socket


async def online_soon(csms: Csms, station_id: str, online: bool) -> bool:
    for _ in range(50):
        record = await csms.store.stations.get(station_id)
        if record is not None and record.online == online:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_station_that_stops_answering_pings_is_closed_and_marked_offline(
        csms: Csms, make_station: StationFactory) -> None:
    alive = await make_station("CSALIVE")
    await make_station("CSGONE", start=False)  # provisioned only
    reader, writer = await silent_station(csms, "CSGONE")
    assert await online_soon(csms, "CSGONE", True)
    async with asyncio.timeout(10):
        while await reader.read(4096):  # the pings, then the close: EOF
            pass
    assert await online_soon(csms, "CSGONE", False)
    writer.close()
    await asyncio.sleep(1.5)  # a few more ping intervals
    assert alive.connected
    assert (await csms.store.stations.get("CSALIVE")).online  # type: ignore[union-attr]
