"""The demo's clock: accelerated, held at the start of the night until everything is
connected, and stopped at its end.

Held: starting the database and connecting 120 stations takes seconds, which at 240x
would be a quarter of an hour of the evening gone before the first car could arrive.
Stopped: once the night is over, time stands still, so the dashboard keeps showing that
night (its charts look back from "now") instead of scrolling into an empty morning.
It has the shape of both `csms.clock.Clock` and `simulators.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class NightClock:
    def __init__(self, start: datetime, end: datetime, speed: float) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if end <= start:
            raise ValueError("the night must end after it starts")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        self.speed = speed
        self._t0: float | None = None
        self._begun = asyncio.Event()

    def begin(self) -> None:
        """Let time run (from `start`)."""
        if self._t0 is None:
            self._t0 = time.monotonic()
            self._begun.set()

    def _running(self) -> datetime:
        if self._t0 is None:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def now(self) -> datetime:
        return min(self._running(), self.end)

    @property
    def stopped(self) -> bool:
        return self._running() >= self.end

    async def sleep(self, seconds: float) -> None:
        """A sleep before `begin` starts counting then; sleeps past the end never return
        (they are cancelled at shutdown)."""
        await self._begun.wait()
        seconds = max(0.0, seconds)
        left = (self.end - self._running()).total_seconds()
        if seconds <= max(0.0, left):
            await asyncio.sleep(seconds / self.speed)
            return
        await asyncio.sleep(max(0.0, left) / self.speed)
        await asyncio.Event().wait()
