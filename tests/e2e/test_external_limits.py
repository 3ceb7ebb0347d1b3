"""K11-K14 and the scheduler: a limit an external system puts on a station (reported with
NotifyChargingLimit) caps what the CSMS plans for it until it is cleared, and the site
re-plans at once on both. Same site and clock as tests/e2e/test_scheduler.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from csms.config import Config
from csms.scheduling.limits import external_caps_w
from csms.store.charging import ExternalLimit
from simulators.station import external_limits
from tests.e2e.test_scheduler import SITE, local, site_run
from tests.support import eventually


async def _plan(run, plan_id: int):  # type: ignore[no-untyped-def]
    plans = await run.csms.store.plans.list(SITE.id, limit=10_000)
    return next(p for p in plans if p.id == plan_id)


def _planned_kw(plan, station_id: str) -> tuple[float | None, float]:  # type: ignore[no-untyped-def]
    """(the car_max the plan used, the most it planned) for the station's EVSE."""
    summary = next(s for s in plan.inputs["sessions"] if s["station_id"] == station_id)
    setpoints = plan.schedule[summary["evse_id"]]["setpoints"]
    return summary["car_max_kw"], max(w for _, _, w in setpoints) / 1000.0


async def test_K12_K13_an_external_limit_caps_the_plan_until_it_is_cleared(
    config: Config,
) -> None:
    stations = ["TS001", "TS002"]
    async with site_run(config, local(17, 55), stations, interval_s=3600) as run:
        cars = [asyncio.ensure_future(run.car(sid, local(18, 0), local(22, 0), 30.0))
                for sid in stations]
        await run.until(local(18, 0))

        async def charging() -> bool:  # the machine may be slow: 1 s is 10 minutes here
            return len(await run.csms.store.transactions.list(active=True)) == 2

        await eventually(charging, timeout=20.0)
        for tx in await run.csms.store.transactions.list(active=True):  # both charge now
            await run.csms.store.transactions.set_driver_needs(
                tx.station_id, tx.transaction_id, departure_time=None, energy_wanted_wh=None,
                charge_now=True, now=run.clock.now())
        assert run.csms.scheduler is not None
        site = run.csms.scheduler.sites[SITE.id]
        before = await _plan(run, await site.plan_once("test"))

        async def planned_after(reason: str):  # type: ignore[no-untyped-def]
            plans = await run.csms.store.plans.list(SITE.id, limit=10_000)
            return next((p for p in plans if reason in p.trigger), None)

        run.stations["TS001"].device_model.put(
            "SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", "true")
        # the EMS limits TS001 to 10 A (2.3 kW on one phase): the site re-plans at once
        await external_limits.notify(run.stations["TS001"], "EMS", 10.0, "A")
        limited = await eventually(lambda: planned_after("external limit set"))
        await external_limits.clear(run.stations["TS001"], "EMS")
        cleared = await eventually(lambda: planned_after("external limit cleared"))
        for car in cars:
            car.cancel()
        await asyncio.gather(*cars, return_exceptions=True)

    assert _planned_kw(before, "TS001")[1] > 7.0  # two cars charging now share ~20 kW
    car_max, most = _planned_kw(limited, "TS001")
    assert car_max == 2.3 and most <= 2.3 + 0.05
    car_max, most = _planned_kw(cleared, "TS001")
    assert car_max is None and most > 7.0


def test_K11_a_station_wide_limit_is_shared_by_its_evses_and_ends_with_its_schedule() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    station = SITE.evses[0].station_id
    schedule = {"id": 1, "chargingRateUnit": "W", "duration": 1800,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6000.0},
                                           {"startPeriod": 600, "limit": 3000.0}]}
    limit = ExternalLimit(station, 0, "SO", True, [schedule], now)
    caps = external_caps_w([limit], SITE, now, now + timedelta(hours=1))
    own = [e.id for e in SITE.evses if e.station_id == station]
    assert caps == {e: 3000.0 / len(own) for e in own}  # its lowest value, shared
    # once its schedule is over it caps nothing; a limit without a schedule caps nothing
    later = now + timedelta(hours=1)
    assert external_caps_w([limit], SITE, later, later + timedelta(hours=1)) == {}
    empty = ExternalLimit(station, 0, "EMS", None, [], now)
    assert external_caps_w([empty], SITE, now, now + timedelta(hours=1)) == {}
