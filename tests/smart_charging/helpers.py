"""Scenario builders and an independent limit checker for the engine's tests."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from smart_charging import Plan, Prices, Session, Site, prices_from_dict, site_from_dict
from smart_charging.model import PHASES, sample

ROOT = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))


def residential_site() -> Site:
    with open(ROOT / "config/sites/residential.toml", "rb") as f:
        return site_from_dict(tomllib.load(f))


def jiangsu_prices() -> Prices:
    with open(ROOT / "config/tariffs/cn-jiangsu-residential-ev-2024.toml", "rb") as f:
        return prices_from_dict(tomllib.load(f))


def evening_sessions(site: Site, day: datetime, seed: int = 7,
                     energy: tuple[float, float] = (8.0, 20.0)) -> list[Session]:
    """One car per EVSE: arrive 17:00-21:00, leave 07:00-09:00 next day (domain.md)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, e in enumerate(site.evses):
        arr = day.replace(hour=17) + timedelta(minutes=float(rng.uniform(0, 240)))
        dep = day.replace(hour=7) + timedelta(days=1, minutes=float(rng.uniform(0, 120)))
        out.append(Session(f"s{i:03d}", e.id, arr, dep, float(rng.uniform(*energy)),
                           transaction_id=f"tx-{i:03d}"))
    return out


def check_limits(site: Site, plan: Plan) -> float:
    """Worst excess over any node kW limit, phase current limit or EVSE maximum.

    Recomputed from the site and the setpoints, not from the plan's own totals, so a
    bookkeeping bug in the engine cannot hide here.
    """
    evse = {e.id: e for e in site.evses}
    worst = 0.0
    power = plan.power_w / 1000.0
    for i, eid in enumerate(plan.evse_ids):
        e = evse[eid]
        worst = max(worst, float(np.max(power[i] - e.max_kw, initial=0.0)))
        if e.is_ac:
            on = power[i] > 0
            below_min = on & (plan.current_a[i] < e.min_current_a - 1e-9)
            assert not below_min.any(), f"{eid} set between 0 and its minimum"
    for n in site.nodes:
        members = [i for i, eid in enumerate(plan.evse_ids)
                   if n.id in site.path_to_root(evse[eid].node)]
        load = sample(n.load_kw, plan.slot_starts, plan.slot_ends, "max", 0.0)
        lim = n.limit_over(plan.slot_starts, plan.slot_ends)
        ev = power[members].sum(axis=0)
        worst = max(worst, float(np.max(load + ev - np.maximum(lim, load), initial=0.0)))
        if n.phase_limit_a is not None:
            for p in PHASES:
                household = load * 1000 / (3 * n.voltage_ln_v)
                amps = household.copy()
                for i in members:
                    amps = amps + power[i] * evse[plan.evse_ids[i]].phase_amps_per_kw(p)
                cap = np.maximum(n.phase_limit_a, household)
                worst = max(worst, float(np.max(amps - cap, initial=0.0)))
    return worst


def energy_by_departure(plan: Plan, sessions: Sequence[Session]) -> dict[str, float]:
    """Energy each session gets from the plan (kWh), counting only while plugged in."""
    out = {}
    for i, sid in enumerate(plan.session_ids):
        s = next(x for x in sessions if x.id == sid)
        total = 0.0
        for t, (a, b) in enumerate(zip(plan.slot_starts, plan.slot_ends, strict=True)):
            lo, hi = max(a, s.arrival), min(b, s.departure)
            if hi > lo:
                total += plan.power_w[i, t] / 1000 * (hi - lo).total_seconds() / 3600
        out[sid] = total
    return out


def at(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute)


DAY = datetime(2026, 11, 23, tzinfo=CST)
