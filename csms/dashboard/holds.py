"""Why the plan holds a car back, in words, from what the stored plan already says.

An operator sees every car at 0 kW from 21:00 to 22:00 and wants to know why before they
call anyone. The stored plan (csms/scheduler.py's record) has, per slot, the site limit,
the household load, the capacity reserved for chargers it cannot steer and the planned EV
power, and per EVSE its setpoints; the site's tariff gives the price per slot and the grid
events say who lowered a limit. A hold is a run of slots at (about) 0 kW before the car's
last planned charging, and its reason is the first of these that fits:

1. a limit is full: a node above the EVSE (the transformer, a feeder) has no headroom
   left in those slots, named by the grid event that lowered it if there is one;
2. a target grid event asks the site for less;
3. the price: energy is cheaper when the car starts charging ("the price valley starts at
   22:00");
4. otherwise the plan simply still has time to deliver before the departure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from csms.dashboard.i18n import _
from csms.store.grid import GridEvent
from smart_charging.model import Site, sample

HELD_KW = 0.05  # a setpoint below this is a hold
FULL_KW = 0.5  # a limit with less headroom than this left is full


@dataclass(frozen=True)
class Hold:
    start: datetime
    end: datetime
    text: str  # a catalogue message with %(name)s fields, filled from args once translated
    args: dict[str, Any]


def slots(inputs: dict[str, Any]) -> tuple[list[datetime], list[datetime]]:
    starts = [datetime.fromisoformat(t) for t in inputs.get("slot_starts", [])]
    step = starts[-1] - starts[-2] if len(starts) > 1 else timedelta(minutes=15)
    return starts, [*starts[1:], starts[-1] + step] if starts else []


def power_kw(setpoints: list[list[float]], starts: list[datetime]) -> np.ndarray:
    """An EVSE's planned kW per slot from its stored [[offset s, A, W], ...]."""
    out = np.zeros(len(starts))
    if not starts:
        return out
    for i, t in enumerate(starts):
        offset = (t - starts[0]).total_seconds()
        held = [w for off, _a, w in setpoints if off <= offset]
        out[i] = held[-1] / 1000.0 if held else 0.0
    return out


def _series(inputs: dict[str, Any], name: str, n: int) -> np.ndarray:
    values = inputs.get(name) or []
    return np.array([np.inf if v is None else float(v) for v in values][:n]
                    + [0.0] * max(0, n - len(values)))


def explain(site: Site, inputs: dict[str, Any], schedule: dict[str, Any],
            prices: np.ndarray | None, events: list[GridEvent], now: datetime,
            zone: timezone, currency: str = "") -> dict[str, list[Hold]]:
    """Each planned EVSE's holds that have not ended by `now`, with their reason. `site`
    carries the node limits in force (static overrides and limit events applied)."""
    starts, ends = slots(inputs)
    n = len(starts)
    if n == 0:
        return {}
    power = {evse_id: power_kw(entry.get("setpoints") or [], starts)
             for evse_id, entry in schedule.items()}
    root = site.root.id
    headroom = {root: _series(inputs, "limit_kw", n) - _series(inputs, "household_kw", n)
                - _series(inputs, "reserved_kw", n) - _series(inputs, "planned_ev_kw", n)}
    for node in site.nodes:  # below the root, as the stored plan does not list them
        if node.id == root:
            continue
        limit = node.limit_over(starts, ends)
        if not np.isfinite(limit).any():
            continue
        under = [e.id for e in site.evses if node.id in site.path_to_root(e.node)]
        ev = sum((power[e] for e in under if e in power), np.zeros(n))
        headroom[node.id] = limit - sample(node.load_kw, starts, ends, "max", 0.0) - ev
    out: dict[str, list[Hold]] = {}
    for evse_id, kw in power.items():
        try:
            path = site.path_to_root(site.evse(evse_id).node)
        except KeyError:
            continue
        charging = np.flatnonzero(kw >= HELD_KW)
        if not len(charging) or (schedule[evse_id].get("energy_needed_kwh") or 0) <= 0:
            continue
        holds = []
        i = 0
        while i < charging[-1]:
            if kw[i] >= HELD_KW:
                i += 1
                continue
            j = i
            while kw[j] < HELD_KW:
                j += 1
            if ends[j - 1] > now:
                text, args = _reason(range(i, j), j, path, headroom, starts, ends, prices,
                                     events, zone, currency)
                holds.append(Hold(starts[i], ends[j - 1], text, args))
            i = j
        if holds:
            out[evse_id] = holds
    return out


def _reason(held: range, resumes: int, path: list[str], headroom: dict[str, np.ndarray],
            starts: list[datetime], ends: list[datetime], prices: np.ndarray | None,
            events: list[GridEvent], zone: timezone,
            currency: str) -> tuple[str, dict[str, Any]]:
    a, b = starts[held.start], ends[held.stop - 1]
    for node in path:  # the nearest full limit
        room = headroom.get(node)
        if room is None or not all(room[t] < FULL_KW for t in held):
            continue
        event = next((e for e in events if e.kind == "limit" and e.node == node
                      and e.start < b and a < e.effective_end), None)
        if event is not None:
            return (_("the limit of grid event #%(id)s is full (%(kw)s kW on %(node)s)"),
                    {"id": event.id, "kw": f"{event.kw:.1f}", "node": node})
        return _("limited by the %(node)s limit: no headroom left"), {"node": node}
    target = next((e for e in events if e.kind == "target" and e.start < b
                   and a < e.effective_end), None)
    if target is not None:
        return (_("grid event #%(id)s asks the site for %(kw)s kW"),
                {"id": target.id, "kw": f"{target.kw:.1f}"})
    if prices is not None and len(prices) > resumes \
            and float(np.min(prices[held.start:held.stop])) > float(prices[resumes]) + 1e-9:
        return (_("the price valley starts at %(at)s (%(was)s → %(then)s %(currency)s/kWh)"),
                {"at": starts[resumes].astimezone(zone).strftime("%H:%M"),
                 "was": f"{float(prices[held.start]):.4g}",
                 "then": f"{float(prices[resumes]):.4g}", "currency": currency})
    return _("the plan can still deliver what the car needs in time"), {}
