"""The scheduler learns how a site's drivers really leave from its stored transactions
(csms/scheduling/departures.py), once a day, and plans on the estimates without history."""

from __future__ import annotations

from datetime import timedelta

from csms.app import Csms
from csms.scheduling.departures import DepartureHistory


async def _stay(csms: Csms, station: str, n: int, hours_given: float, hours_real: float,
                ago_days: float) -> None:
    end = csms.clock.now() - timedelta(days=ago_days)
    start = end - timedelta(hours=hours_real)
    await csms.store.pool.execute(
        "INSERT INTO transactions (station_id, transaction_id, started_at, ended_at,"
        " departure_time, updated_at) VALUES ($1, $2, $3, $4, $5, $4)",
        station, f"T{n}", start, end, start + timedelta(hours=hours_given))


async def test_drivers_who_leave_at_half_their_estimate_are_learnt(csms: Csms) -> None:
    now = csms.clock.now()
    for sid in ("S1", "S2", "OTHER"):
        await csms.store.stations.add(sid, None, now)
    history = DepartureHistory(csms.store, "street", ["S1", "S2"], days=60)
    for n in range(20):
        await _stay(csms, "S1" if n % 2 else "S2", n, 8.0, 4.0, ago_days=1 + n % 5)
    assert await history.model(now) is None  # 20 stays: too few, the estimates stand
    for n in range(20, 40):
        await _stay(csms, "S1", n, 8.0, 4.0, ago_days=2)
        await _stay(csms, "OTHER", n, 8.0, 16.0, ago_days=2)  # another site's station
    await _stay(csms, "S2", 99, 8.0, 1.0, ago_days=90)  # older than the 60 days
    assert await history.model(now) is None  # learnt today already: not asked again
    model = await history.model(now + timedelta(days=1))
    assert model is not None and model.sessions == 40
    assert min(model.stay_ratios) == max(model.stay_ratios) == 0.5
    assert await DepartureHistory(csms.store, "street", ["S1"], days=0).model(now) is None
