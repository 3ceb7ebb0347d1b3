"""What a driver pays: the driver tariff, the cost of a session under it, and its text.

Decisions only (no I/O, no clock): the same function gives the running cost (usage up to
now) and the final cost (usage up to the end), so the two cannot disagree.

A driver tariff is distinct from the site's energy tariff the scheduler plans with
(csms/tariffs.py): that one is what the site pays the grid, this one what the driver pays
the operator. Chinese public charging bills electricity plus a service fee per kWh, both
by time of use, and an occupancy fee (占位费) for a car left parked after a free period:
per-kWh `bands` in local time, `price_per_hour_parked` after `parking_grace`.

Money is `Decimal`, never float. Rounding rules (ROUND_HALF_UP to the currency's minor
unit: 2 decimals, 0 for JPY/KRW/..., 3 for BHD/KWD/...):
- each item (energy, charging time, parking, session fee) is computed exactly, then
  rounded once; the total is the sum of the rounded items, so a receipt adds up;
- energy is the register's rise between readings (kWh = Wh / 1000, exact); a rise spread
  over a band boundary is split between the bands in proportion to time;
- time is exact to the second (hours = seconds / 3600); time before the station first
  reports a charging state, and time in state Idle (no EV), is not billed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
MINOR_UNITS = {  # ISO 4217 exponents other than 2
    "JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "UGX": 0, "XAF": 0, "XOF": 0,
    "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3,
}
PARKED_STATES = frozenset({"EVConnected", "SuspendedEV", "SuspendedEVSE"})
MESSAGE_MAX = 512  # MessageContentType.content


def money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half up to the currency's minor unit."""
    exp = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    return amount.quantize(exp, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PriceBand:
    """A per-kWh price from `start` to `end` in the tariff's local time (end <= start
    wraps past midnight)."""

    start: time
    end: time
    price_per_kwh: Decimal
    name: str = ""

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class DriverTariff:
    id: str
    currency: str
    price_per_kwh: Decimal = ZERO  # where no band applies
    bands: tuple[PriceBand, ...] = ()
    utc_offset: timedelta = timedelta(0)
    price_per_hour_charging: Decimal = ZERO
    price_per_hour_parked: Decimal = ZERO
    parking_grace: timedelta = timedelta(0)
    session_fee: Decimal = ZERO
    group_id: str | None = None  # None: the default tariff
    description: str | None = None  # shown to drivers instead of the generated text

    def local(self, t: datetime) -> datetime:
        return t.astimezone(UTC).replace(tzinfo=None) + self.utc_offset

    def energy_price_at(self, t: datetime) -> Decimal:
        clock = self.local(t).time()
        for band in self.bands:
            if band.contains(clock):
                return band.price_per_kwh
        return self.price_per_kwh

    def next_change(self, t: datetime) -> datetime | None:
        """The first band boundary strictly after `t` (None without bands)."""
        if not self.bands:
            return None
        local = self.local(t)
        best: datetime | None = None
        for edge in {b.start for b in self.bands} | {b.end for b in self.bands}:
            candidate = datetime.combine(local.date(), edge)
            if candidate <= local:
                candidate += timedelta(days=1)
            if best is None or candidate < best:
                best = candidate
        assert best is not None
        return (best - self.utc_offset).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Usage:
    """What a session used up to `until` (its end, or now for a running cost)."""

    until: datetime
    readings: Sequence[tuple[datetime, float]] = ()  # energy register, Wh
    states: Sequence[tuple[datetime, str]] = ()  # chargingState as reported, from when


@dataclass(frozen=True)
class Cost:
    currency: str
    energy_kwh: Decimal
    energy: Decimal
    charging_hours: Decimal
    charging_time: Decimal
    parked_hours: Decimal
    parking: Decimal
    session_fee: Decimal
    total: Decimal = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total",
                           self.energy + self.charging_time + self.parking + self.session_fee)

    def breakdown(self) -> dict[str, str]:
        return {
            "energy_kwh": str(self.energy_kwh), "energy": str(self.energy),
            "charging_hours": str(self.charging_hours), "charging_time": str(self.charging_time),
            "parked_hours": str(self.parked_hours), "parking": str(self.parking),
            "session_fee": str(self.session_fee),
        }


def _energy_cost(tariff: DriverTariff, readings: Sequence[tuple[datetime, float]]
                 ) -> tuple[Decimal, Decimal]:
    """(kWh, exact cost) of the register's rises between consecutive readings."""
    ordered = sorted(readings)
    kwh_total, cost = ZERO, ZERO
    for (t1, wh1), (t2, wh2) in itertools.pairwise(ordered):
        rise = Decimal(repr(wh2)) - Decimal(repr(wh1))
        if rise <= 0:
            continue  # a meter never runs back; a reset is not the driver's energy
        kwh = rise / 1000
        kwh_total += kwh
        span = (t2 - t1).total_seconds()
        if span <= 0 or not tariff.bands:
            cost += kwh * tariff.energy_price_at(t2 if span <= 0 else t1)
            continue
        t = t1
        while t < t2:
            nxt = tariff.next_change(t)
            end = t2 if nxt is None or nxt > t2 else nxt
            share = Decimal(int((end - t).total_seconds() * 1_000_000)) / \
                Decimal(int(span * 1_000_000))
            cost += kwh * share * tariff.energy_price_at(t)
            t = end
    return kwh_total, cost


def _state_seconds(states: Sequence[tuple[datetime, str]], until: datetime
                   ) -> tuple[int, int]:
    """(seconds charging, seconds parked): each state holds until the next one."""
    ordered = sorted(states, key=lambda s: s[0])
    charging = parked = 0
    for i, (t, state) in enumerate(ordered):
        end = ordered[i + 1][0] if i + 1 < len(ordered) else until
        seconds = max(0, int((min(end, until) - t).total_seconds()))
        if state == "Charging":
            charging += seconds
        elif state in PARKED_STATES:
            parked += seconds
    return charging, parked


def session_cost(tariff: DriverTariff, usage: Usage) -> Cost:
    """The cost of `usage` under `tariff` (see the module's rounding rules)."""
    kwh, energy = _energy_cost(tariff, usage.readings)
    charging_s, parked_s = _state_seconds(usage.states, usage.until)
    grace_s = int(tariff.parking_grace.total_seconds())
    billed_parked_s = max(0, parked_s - grace_s)
    charging_h = Decimal(charging_s) / 3600
    parked_h = Decimal(billed_parked_s) / 3600
    c = tariff.currency
    return Cost(
        currency=c,
        energy_kwh=kwh.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP),
        energy=money(energy, c),
        charging_hours=charging_h.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
        charging_time=money(charging_h * tariff.price_per_hour_charging, c),
        parked_hours=parked_h.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP),
        parking=money(parked_h * tariff.price_per_hour_parked, c),
        session_fee=money(tariff.session_fee, c),
    )


# --------------------------------------------------------------------------- texts


def _amount(value: Decimal, currency: str) -> str:
    return f"{money(value, currency)} {currency}"


def tariff_text(tariff: DriverTariff) -> str:
    """The tariff as drivers read it (I01), at most MESSAGE_MAX characters."""
    if tariff.description:
        return tariff.description[:MESSAGE_MAX]
    c = tariff.currency
    parts = [f"{_amount(b.price_per_kwh, c)}/kWh {b.start:%H:%M}-{b.end:%H:%M}"
             for b in tariff.bands]
    if not tariff.bands or tariff.price_per_kwh:
        parts.append(f"{_amount(tariff.price_per_kwh, c)}/kWh"
                     + (" other times" if tariff.bands else ""))
    if tariff.price_per_hour_charging:
        parts.append(f"charging {_amount(tariff.price_per_hour_charging, c)}/h")
    if tariff.price_per_hour_parked:
        grace = int(tariff.parking_grace.total_seconds() // 60)
        parts.append(f"parking {_amount(tariff.price_per_hour_parked, c)}/h"
                     + (f" after {grace} min" if grace else ""))
    if tariff.session_fee:
        parts.append(f"session fee {_amount(tariff.session_fee, c)}")
    return ("Tariff: " + "; ".join(parts))[:MESSAGE_MAX]


def running_text(cost: Cost) -> str:
    return f"Cost so far: {cost.total} {cost.currency} ({cost.energy_kwh} kWh)"


def final_text(cost: Cost) -> str:
    return f"Total cost: {cost.total} {cost.currency} ({cost.energy_kwh} kWh)"
