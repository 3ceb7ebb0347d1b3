"""What a charging profile lets an EVSE draw, and when a new one must be sent.

Decisions only, no I/O, no clock (time is passed in), so each rule is testable alone:
`Limit` is a profile as W over time; `compare` decides whether a new profile must be sent
(a material change soon), `falls_short` when a small increase must go anyway,
`needed_decreases` which small decreases the site needs so that what every EVSE holds
stays under every limit; `default_shares` gives each EVSE its equal share of the lowest
headroom of the day (the TxDefaultProfile that keeps a site safe without the CSMS).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from smart_charging import Evse, Site
from smart_charging.model import PHASES, sample

FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)


def ocpp_time(ts: datetime) -> str:
    """UTC, whole seconds, with a Z: the form OCPP times and stored plans use."""
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Limit:
    """What an EVSE may draw, in W: `watts[i]` from `starts[i]` to the next start (the last
    one until `end`, or for ever when `end` is None), and `outside` before and after."""

    starts: tuple[datetime, ...]
    watts: tuple[float, ...]
    end: datetime | None = None
    outside: float = math.inf

    @classmethod
    def constant(cls, watts: float) -> Limit:
        return cls((FAR_PAST,), (float(watts),))

    def at(self, t: datetime) -> float:
        if t < self.starts[0] or (self.end is not None and t >= self.end):
            return self.outside
        return self.watts[bisect.bisect_right(self.starts, t) - 1]

    def then(self, fallback: float) -> Limit:
        """The same limit, with `fallback` where it does not apply."""
        return replace(self, outside=fallback)

    def capped(self, watts: float) -> Limit:
        return Limit(self.starts, tuple(min(w, watts) for w in self.watts), self.end,
                     min(self.outside, watts))

    def breakpoints(self) -> list[datetime]:
        return [*self.starts, *([self.end] if self.end is not None else [])]

    def peak(self, start: datetime, end: datetime) -> float:
        points = [start, *(t for t in self.breakpoints() if start < t < end)]
        return max(self.at(t) for t in points)


def watts_per_unit(evse: Evse, number_phases: int | None) -> float:
    """W per A of a profile limit on this EVSE (a wye EVSE on fewer phases draws less)."""
    if not evse.is_ac:
        return math.nan
    per_amp = evse.kw_per_amp * 1000.0
    if number_phases and evse.wiring.value == "wye":
        per_amp *= min(number_phases, len(evse.phases)) / len(evse.phases)
    return per_amp


# OCPP 2.1 operation modes in which a period's `setpoint` is what the EVSE does
SETPOINT_MODES = frozenset({"CentralSetpoint", "ExternalSetpoint"})


def period_value(period: Mapping[str, Any]) -> float:
    """What a charging schedule period lets the EVSE draw, signed: its `setpoint` in a
    2.1 setpoint mode (negative: it feeds back), else its `limit`; a 2.1 period with
    neither (a mode that needs no limit) limits nothing."""
    if period.get("operationMode") in SETPOINT_MODES and period.get("setpoint") is not None:
        return float(period["setpoint"])
    limit = period.get("limit")
    return math.inf if limit is None else float(limit)


def profile_limit(profile: Mapping[str, Any], evse: Evse, start: datetime) -> Limit:
    """A chargingProfile (as sent) as a Limit in W. `start` anchors a Relative profile."""
    schedule = profile["chargingSchedule"][0]
    if schedule.get("startSchedule"):
        start = datetime.fromisoformat(schedule["startSchedule"].replace("Z", "+00:00"))
    unit = schedule["chargingRateUnit"]
    starts, watts = [], []
    for period in schedule["chargingSchedulePeriod"]:
        factor = 1.0 if unit == "W" else watts_per_unit(evse, period.get("numberPhases"))
        starts.append(start + timedelta(seconds=period["startPeriod"]))
        watts.append(period_value(period) * factor)
    duration = schedule.get("duration")
    end = start + timedelta(seconds=duration) if duration is not None else None
    return Limit(tuple(starts), tuple(watts), end)


def external_caps_w(limits: Sequence[Any], site: Site, now: datetime, until: datetime
                    ) -> dict[str, float]:
    """The most each site EVSE may draw under the external limits in force (K11-K14: a
    station's NotifyChargingLimit; `limits` have station_id, evse_id, schedules and
    notified_at): the lowest value each schedule takes in [now, until). A station-wide
    limit (evse 0) is shared equally by the station's EVSEs on the site, so together they
    stay under it. A limit without a schedule, or in A on a DC EVSE, caps nothing."""
    by_station: dict[str, list[Evse]] = {}
    for evse in site.evses:
        by_station.setdefault(evse.station_id, []).append(evse)
    caps: dict[str, float] = {}
    for limit in limits:
        evses = by_station.get(limit.station_id, [])
        targets = evses if limit.evse_id == 0 else [
            e for e in evses if e.ocpp_evse_id == limit.evse_id]
        if not targets:
            continue
        for schedule in limit.schedules:
            held = profile_limit({"chargingSchedule": [schedule]}, targets[0],
                                 limit.notified_at)
            points = [now, *(t for t in held.breakpoints() if now < t < until)]
            lowest = min(held.at(t) for t in points)
            if math.isnan(lowest) or math.isinf(lowest):
                continue
            share = max(0.0, lowest) / len(targets)
            for evse in targets:
                caps[evse.id] = min(caps.get(evse.id, math.inf), share)
    return caps


SETTLE = timedelta(seconds=60)  # how long a round of sends may take


@dataclass(frozen=True)
class Change:
    send: bool
    raises_now: bool  # allows more right away: sent after every other profile
    why: str
    lower: bool = False  # allows less somewhere: `needed_decreases` decides if it goes


def compare(current: Limit, new: Limit, now: datetime, *, material_w: float,
            lookahead: timedelta) -> Change:
    """Must `new` replace what the EVSE holds now (`current`, fallbacks included)?

    Sent when what the station would do changes materially: `new` allows more, or less,
    by over `material_w` somewhere within `lookahead`. A smaller decrease (or one further
    ahead) is marked `lower` and left to `needed_decreases`, which sends it only if the
    site needs it to stay under a limit with what every EVSE holds. A smaller increase
    waits: the lower limit the EVSE holds is safe, only less useful.
    """
    end = new.end or now + lookahead
    points = sorted({now, *(t for t in current.breakpoints() + new.breakpoints()
                            if now < t < end)})
    soon = [t for t in points if t < now + lookahead]
    raises_now = any(new.at(t) > current.at(t) + 1.0 for t in points if t < now + SETTLE)
    big_lower = next((t for t in soon if new.at(t) < current.at(t) - material_w), None)
    if big_lower is not None:
        why = f"lower at {ocpp_time(big_lower)}: {new.at(big_lower):.0f} W < " \
              f"{current.at(big_lower):.0f} W"
        return Change(True, raises_now, why, lower=True)
    if any(new.at(t) > current.at(t) + material_w for t in soon):
        return Change(True, raises_now, "higher within the lookahead")
    lower = next((t for t in points if new.at(t) < current.at(t) - 1.0), None)
    if lower is not None:
        why = f"lower at {ocpp_time(lower)}: {new.at(lower):.0f} W < {current.at(lower):.0f} W"
        return Change(False, raises_now, why, lower=True)
    return Change(False, False, "unchanged")


# an increase under `material_change_kw` still goes when the held profile leaves the car
# short by departure by more than this (kWh, or this share of its need if more)
SHORT_KWH = 0.02
SHORT_SHARE = 0.005


def energy_kwh(limit: Limit, start: datetime, end: datetime, cap_w: float) -> float:
    """Energy an EVSE following `limit` can give a car drawing at most `cap_w` (kWh)."""
    if end <= start:
        return 0.0
    points = sorted({start, end, *(t for t in limit.breakpoints() if start < t < end)})
    return sum(min(limit.at(a), cap_w) * (b - a).total_seconds()
               for a, b in itertools.pairwise(points)) / 3.6e6


def falls_short(current: Limit, new: Limit, now: datetime, until: datetime, need_kwh: float,
                cap_w: float, lookahead: timedelta) -> str | None:
    """Why `new` must replace `current` although no step changed materially (None if not):
    the car leaves (`until`) within `lookahead`, what the EVSE holds leaves it short of
    `need_kwh` by then, and `new` gives it materially more.

    Small increases wait (`compare`); but each re-plan starts from the energy delivered,
    so what the held profile did not give moves into later slots, often again in steps
    too small to send, and the car left short. The end-to-end test showed it once a
    different, equally good plan made the steps smaller: one car got 98.7%. Only in the
    last `lookahead`: earlier, a later plan can still make it up, and two plans' rounded
    profiles differ by ~1% of the energy anyway (resending on that is noise).
    """
    if until - now > lookahead:
        return None
    material = max(SHORT_KWH, SHORT_SHARE * need_kwh)
    held = energy_kwh(current, now, until, cap_w)
    wanted = energy_kwh(new, now, until, cap_w)
    if held < need_kwh - material and wanted > held + material:
        return (f"short by departure: the held profile gives {held:.2f} kWh of "
                f"{need_kwh:.2f}, the new one {wanted:.2f}")
    return None


def slot_peaks_kw(limit: Limit, starts: Sequence[datetime], ends: Sequence[datetime]
                  ) -> np.ndarray:
    """The most `limit` allows inside each slot, in kW."""
    return np.array([limit.peak(a, b) for a, b in zip(starts, ends, strict=True)]) / 1000.0


def needed_decreases(coef: np.ndarray, headroom: np.ndarray, held_kw: np.ndarray,
                     new_kw: np.ndarray, sending: np.ndarray, optional: np.ndarray,
                     tol: float = 1e-6) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """Which optional (small) decreases must be sent so that what every EVSE will hold
    keeps every limit row in every slot: the rule that lets small plan changes go unsent
    without the site ever depending on the CSMS to stay under its limits.

    coef: rows x sessions (row units per kW), headroom: rows x slots; held_kw/new_kw:
    sessions x slots, the most the held/new profile allows in each slot; `sending`:
    sessions whose new profile goes anyway. Greedy: while some (row, slot) is over, send
    the optional decrease that takes most off it. Returns the new `sending` and, per
    session added, the row and slot that needed it.
    """
    sending = sending.copy()
    hold = np.where(sending[:, None], new_kw, held_kw)
    load = coef @ hold
    why: dict[int, tuple[int, int]] = {}
    for _ in range(len(sending)):
        over = load - headroom
        if over.size == 0:
            break
        r, t = np.unravel_index(int(np.argmax(over)), over.shape)
        if over[r, t] <= tol:
            break
        gain = coef[r] * (hold[:, t] - new_kw[:, t])
        gain[sending | ~optional] = 0.0
        j = int(np.argmax(gain))
        if gain[j] <= 0:
            break  # nothing optional left on that row (cannot happen for a plan's rows)
        sending[j] = True
        load -= np.outer(coef[:, j], hold[j] - new_kw[j])
        hold[j] = new_kw[j]
        why[j] = (int(r), int(t))
    return sending, why


# --------------------------------------------------------------------------- safe shares


def default_shares(site: Site, now: datetime, hours: int = 24, slot_minutes: int = 15
                   ) -> dict[str, float]:
    """Each EVSE's equal share (kW) of the lowest headroom over the next `hours`.

    For every node, the headroom of each of its rows (kW, and each phase) at its worst
    moment is split equally over the EVSEs under it that load that row; an EVSE gets the
    smallest split of any row it loads on its path to the root, capped by its maximum.
    All EVSEs drawing their share at once stay under every limit, whatever the time of
    day: that is the point.
    """
    count = hours * 60 // slot_minutes
    starts = [now + timedelta(minutes=slot_minutes * i) for i in range(count)]
    ends = [*starts[1:], starts[-1] + timedelta(minutes=slot_minutes)]
    share = {e.id: e.max_kw for e in site.evses}
    for n in site.nodes:
        evses = [e for e in site.evses if n.id in site.path_to_root(e.node)]
        if not evses:
            continue
        load = sample(n.load_kw, starts, ends, "max", 0.0)
        room_kw = float(np.min(n.limit_over(starts, ends) - load))
        for e in evses:
            if math.isfinite(room_kw):
                share[e.id] = min(share[e.id], max(room_kw, 0.0) / len(evses))
        if n.phase_limit_a is None:
            continue
        room_a = max(n.phase_limit_a - float(np.max(load)) * 1000 / (3 * n.voltage_ln_v), 0)
        for p in PHASES:  # split each phase over the EVSEs that load it
            per_kw = sum(e.phase_amps_per_kw(p) for e in evses)
            for e in evses:
                if e.phase_amps_per_kw(p) > 0:
                    share[e.id] = min(share[e.id], room_a / per_kw)
    return share


def default_profile(evse: Evse, share_kw: float, rate_unit: str, *, profile_id: int,
                    stack_level: int) -> dict[str, Any]:
    """A TxDefaultProfile holding `share_kw` for every transaction on the EVSE.

    Whole amps (or watts) rounded down; a share below the EVSE minimum becomes 0, which is
    what a charger does with it anyway (IEC 61851: no AC charging under 6 A).
    """
    period: dict[str, Any] = {"startPeriod": 0}
    if rate_unit == "A":
        amps = math.floor(share_kw / evse.kw_per_amp + 1e-9)
        period["limit"] = float(amps if amps >= evse.min_current_a else 0)
        period["numberPhases"] = len(evse.phases) if evse.wiring.value == "wye" else 1
    else:
        watts = math.floor(share_kw * 1000.0)
        period["limit"] = float(watts if watts >= evse.min_kw * 1000.0 else 0)
    return {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [{
            "id": profile_id,
            "chargingRateUnit": rate_unit,
            "chargingSchedulePeriod": [period],
        }],
    }


def zero_profile(transaction_id: str, start: datetime, duration_s: int, rate_unit: str, *,
                 profile_id: int, stack_level: int, number_phases: int) -> dict[str, Any]:
    """A TxProfile allowing nothing: for a session the plan counts as full."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": 0.0}
    if rate_unit == "A":
        period["numberPhases"] = number_phases
    return {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "transactionId": transaction_id,
        "chargingSchedule": [{
            "id": profile_id,
            "startSchedule": ocpp_time(start),
            "duration": duration_s,
            "chargingRateUnit": rate_unit,
            "chargingSchedulePeriod": [period],
        }],
    }


# --------------------------------------------------------------------------- reservations

