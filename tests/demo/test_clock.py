"""The demo's clock: held until everything is connected, frozen once the night is over."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from demo.clock import NightClock

START = datetime(2026, 11, 23, 9, tzinfo=UTC)
END = START + timedelta(hours=1)


async def test_time_is_held_until_begin_then_stands_still_at_the_end() -> None:
    clock = NightClock(START, END, speed=36_000)  # the hour in 0.1 s
    early = asyncio.ensure_future(clock.sleep(60))
    await asyncio.sleep(0.2)
    assert clock.now() == START and not early.done()

    clock.begin()
    await asyncio.wait_for(early, 5)
    assert START < clock.now() < END
    past_the_end = asyncio.ensure_future(clock.sleep(2 * 3600))
    await asyncio.sleep(0.3)
    assert clock.now() == END and clock.stopped
    assert not past_the_end.done()  # nothing waits for time that never comes ...
    await asyncio.wait_for(clock.sleep(0), 1)  # ... but a yield still returns
    past_the_end.cancel()
