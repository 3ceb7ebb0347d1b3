"""I02 by CostUpdated: the running cost of every running transaction, sent at an interval
to the stations that show it (TariffCostCtrlr.Enabled[Cost] = true), on the CSMS clock.

The TransactionEvent answers carry the same running cost (csms/ocpp/cost.py); this covers
the stretches between a station's events (a station may send none for a long time while
a car charges), so the driver's display never shows a stale cost for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from csms.clock import Clock
from csms.commands import Commands
from csms.connection import CallFailed, Connections, StationOffline
from csms.frames import FrameError
from csms.ocpp.cost import as_number, price_transaction, shows_cost
from csms.store import Store

log = structlog.get_logger()


@dataclass
class CostUpdates:
    store: Store
    commands: Commands
    connections: Connections
    clock: Clock
    interval_s: float
    max_concurrent: int = 20
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="cost-updates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                await self.send_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cost_updates.failed")

    async def send_once(self) -> int:
        """One round: CostUpdated for each running transaction on a connected station that
        shows cost; returns how many the stations accepted."""
        if not await self.store.driver_tariffs.any():
            return 0
        now = self.clock.now()
        shows: dict[str, bool] = {}
        todo = []
        for tx in await self.store.transactions.list(active=True, limit=1_000_000):
            if not self.connections.is_connected(tx.station_id):
                continue
            if tx.station_id not in shows:
                shows[tx.station_id] = await shows_cost(self.store, tx.station_id)
            if shows[tx.station_id]:
                todo.append((tx.station_id, tx.transaction_id))
        gate = asyncio.Semaphore(self.max_concurrent)

        async def one(station_id: str, transaction_id: str) -> bool:
            async with gate:
                cost = await price_transaction(self.store, station_id, transaction_id, now, now)
                if cost is None:
                    return False
                try:
                    await self.commands.call(station_id, "CostUpdated", {
                        "totalCost": as_number(cost.total), "transactionId": transaction_id})
                except (StationOffline, CallFailed, TimeoutError, FrameError) as exc:
                    log.warning("cost_updates.not_delivered", station_id=station_id,
                                transaction_id=transaction_id,
                                error=str(exc) or type(exc).__name__)
                    return False
                return True

        sent = await asyncio.gather(*(one(s, t) for s, t in todo))
        return sum(sent)
