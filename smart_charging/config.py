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
  [[storage]] id, node, capacity_kwh, min_soc, max_soc, initial_soc (shares of capacity),
            max_charge_kw, max_discharge_kw, round_trip_efficiency | (charge_efficiency,
            discharge_efficiency), wear_per_kwh, export_allowed, meter_station_id,
            meter_evse_id (a station meter that reports its SoC)
  [[solar]] id, node, peak_kw, profile_kw = [...] (kW, local time, any resolution
            dividing a day) | shape = [...] (shares of peak_kw); neither: CLEAR_SKY
Tariff layout (config/tariffs/*.toml):
  id, currency, utc_offset, demand_charge_per_kw, [[bands]] name, start, end, price
"""

from __future__ import annotations

import math
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
    SiteEnergy,
    SolarForecast,
    StationaryBattery,
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


# --------------------------------------------------------------------------- storage, solar

# Bounds for a site file's storage and solar: wide enough for any real plant, tight enough
# that a typo (kWh for Wh, a percentage for a share) stops the start with the field named.
MAX_STORAGE_KWH = 100_000.0
MAX_PLANT_KW = 100_000.0
MIN_EFFICIENCY = 0.5  # below it the number is a typo, not a battery
MAX_WEAR_PER_KWH = 10.0  # currency per discharged kWh
# A clear day's output as shares of peak, by local hour from 00:00 (no latitude: sunrise
# 06:00, noon peak, sunset 18:00, sin^1.3). A site file's `shape` replaces it.
CLEAR_SKY: tuple[float, ...] = (
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.07, 0.29, 0.52, 0.74, 0.9, 0.99,
    0.99, 0.9, 0.74, 0.52, 0.29, 0.07, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
)
_STORAGE_KEYS = {
    "id", "node", "capacity_kwh", "min_soc", "max_soc", "initial_soc", "max_charge_kw",
    "max_discharge_kw", "round_trip_efficiency", "charge_efficiency", "discharge_efficiency",
    "wear_per_kwh", "export_allowed", "meter_station_id", "meter_evse_id",
}
_SOLAR_KEYS = {"id", "node", "peak_kw", "profile_kw", "shape"}


def _number(where: str, name: str, value: Any, lo: float, hi: float,
            lo_open: bool = False) -> float:
    """`value` as a float within [lo, hi] ((lo, hi] with `lo_open`), else a ValueError
    naming the section and the field."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{where}: {name} must be a number in {span}, got {value!r}")
    return float(value)


def _section_id(kind: str, d: dict[str, Any], k: int, keys: set[str]) -> str:
    """The entry's id, after refusing keys the layout does not have (a misspelt key would
    otherwise be ignored silently)."""
    ident = d.get("id")
    if not isinstance(ident, str) or not ident or len(ident) > 64:
        raise ValueError(f"[[{kind}]] #{k + 1}: id must be a string of 1 to 64 characters")
    unknown = set(d) - keys
    if unknown:
        raise ValueError(f"[[{kind}]] {ident}: unknown key(s) {', '.join(sorted(unknown))}")
    return ident


def storage_from_dict(d: dict[str, Any], k: int = 0) -> tuple[StationaryBattery,
                                                               tuple[str, int] | None]:
    """One `[[storage]]` entry: the engine's battery, and the meter reporting its SoC."""
    ident = _section_id("storage", d, k, _STORAGE_KEYS)
    where = f"[[storage]] {ident}"
    if not isinstance(d.get("node"), str):
        raise ValueError(f"{where}: node must name a node of the site")
    cap = _number(where, "capacity_kwh", d.get("capacity_kwh"), 0, MAX_STORAGE_KWH, True)
    lo = _number(where, "min_soc", d.get("min_soc", 0.0), 0, 1)
    hi = _number(where, "max_soc", d.get("max_soc", 1.0), 0, 1)
    if hi <= lo:
        raise ValueError(f"{where}: max_soc ({hi:g}) must be above min_soc ({lo:g})")
    now = _number(where, "initial_soc", d.get("initial_soc", lo), 0, 1)
    if "round_trip_efficiency" in d:
        if "charge_efficiency" in d or "discharge_efficiency" in d:
            raise ValueError(f"{where}: give round_trip_efficiency or charge_efficiency and "
                             "discharge_efficiency, not both")
        rt = _number(where, "round_trip_efficiency", d["round_trip_efficiency"],
                     MIN_EFFICIENCY ** 2, 1)
        eta_c = eta_d = math.sqrt(rt)  # the loss split evenly between the two ways
    else:
        eta_c = _number(where, "charge_efficiency", d.get("charge_efficiency", 0.95),
                        MIN_EFFICIENCY, 1)
        eta_d = _number(where, "discharge_efficiency", d.get("discharge_efficiency", 0.95),
                        MIN_EFFICIENCY, 1)
    wear = d.get("wear_per_kwh")
    meter: tuple[str, int] | None = None
    if "meter_station_id" in d:
        station = d["meter_station_id"]
        if not isinstance(station, str) or not 0 < len(station) <= 48:
            raise ValueError(f"{where}: meter_station_id must be a station id (1-48 chars)")
        meter = (station, int(_number(where, "meter_evse_id", d.get("meter_evse_id", 0),
                                      0, 1000)))
    elif "meter_evse_id" in d:
        raise ValueError(f"{where}: meter_evse_id without meter_station_id")
    export = d.get("export_allowed", False)
    if not isinstance(export, bool):
        raise ValueError(f"{where}: export_allowed must be true or false")
    return StationaryBattery(
        id=ident, node=d["node"], capacity_kwh=cap, energy_now_kwh=now * cap,
        max_charge_kw=_number(where, "max_charge_kw", d.get("max_charge_kw"), 0,
                              MAX_PLANT_KW, True),
        max_discharge_kw=_number(where, "max_discharge_kw", d.get("max_discharge_kw"), 0,
                                 MAX_PLANT_KW, True),
        min_kwh=lo * cap, max_kwh=hi * cap,
        wear_per_kwh=None if wear is None
        else _number(where, "wear_per_kwh", wear, 0, MAX_WEAR_PER_KWH),
        charge_efficiency=eta_c, discharge_efficiency=eta_d, export_allowed=export), meter


def solar_from_dict(d: dict[str, Any], utc_offset: timedelta, k: int = 0
                    ) -> tuple[SolarForecast, float]:
    """One `[[solar]]` entry: the engine's forecast (a typical day) and its peak (kW)."""
    ident = _section_id("solar", d, k, _SOLAR_KEYS)
    where = f"[[solar]] {ident}"
    if not isinstance(d.get("node"), str):
        raise ValueError(f"{where}: node must name a node of the site")
    peak = _number(where, "peak_kw", d.get("peak_kw"), 0, MAX_PLANT_KW, True)
    if "profile_kw" in d and "shape" in d:
        raise ValueError(f"{where}: give profile_kw or shape, not both")
    name, raw, top = ("profile_kw", d["profile_kw"], peak) if "profile_kw" in d \
        else ("shape", d.get("shape", CLEAR_SKY), 1.0)
    if not isinstance(raw, list | tuple) or not raw or (24 * 60) % len(raw):
        raise ValueError(f"{where}: {name} needs a list of values whose count divides a day "
                         "(24 for hourly, 96 for 15 minutes)")
    values = [_number(where, f"{name}[{i}]", v, 0, top) for i, v in enumerate(raw)]
    if name == "shape":
        values = [v * peak for v in values]
    return SolarForecast(ident, d["node"], DailyProfile(tuple(values), utc_offset)), peak


def energy_from_dict(d: dict[str, Any], site: Site) -> SiteEnergy:
    """The `[[storage]]` and `[[solar]]` sections of a parsed site dict, checked against
    the site's nodes (layout in this module's docstring)."""
    offset = parse_offset(str(d.get("site", {}).get("utc_offset", "Z")))
    nodes = {n.id for n in site.nodes}
    batteries, meters = [], {}
    for k, entry in enumerate(d.get("storage", [])):
        battery, meter = storage_from_dict(entry, k)
        batteries.append(battery)
        if meter is not None:
            meters[battery.id] = meter
    plants, peaks = [], {}
    for k, entry in enumerate(d.get("solar", [])):
        plant, peak = solar_from_dict(entry, offset, k)
        plants.append(plant)
        peaks[plant.id] = peak
    for kind, items in (("storage", batteries), ("solar", plants)):
        seen: set[str] = set()
        for item in items:
            if item.node not in nodes:
                raise ValueError(f"[[{kind}]] {item.id}: unknown node {item.node!r} "
                                 f"(the site has {', '.join(sorted(nodes))})")
            if item.id in seen:
                raise ValueError(f"[[{kind}]] {item.id}: two entries with this id")
            seen.add(item.id)
    return SiteEnergy(tuple(batteries), tuple(plants), peaks, meters)
