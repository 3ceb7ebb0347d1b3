"""The event-loop lag probe (csms/lag.py), seen on /metrics: a loop held up for 300 ms
shows as one lag sample above 100 ms."""

from __future__ import annotations

import asyncio
import re
import time

from tests.api.conftest import Client


def lag_counts(text: str) -> tuple[float, float]:
    """(samples, samples of 100 ms or less)."""
    count = re.search(r"^csms_event_loop_lag_seconds_count (\S+)$", text, re.M)
    fast = re.search(r'^csms_event_loop_lag_seconds_bucket\{le="0\.1"\} (\S+)$', text, re.M)
    assert count and fast
    return float(count.group(1)), float(fast.group(1))


async def test_a_held_up_event_loop_shows_as_lag(client: Client) -> None:
    viewer = client("viewer")
    await asyncio.sleep(0.35)
    total0, fast0 = lag_counts((await viewer.get("/metrics")).text)
    time.sleep(0.3)  # noqa: ASYNC251  (holds the loop every station shares, on purpose)
    await asyncio.sleep(0.25)
    total1, fast1 = lag_counts((await viewer.get("/metrics")).text)
    assert total1 > total0  # the probe keeps sampling
    assert total1 - fast1 > total0 - fast0  # and saw the 300 ms
