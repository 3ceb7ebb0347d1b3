"""How a site's drivers really leave, learnt from its finished transactions (issue 12):
the engine weighs a kWh planned late by the chance the car is already gone
(smart_charging/departures.py). Learnt at most once a day on the CSMS's clock, so a plan
costs no history query; a site with too little history plans on the estimates as before.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import structlog

from csms.store import Store
from smart_charging.departures import DepartureModel, PastStay, learn_departures

log = structlog.get_logger()


class DepartureHistory:
    def __init__(self, store: Store, site_id: str, station_ids: list[str], days: float
                 ) -> None:
        self.store = store
        self.site_id = site_id
        self.station_ids = station_ids
        self.days = days
        self._learnt_on: date | None = None
        self._model: DepartureModel | None = None

    async def model(self, now: datetime) -> DepartureModel | None:
        """The model learnt today (learning it first if not yet), None if off or too few
        past stays."""
        if self.days <= 0 or not self.station_ids:
            return None
        if self._learnt_on == now.date():
            return self._model
        self._model = await learnt(self.store, self.station_ids, now, self.days)
        self._learnt_on = now.date()
        log.info("scheduler.departures_learnt", site=self.site_id,
                 used=self._model.sessions if self._model else 0,
                 median_ratio=None if self._model is None else
                 round(self._model.stay_ratios[len(self._model.stay_ratios) // 2], 3))
        return self._model


async def learnt(store: Store, station_ids: list[str], now: datetime, days: float
                 ) -> DepartureModel | None:
    """The model from these stations' transactions that ended in the last `days` (None:
    off, no stations or too few stays); the scheduler's, and the flexibility forecast's
    so its baseline is the plan's."""
    if days <= 0 or not station_ids:
        return None
    rows = await store.transactions.past_stays(station_ids, now - timedelta(days=days))
    return learn_departures([PastStay(a, e, d) for a, e, d in rows])
