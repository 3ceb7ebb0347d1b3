"""Event-loop lag: how late a timer fires is how long every station's message waited.

Every station shares one event loop, so anything that holds it (a long callback, a
blocking write, the process waiting for a core) delays all of them at once. A probe
sleeps for a short interval and measures how late it wakes; the lag is a histogram on
/metrics and a lag of 100 ms or more is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from csms import metrics

log = structlog.get_logger()

INTERVAL_S = 0.1
SLOW_S = 0.1


class LagProbe:
    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.perf_counter() - before - self.interval_s)
            metrics.loop_lag.observe(lag)
            if lag >= SLOW_S:
                log.warning("loop.lag", seconds=round(lag, 3))
