"""The scheduler learns how a site's drivers really leave from its stored transactions
(csms/scheduling/departures.py), once a day, and plans on the estimates without history."""

from __future__ import annotations

from datetime import timedelta

from csms.app import Csms
from csms.scheduling.departures import DRIVER_MIN_STAYS, DepartureHistory


async def _stay(csms: Csms, station: str, n: int, hours_given: float, hours_real: float,
                ago_days: float, token: str | None = None) -> None:
    end = csms.clock.now() - timedelta(days=ago_days)
    start = end - timedelta(hours=hours_real)
    await csms.store.pool.execute(
        "INSERT INTO transactions (station_id, transaction_id, started_at, ended_at,"
        " departure_time, updated_at, id_token) VALUES ($1, $2, $3, $4, $5, $4, $6)",
        station, f"T{n}", start, end, start + timedelta(hours=hours_given), token)


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


async def test_a_driver_with_enough_stays_of_their_own_is_learnt_apart(csms: Csms) -> None:
    """Too few stays at the site for a site model (30), but one driver has enough of their
    own: that driver leaves at 40% of what they say, and is planned so."""
    now = csms.clock.now()
    for sid in ("S1", "S2"):
        await csms.store.stations.add(sid, None, now)
    history = DepartureHistory(csms.store, "street", ["S1", "S2"], days=60)
    for n in range(DRIVER_MIN_STAYS):
        await _stay(csms, "S1" if n % 2 else "S2", n, 10.0, 4.0, ago_days=1 + n % 7,
                    token="EARLY")
    for n in range(100, 100 + DRIVER_MIN_STAYS - 1):
        await _stay(csms, "S1", n, 10.0, 10.0, ago_days=2, token="FEW")
    assert await history.model(now) is None  # 19 stays at the site: too few
    own = await history.drivers(now, {"EARLY", "FEW", "NEW"})
    assert set(own) == {"EARLY"}
    assert own["EARLY"].sessions == DRIVER_MIN_STAYS
    assert min(own["EARLY"].stay_ratios) == max(own["EARLY"].stay_ratios) == 0.4
    await _stay(csms, "S1", 200, 10.0, 10.0, ago_days=1, token="FEW")  # now enough ...
    assert set(await history.drivers(now, {"FEW"})) == set()  # ... but learnt once a day
    assert set(await history.drivers(now + timedelta(days=1), {"FEW"})) == {"FEW"}
    assert await DepartureHistory(csms.store, "street", ["S1"], days=0).drivers(
        now, {"EARLY"}) == {}
