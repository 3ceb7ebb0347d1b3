"""Build a Site and Prices from already-loaded config dicts (the caller reads the TOML).

Site layout (see config/sites/residential.toml):
  [site] id, utc_offset "+08:00", default_departure "07:30", default_energy_kwh, tariff
  [[nodes]] id, parent, kind, limit_kw | (rating_kva, loading_factor, power_factor),
            phase_limit_a, primary_limit_a, voltage_ln_v, load_kw_daily = [...] (local
            time, any resolution dividing a day), [[nodes.timed_limits]] start, end,
            limit_kw
  [[evses]] id, node, station_id, ocpp_evse_id, wiring, phases, voltage_v, min/max_current_a,
            max_power_kw, rate_unit, v2g (bidirectional), max_discharge_kw
  [[evse_groups]] the same fields plus count, id_prefix and phases = "rotate" to spread
            single-phase EVSEs over L1, L2, L3 in turn (one station per EVSE)
  [carbon] kg_per_kwh_daily = [...] (grid emission factors, local time, any resolution
            dividing a day), weight_per_kg (currency per kgCO2 the plan weighs beside
            price; default 0: reported, not optimised)
Tariff layout (config/tariffs/*.toml):
  id, currency, utc_offset, demand_charge_per_kw, [[bands]] name, start, end, price
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from smart_charging.model import (
    PHASES,
    Carbon,
    DailyProfile,
    Evse,
    Node,
    Prices,
    Site,
    TimedLimit,
    TouBand,
    Wiring,
)


def parse_offset(text: str) -> timedelta:
    """'+08:00' -> 8 h; 'Z' or '' -> 0."""
    if text in ("", "Z", "z"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    hh, mm = text.lstrip("+-").split(":")
    return sign * timedelta(hours=int(hh), minutes=int(mm))


def _time(text: str) -> time:
    hh, mm = text.split(":")
    return time(int(hh) % 24, int(mm))


def _datetime(value: Any) -> datetime:
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"{value}: times in config need an offset")
    return ts


def node_from_dict(d: dict[str, Any], utc_offset: timedelta) -> Node:
    limit_kw = d.get("limit_kw")
    rating = d.get("rating_kva")
    voltage = float(d.get("voltage_ln_v", 230.0))
    phase_limit = d.get("phase_limit_a")
    if rating is not None:
        lf = float(d.get("loading_factor", 1.0))
        pf = float(d.get("power_factor", 1.0))
        from_rating = float(rating) * lf * pf
        limit_kw = from_rating if limit_kw is None else min(float(limit_kw), from_rating)
        if phase_limit is None:  # rated current per phase, derated like the power
            phase_limit = float(rating) * 1000.0 / (3 * voltage) * lf
    load = d.get("load_kw_daily")
    return Node(
        id=str(d["id"]),
        parent=d.get("parent"),
        limit_kw=None if limit_kw is None else float(limit_kw),
        phase_limit_a=None if phase_limit is None else float(phase_limit),
        voltage_ln_v=voltage,
        load_kw=None if load is None else DailyProfile(tuple(float(v) for v in load), utc_offset),
        timed_limits=tuple(
            TimedLimit(_datetime(t["start"]), _datetime(t["end"]), float(t["limit_kw"]))
            for t in d.get("timed_limits", [])
        ),
        kind=str(d.get("kind", "node")),
        rating_kva=None if rating is None else float(rating),
        primary_limit_a=None if d.get("primary_limit_a") is None
        else float(d["primary_limit_a"]),
    )


def evse_from_dict(d: dict[str, Any]) -> Evse:
    phases = d.get("phases", ["L1"])
    return Evse(
        id=str(d["id"]),
        node=str(d["node"]),
        station_id=str(d.get("station_id", d["id"])),
        ocpp_evse_id=int(d.get("ocpp_evse_id", 1)),
        wiring=Wiring(d.get("wiring", "wye")),
        phases=tuple(phases) if not isinstance(phases, str) else (phases,),
        voltage_v=float(d.get("voltage_v", 230.0)),
        min_current_a=float(d.get("min_current_a", 6.0)),
        max_current_a=float(d.get("max_current_a", 32.0)),
        min_power_kw=float(d.get("min_power_kw", 0.0)),
        max_power_kw=None if d.get("max_power_kw") is None else float(d["max_power_kw"]),
        rate_unit=str(d.get("rate_unit", "A")),
        v2g=bool(d.get("v2g", False)),
        current_step_a=None if d.get("current_step_a") is None else float(d["current_step_a"]),
        max_discharge_kw=None if d.get("max_discharge_kw") is None
        else float(d["max_discharge_kw"]),
    )


def _expand_group(g: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    prefix = str(g.get("id_prefix", "evse-"))
    for i in range(int(g["count"])):
        d = {k: v for k, v in g.items() if k not in ("count", "id_prefix")}
        d["id"] = f"{prefix}{i + 1:03d}"
        d.setdefault("station_id", d["id"])
        if g.get("phases") == "rotate":
            d["phases"] = [PHASES[i % 3]]
        out.append(d)
    return out


def site_from_dict(d: dict[str, Any]) -> Site:
    """A Site from a parsed site config dict (layout in this module's docstring)."""
    meta = d.get("site", {})
    offset = parse_offset(str(meta.get("utc_offset", "Z")))
    nodes = tuple(node_from_dict(n, offset) for n in d.get("nodes", []))
    raw = list(d.get("evses", []))
    for g in d.get("evse_groups", []):
        raw.extend(_expand_group(g))
    return Site(
        id=str(meta.get("id", "site")),
        nodes=nodes,
        evses=tuple(evse_from_dict(e) for e in raw),
        utc_offset=offset,
        default_departure=_time(str(meta.get("default_departure", "07:30"))),
        default_energy_kwh=float(meta.get("default_energy_kwh", 15.0)),
    )


def prices_from_dict(d: dict[str, Any]) -> Prices:
    """Prices from a parsed tariff dict (TOU bands in local time)."""
    return Prices(
        bands=tuple(TouBand(str(b["name"]), _time(str(b["start"])), _time(str(b["end"])),
                            float(b["price"])) for b in d.get("bands", [])),
        utc_offset=parse_offset(str(d.get("utc_offset", "Z"))),
        demand_charge_per_kw=float(d.get("demand_charge_per_kw", 0.0)),
        currency=str(d.get("currency", "CNY")),
        flat_price=float(d.get("flat_price", 0.0)),
    )


def carbon_from_dict(d: dict[str, Any]) -> Carbon:
    """The `[carbon]` section of a parsed site dict (layout in this module's docstring)."""
    section = d.get("carbon", {})
    unknown = set(section) - {"kg_per_kwh_daily", "weight_per_kg"}
    if unknown:
        raise ValueError(f"unknown key(s) in [carbon]: {', '.join(sorted(unknown))}")
    offset = parse_offset(str(d.get("site", {}).get("utc_offset", "Z")))
    daily = section.get("kg_per_kwh_daily")
    return Carbon(
        factors=None if daily is None else DailyProfile(tuple(float(v) for v in daily), offset),
        weight_per_kg=float(section.get("weight_per_kg", 0.0)))
