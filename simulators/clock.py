"""The one place the simulator reads time.

Every station, EV and fleet takes a clock, so a 17:00-08:00 night can run in minutes and
OCPP timestamps carry simulated time. The CSMS defines a structurally identical clock; one
object of either kind can drive both when they share a process.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class AcceleratedClock:
    """Simulated time running `speed` times faster than the wall clock, starting at `start`.

    `anchor` (a `time.time()` value) is the wall-clock moment at which simulated time is
    `start`: processes given the same anchor share one simulated clock (a fleet spread
    over several processes). Without it, the clock starts now on the monotonic clock."""

    def __init__(self, start: datetime, speed: float = 1.0,
                 anchor: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._wall = anchor is not None
        self._t0 = anchor if anchor is not None else time.monotonic()

    def now(self) -> datetime:
        elapsed = (time.time() if self._wall else time.monotonic()) - self._t0
        return self.start + timedelta(seconds=elapsed * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


def to_ocpp(ts: datetime) -> str:
    """RFC 3339 UTC with a Z, as OCPP wants it."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ocpp(text: str) -> datetime:
    """Parse an OCPP timestamp; accepts Z, offsets and fractional seconds."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
