"""Issue 11, defects 6 and 10: password guessing is throttled per station id and per
source address, without slowing the station's own reconnects; sockets and handshakes in
progress are capped (HTTP 503); the open-file limit is raised at start."""

from __future__ import annotations

import asyncio
import base64
import resource
import time
from dataclasses import replace

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from csms import metrics
from csms.app import Csms
from csms.config import Config
from tests.e2e.conftest import PASSWORD, StationFactory


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _login(url: str, station_id: str, password: str, source: str) -> int:
    """The HTTP status of one WebSocket login from the address `source` (101: accepted)."""
    try:
        async with websockets.connect(
            f"{url}/{station_id}", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=_basic(station_id, password), local_addr=(source, 0),
            open_timeout=10,
        ):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def _failures(reason: str) -> float:
    return metrics.auth_failures.labels(reason)._value.get()


async def test_A01_password_guessing_is_locked_out_but_the_station_reconnects(
    url: str, make_station: StationFactory
) -> None:
    station = await make_station("CS001")  # logged in once from 127.0.0.1
    wrong_before, throttled_before = _failures("wrong_password"), _failures("throttled")
    guesses = [await _login(url, "CS001", f"guess-{i:016d}", "127.0.0.2") for i in range(12)]
    assert guesses[:5] == [401] * 5  # the free failures
    assert 429 in guesses[5:7] and guesses[-1] == 429  # then locked, doubling
    assert _failures("wrong_password") - wrong_before < 12
    assert _failures("throttled") > throttled_before
    # locked: even the right password from the guessing address waits
    assert await _login(url, "CS001", PASSWORD, "127.0.0.2") == 429
    # the station id is locked to new addresses too
    assert await _login(url, "CS001", PASSWORD, "127.0.0.3") == 429
    # ...but the station itself, from where it logged in before, reconnects at once
    await station.stop()
    started = time.perf_counter()
    await station.start()
    assert time.perf_counter() - started < 2.0
    assert "currentTime" in await station.call("Heartbeat", {})


async def test_A01_a_lockout_ends(url: str, make_station: StationFactory) -> None:
    await make_station("CS002", start=False)
    for i in range(6):
        await _login(url, "CS002", f"guess-{i:016d}", "127.0.0.4")
    assert await _login(url, "CS002", PASSWORD, "127.0.0.4") == 429
    await asyncio.sleep(1.2)  # the first lockout is 1 s
    assert await _login(url, "CS002", PASSWORD, "127.0.0.4") == 101


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, server=replace(config.server, max_connections=3))


async def test_connections_over_the_cap_get_503(
    csms: Csms, url: str, make_station: StationFactory
) -> None:
    for i in range(3):
        await make_station(f"CAP{i}")
    before = metrics.over_capacity.labels("connections")._value.get()
    await make_station("CAP3", start=False)
    assert await _login(url, "CAP3", PASSWORD, "127.0.0.1") == 503
    assert metrics.over_capacity.labels("connections")._value.get() == before + 1


async def test_the_open_file_limit_is_raised_to_the_hard_limit(csms: Csms) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY
