"""Garbage-collection policy: keeps full collections of a large heap off the request path.

With 10,000 stations connected the CSMS holds millions of long-lived objects (sockets,
connection state, tasks). CPython's cyclic collector walks all of them in every full
(generation 2) collection: 850-920 ms on this project's benchmark machine, a few times a
minute, and every station waits for it. Most of those objects live as long as their
connection and die by reference counting, not by the collector.

So every `freeze_interval_s` the survivors are frozen (`gc.freeze()`: moved out of the
collector's view, an O(1) list splice) and automatic collections only walk what is newer.
The price is that a reference cycle frozen before it became garbage is not reclaimed
until the next full pass: every `full_interval_s`, or once the connections closed since
the last pass reach `full_after_closed` of those open (a closed connection is a frozen
cycle), everything is unfrozen and collected once (one long pause, logged, then frozen
again). Why: docs/decisions/0010-csms-gc-policy.md.

Every collection's pause is measured (`csms_gc_pause_seconds`) whether the policy is on
or not, so an operator can see the collector in the latency tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from typing import Any

import structlog

from csms import metrics
from csms.config import GcConfig
from csms.connection import Connections

log = structlog.get_logger()

SLOW_PAUSE_S = 0.1  # a collection longer than this is logged
SETTLED_CHURN = 0.01  # connections opened + closed per freeze interval, share of the open


def full_due(cfg: GcConfig, since_full_s: float, closed: int, churn: int,
             open_now: int) -> bool:
    """Hourly, or sooner once the connections closed since the last pass reach
    `full_after_closed` of those open and the churn has settled.

    A closed connection is the bulk of the frozen garbage (its websockets state is full of
    cycles), so this bounds memory after a reconnect storm to a share of the live heap,
    while start-up and steady operation, which close nothing, never pay for a pass.
    Waiting until fewer than 1% of the connections opened or closed in the last interval
    (`churn`) keeps the pass out of the storm itself and makes it one pass, not one per
    wave of closes. (An earlier rule counted heap growth: it also fired while the heap was
    still settling after start-up, in steady load.)"""
    if cfg.full_interval_s > 0 and since_full_s >= cfg.full_interval_s:
        return True
    settled = churn <= SETTLED_CHURN * open_now + 10
    return (cfg.full_after_closed > 0 and closed > 0 and settled
            and closed >= cfg.full_after_closed * open_now)


class PauseMeter:
    """Times every collection through `gc.callbacks` (called at its start and its end).

    Young collections run thousands of times a second under load, so this stays cheap:
    histogram children are looked up once, and CPU time is read only for the older
    generations (a system call)."""

    def __init__(self) -> None:
        self._started = 0.0
        self._cpu = 0.0
        self._pauses = {g: metrics.gc_pause.labels(str(g)) for g in range(3)}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            self._started = time.perf_counter()
            self._cpu = time.thread_time() if generation else 0.0
            return
        pause = time.perf_counter() - self._started
        self._pauses[generation].observe(pause)
        if pause >= SLOW_PAUSE_S:  # cpu < seconds: the process also waited for a core
            cpu = time.thread_time() - self._cpu if generation else None
            log.warning("gc.slow_collection", generation=generation, seconds=round(pause, 3),
                        cpu_seconds=None if cpu is None else round(cpu, 3),
                        collected=info.get("collected"))

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)


PAUSES = PauseMeter()  # one per process: gc.callbacks is process-wide


class Collector:
    """Runs the freeze / full-collection cycle as one task of the CSMS's event loop."""

    def __init__(self, config: GcConfig, connections: Connections) -> None:
        self.config = config
        self.connections = connections
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        PAUSES.install()
        if self.config.freeze_interval_s > 0:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="gc-policy")
            gc.callbacks.append(self._after_collection)

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        """Freeze right after every generation-2 collection, not only on the timer.

        CPython still runs its own generation-2 collections between freezes, over
        everything not yet frozen. In a reconnect storm that is seconds of new
        connections, walked again at every such collection: a third of a 10,000-station
        storm went into them. Freezing what one of them just walked (and kept) leaves the
        next one only what is newer. The freeze is deferred to the event loop, outside
        any collection, because a collection can run in any thread."""
        if phase == "stop" and info["generation"] == 2 and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(gc.freeze)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._after_collection)
        self._loop = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            gc.unfreeze()  # hand the process back to the default collector

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        conns = self.connections
        last_full, closed = loop.time(), conns.closed
        churn_seen = conns.opened + conns.closed
        while True:
            await asyncio.sleep(self.config.freeze_interval_s)
            churn = conns.opened + conns.closed - churn_seen
            churn_seen += churn
            if full_due(self.config, loop.time() - last_full, conns.closed - closed, churn,
                        len(conns)):
                self.full_collection()
                last_full, closed = loop.time(), conns.closed
            gc.freeze()
            metrics.gc_heap_blocks.set(sys.getallocatedblocks())

    @staticmethod
    def full_collection() -> int:
        """Unfreeze and collect everything once: reclaims cycles that were frozen alive."""
        blocks = sys.getallocatedblocks()
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        metrics.gc_full.inc()
        log.info("gc.full_collection", collected=collected, blocks_before=blocks,
                 blocks_after=sys.getallocatedblocks(),
                 seconds=round(time.perf_counter() - started, 3))
        return collected
