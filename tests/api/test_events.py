"""The live feed (server-sent events) delivers what happens, as JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from csms.app import Csms
from csms.events import PowerSampled
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory


async def sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict]]:
    """(event name, data) per server-sent event."""
    name, data = "message", ""
    async for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data += line.split(":", 1)[1].strip()
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def test_feed_sends_station_connected_and_disconnected(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    viewer = client("viewer")
    async with viewer.stream("GET", "/api/events",
                             params={"types": "StationConnected,StationDisconnected"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = sse(reply.aiter_lines())
        name, data = await anext(events)
        assert name == "ready"
        assert data["types"] == ["StationConnected", "StationDisconnected"]
        station = await make_station("CS001")
        name, data = await anext(events)
        assert name == "StationConnected"
        assert data["type"] == "StationConnected" and data["station_id"] == "CS001"
        assert data["at"].endswith("Z") or "+00:00" in data["at"]
        await station.stop()
        name, data = await anext(events)
        assert (name, data["station_id"]) == ("StationDisconnected", "CS001")


async def test_feed_refuses_unknown_types_and_missing_tokens(
    client: Client, base_url: str
) -> None:
    bad = await client("viewer").get("/api/events", params={"types": "Gossip"})
    assert bad.status_code == 422 and "Gossip" in bad.json()["detail"][0]["msg"]
    assert (await client(None).get("/api/events")).status_code == 401
    assert (await client("grid").get("/api/events")).status_code == 403


async def test_stopping_the_csms_ends_open_feeds(csms: Csms, base_url: str,
                                                 api_tokens: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {api_tokens['viewer']}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as http, \
            http.stream("GET", "/api/events") as reply:
        lines = reply.aiter_lines()
        assert (await anext(lines)).startswith("event: ready")
        assert csms.api is not None
        await csms.api.stop()
        rest = [line async for line in lines]  # the stream ends instead of hanging
    assert all(not line.startswith("event: Station") for line in rest)


async def test_a_client_that_goes_away_ends_its_feed_without_an_error(
    csms: Csms, api_tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A browser closing the feed while the server is writing to it (the socket's buffers
    full) is a normal end: the subscription goes, and nothing is logged as an error."""
    assert csms.api is not None
    before = len(csms.events._subscribers)
    reader, writer = await asyncio.open_connection("127.0.0.1", csms.api.port)
    writer.write(
        b"GET /api/events HTTP/1.1\r\nHost: test\r\n"
        + f"Authorization: Bearer {api_tokens['viewer']}\r\n\r\n".encode()
    )
    await writer.drain()
    head = b""
    while b"event: ready" not in head:
        head += await asyncio.wait_for(reader.read(4096), 5)
    assert len(csms.events._subscribers) == before + 1
    at = datetime.now(UTC)
    for i in range(5_000):  # more than the socket buffers hold: the server waits on writes
        csms.events.publish(PowerSampled(f"CS{i:04}-{'x' * 200}", 1, at, float(i)))
        if i % 500 == 0:
            await asyncio.sleep(0.01)
    writer.transport.abort()  # the client goes away mid-stream

    async def feed_ended() -> None:
        while len(csms.events._subscribers) > before:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.02)

    await asyncio.wait_for(feed_ended(), 5)
    await asyncio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
