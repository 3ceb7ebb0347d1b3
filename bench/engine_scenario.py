"""Synthetic residential scenarios for the engine benchmarks (deterministic, seeded).

The 120-charger community of config/sites/residential.toml, scaled to any number of
chargers by scaling the transformer and household load with it.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from smart_charging import Prices, Session, Site, prices_from_dict, site_from_dict
from smart_charging.model import DailyProfile

ROOT = Path(__file__).resolve().parents[1]
CST = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 23, tzinfo=CST)


def residential_site(chargers: int = 120) -> Site:
    with open(ROOT / "config/sites/residential.toml", "rb") as f:
        raw = tomllib.load(f)
    base = len(raw["evse_groups"][0:1]) and raw["evse_groups"][0]["count"]
    scale = chargers / base
    raw["evse_groups"][0]["count"] = chargers
    site = site_from_dict(raw)
    root = site.root
    load = root.load_kw
    assert isinstance(load, DailyProfile)
    root = replace(
        root,
        limit_kw=root.limit_kw * scale,
        phase_limit_a=root.phase_limit_a * scale,
        rating_kva=root.rating_kva * scale,
        load_kw=replace(load, values=tuple(v * scale for v in load.values)),
    )
    return replace(site, nodes=(root,))


def jiangsu_prices() -> Prices:
    with open(ROOT / "config/tariffs/cn-jiangsu-residential-ev-2024.toml", "rb") as f:
        return prices_from_dict(tomllib.load(f))


def evening_sessions(site: Site, seed: int = 1, day: datetime = DAY) -> list[Session]:
    """One car per charger: arrive 17:00-21:00, leave 07:00-09:00, want 8-20 kWh."""
    rng = np.random.default_rng(seed)
    out = []
    for i, e in enumerate(site.evses):
        arr = day.replace(hour=17) + timedelta(minutes=float(rng.uniform(0, 240)))
        dep = day.replace(hour=7) + timedelta(days=1, minutes=float(rng.uniform(0, 120)))
        out.append(Session(f"s{i:05d}", e.id, arr, dep, float(rng.uniform(8, 20)),
                           transaction_id=f"tx-{i:05d}"))
    return out
