"""How a site's drivers really leave, learnt from its finished transactions (issue 12):
the engine weighs a kWh planned late by the chance the car is already gone
(smart_charging/departures.py). Learnt per site, and per driver (id token) where a driver
has `DRIVER_MIN_STAYS` stays of their own at the site, whose own habit then counts for
them. Learnt at most once a day on the CSMS's clock (a driver: when first seen that day),
so a plan costs no history query; with too little history the estimates stand as before.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import structlog

from csms.store import Store
from smart_charging.departures import DepartureModel, PastStay, learn_departures

log = structlog.get_logger()
DRIVER_MIN_STAYS = 10  # a driver's own stays before their habit replaces the site's


class DepartureHistory:
    def __init__(self, store: Store, site_id: str, station_ids: list[str], days: float
                 ) -> None:
        self.store = store
        self.site_id = site_id
        self.station_ids = station_ids
        self.days = days
        self._learnt_on: date | None = None
        self._model: DepartureModel | None = None
        self._drivers_on: date | None = None
        self._drivers: dict[str, DepartureModel | None] = {}

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

    async def drivers(self, now: datetime, tokens: set[str]) -> dict[str, DepartureModel]:
        """Per id token of `tokens` with enough stays of its own at the site, its model
        (learnt once a day per token)."""
        if self.days <= 0 or not self.station_ids or not tokens:
            return {}
        if self._drivers_on != now.date():
            self._drivers_on, self._drivers = now.date(), {}
        new = sorted(tokens - set(self._drivers))
        if new:
            found = await learnt_drivers(self.store, self.station_ids, now, self.days, new)
            self._drivers.update({t: found.get(t) for t in new})
            log.info("scheduler.driver_departures_learnt", site=self.site_id, asked=len(new),
                     learnt=sum(1 for t in new if found.get(t) is not None))
        return {t: m for t in tokens if (m := self._drivers.get(t)) is not None}


async def learnt_drivers(store: Store, station_ids: list[str], now: datetime, days: float,
                         tokens: list[str]) -> dict[str, DepartureModel]:
    """Per token with at least DRIVER_MIN_STAYS stays at these stations in the last
    `days`, its model; the scheduler's, and the flexibility forecast's."""
    if days <= 0 or not station_ids or not tokens:
        return {}
    rows = await store.transactions.past_stays_of(station_ids, now - timedelta(days=days),
                                                  tokens[:1000])
    stays: dict[str, list[PastStay]] = {}
    for token, a, e, d in rows:
        stays.setdefault(token, []).append(PastStay(a, e, d))
    out = {}
    for token, own in stays.items():
        model = learn_departures(own, min_sessions=DRIVER_MIN_STAYS)
        if model is not None:
            out[token] = model
    return out


async def learnt(store: Store, station_ids: list[str], now: datetime, days: float
                 ) -> DepartureModel | None:
    """The model from these stations' transactions that ended in the last `days` (None:
    off, no stations or too few stays); the scheduler's, and the flexibility forecast's
    so its baseline is the plan's."""
    if days <= 0 or not station_ids:
        return None
    rows = await store.transactions.past_stays(station_ids, now - timedelta(days=days))
    return learn_departures([PastStay(a, e, d) for a, e, d in rows])
