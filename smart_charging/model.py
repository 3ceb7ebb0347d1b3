"""The site, its sessions and its prices: the engine's inputs, as plain frozen dataclasses.

Units are fixed so nothing has to guess: power in kW, energy in kWh, current in A per
phase, voltages in V, prices in currency per kWh, times timezone-aware.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum

import numpy as np

PHASES: tuple[str, ...] = ("L1", "L2", "L3")


class Wiring(StrEnum):
    """How an EVSE is connected; it decides how its power shows up as phase current."""

    WYE = "wye"  # line-to-neutral: 1 or 3 phases, voltage is line-to-neutral (230 V)
    DELTA = "delta"  # line-to-line between two phases (US 208 V garages)
    DC = "dc"  # DC charger, a balanced three-phase load on its AC side


def _check_finite(what: str, **values: float | None) -> None:
    """Reject NaN, infinite or negative numbers at the engine's boundary: a NaN capacity
    would otherwise pass every comparison and reach the solver."""
    for name, v in values.items():
        if v is None:
            continue
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{what}: {name} must be a finite number >= 0, got {v}")


# --------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class StepSeries:
    """A step function: each value holds from its time until the next one.

    Used for measured or forecast non-EV load and per-interval prices. Before the first
    point the first value holds; after the last point the last value holds.
    """

    times: tuple[datetime, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times) != len(self.values) or not self.times:
            raise ValueError("StepSeries needs as many times as values, at least one")
        if any(b <= a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError("StepSeries times must increase")

    def over(self, starts: Sequence[datetime], ends: Sequence[datetime], worst: str) -> np.ndarray:
        """Worst value ('max' or 'min') inside each [start, end) window.

        Taking the worst value keeps a limit safe when a step falls inside a slot.
        """
        ts = np.array([t.timestamp() for t in self.times])
        vs = np.asarray(self.values, dtype=float)
        out = np.empty(len(starts))
        for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
            lo = max(int(np.searchsorted(ts, a.timestamp(), side="right")) - 1, 0)
            hi = max(int(np.searchsorted(ts, b.timestamp(), side="left")) - 1, lo)
            window = vs[lo : hi + 1]
            out[i] = window.max() if worst == "max" else window.min()
        return out


@dataclass(frozen=True)
class DailyProfile:
    """Values repeating every day at a fixed resolution, in the site's local time.

    The household load of a residential transformer is usually known this way (a
    typical day), before any metering refines it.
    """

    values: tuple[float, ...]
    utc_offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not self.values or (24 * 60) % len(self.values):
            raise ValueError("DailyProfile needs a number of values that divides a day")

    def to_steps(self, start: datetime, end: datetime) -> StepSeries:
        step = timedelta(minutes=24 * 60 // len(self.values))
        local = start.astimezone(UTC) + self.utc_offset
        day0 = datetime.combine(local.date(), time(0), tzinfo=UTC) - self.utc_offset
        times: list[datetime] = []
        values: list[float] = []
        t = day0 - timedelta(days=1)
        i = 0
        while t < end + step:
            times.append(t)
            values.append(self.values[i % len(self.values)])
            t += step
            i += 1
        return StepSeries(tuple(times), tuple(values))

    def over(self, starts: Sequence[datetime], ends: Sequence[datetime], worst: str) -> np.ndarray:
        if not starts:
            return np.empty(0)
        return self.to_steps(min(starts), max(ends)).over(starts, ends, worst)


Series = StepSeries | DailyProfile


def sample(series: Series | None, starts: Sequence[datetime], ends: Sequence[datetime],
           worst: str, default: float) -> np.ndarray:
    """A series over slots, or `default` everywhere when there is none."""
    if series is None:
        return np.full(len(starts), float(default))
    return series.over(starts, ends, worst)


# --------------------------------------------------------------------------- electrical tree


@dataclass(frozen=True)
class TimedLimit:
    """A limit in force over [start, end): a DSO's timed limit or a curtailment event."""

    start: datetime
    end: datetime
    limit_kw: float


@dataclass(frozen=True)
class Node:
    """A point of the electrical tree with a limit: transformer, feeder, circuit.

    `limit_kw` is the active-power limit (for a transformer: kVA x loading factor x
    power factor). `phase_limit_a` caps the current of each phase at this node.
    `load_kw` is the non-EV load through the node (household load), assumed balanced
    over the three phases; EVs get what is left. `primary_limit_a` is for a delta-wye
    transformer (US 480 V / 208 V): the primary line-current limit referred to the
    secondary (primary amps x turns ratio). Primary line 1 carries I_L1 - I_L3 of the
    secondary line currents, line 2 I_L2 - I_L1, line 3 I_L3 - I_L2 (as Caltech's ACN
    models it); with unbalanced line-to-line loads it can bind before `phase_limit_a`.
    `phase_load_a` is current per phase on top of the balanced share of `load_kw`:
    unbalanced non-EV load, such as a single-phase charger the engine does not steer
    (negative on the phases it does not use, where the balanced share over-counts it).
    """

    id: str
    parent: str | None = None
    limit_kw: float | None = None
    phase_limit_a: float | None = None
    voltage_ln_v: float = 230.0
    load_kw: Series | None = None
    timed_limits: tuple[TimedLimit, ...] = ()
    kind: str = "node"
    rating_kva: float | None = None
    primary_limit_a: float | None = None
    phase_load_a: Mapping[str, Series] = field(default_factory=dict, hash=False)

    def limit_over(self, starts: Sequence[datetime], ends: Sequence[datetime]) -> np.ndarray:
        """The kW limit per slot: the static limit, lowered by any timed limit it overlaps."""
        base = np.inf if self.limit_kw is None else float(self.limit_kw)
        out = np.full(len(starts), base)
        for tl in self.timed_limits:
            for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
                if a < tl.end and tl.start < b:
                    out[i] = min(out[i], tl.limit_kw)
        return out


@dataclass(frozen=True)
class Evse:
    """One charging point. AC limits are in A per phase, DC limits in kW.

    `station_id` and `ocpp_evse_id` address it in OCPP; `rate_unit` is what its station
    accepts in a charging profile (SmartChargingCtrlr.RateUnit). `current_step_a` is
    the station's setpoint granularity when coarser than whole amps (a station taking
    only 0/8/16/24/32 A has min_current_a 8 and current_step_a 8).
    """

    id: str
    node: str
    station_id: str = ""
    ocpp_evse_id: int = 1
    wiring: Wiring = Wiring.WYE
    phases: tuple[str, ...] = ("L1",)
    voltage_v: float = 230.0
    min_current_a: float = 6.0
    max_current_a: float = 32.0
    min_power_kw: float = 0.0
    max_power_kw: float | None = None
    rate_unit: str = "A"
    v2g: bool = False
    current_step_a: float | None = None
    # a bidirectional EVSE's discharge limit (kW); None: the same as its charge maximum
    max_discharge_kw: float | None = None

    def __post_init__(self) -> None:
        if any(p not in PHASES for p in self.phases):
            raise ValueError(f"EVSE {self.id}: unknown phase in {self.phases}")
        if self.wiring == Wiring.DELTA and len(self.phases) != 2:
            raise ValueError(f"EVSE {self.id}: a line-to-line EVSE sits between two phases")
        if self.wiring == Wiring.WYE and len(self.phases) not in (1, 3):
            raise ValueError(f"EVSE {self.id}: a wye EVSE uses 1 or 3 phases")
        if self.wiring == Wiring.DC and self.max_power_kw is None:
            raise ValueError(f"EVSE {self.id}: a DC EVSE needs max_power_kw")
        if self.rate_unit not in ("A", "W"):
            raise ValueError(f"EVSE {self.id}: rate_unit must be A or W")
        if self.current_step_a is not None and self.current_step_a <= 0:
            raise ValueError(f"EVSE {self.id}: current_step_a must be positive")
        _check_finite(f"EVSE {self.id}", voltage_v=self.voltage_v,
                      min_current_a=self.min_current_a, max_current_a=self.max_current_a,
                      min_power_kw=self.min_power_kw, max_power_kw=self.max_power_kw,
                      max_discharge_kw=self.max_discharge_kw)

    @property
    def max_discharge(self) -> float:
        """The most this EVSE can feed back (kW); 0 unless it is bidirectional."""
        if not self.v2g:
            return 0.0
        return self.max_kw if self.max_discharge_kw is None else self.max_discharge_kw

    @property
    def is_ac(self) -> bool:
        return self.wiring != Wiring.DC

    @property
    def kw_per_amp(self) -> float:
        """kW drawn per ampere of setpoint (per phase); DC has no current setpoint."""
        if self.wiring == Wiring.WYE:
            return self.voltage_v * len(self.phases) / 1000.0
        if self.wiring == Wiring.DELTA:
            return self.voltage_v / 1000.0
        return 0.0

    @property
    def max_kw(self) -> float:
        if self.is_ac:
            cap = self.max_current_a * self.kw_per_amp
            return cap if self.max_power_kw is None else min(cap, self.max_power_kw)
        assert self.max_power_kw is not None
        return self.max_power_kw

    @property
    def min_kw(self) -> float:
        """The lowest non-zero power (IEC 61851: 6 A for AC)."""
        return self.min_current_a * self.kw_per_amp if self.is_ac else self.min_power_kw

    def phase_amps_per_kw(self, phase: str) -> float:
        """Current on `phase` per kW drawn.

        Line-to-line EVSEs count their full current on both phases: the triangle bound
        |I_a| <= |I_ab| + |I_ca|. The planner's rows are tighter where line-to-line
        loads meet (see `problem.current_rows` and docs/decisions/0001-engine-rules.md).
        """
        if self.wiring == Wiring.DC:
            return 1000.0 / (3 * self.voltage_v)
        if phase not in self.phases:
            return 0.0
        if self.wiring == Wiring.WYE:
            return 1000.0 / (self.voltage_v * len(self.phases))
        return 1000.0 / self.voltage_v


@dataclass(frozen=True)
class Site:
    """A grid connection with its electrical tree and EVSEs."""

    id: str
    nodes: tuple[Node, ...]
    evses: tuple[Evse, ...]
    utc_offset: timedelta = timedelta(0)
    default_departure: time = time(7, 30)
    default_energy_kwh: float = 15.0

    def __post_init__(self) -> None:
        ids = {n.id for n in self.nodes}
        if len(ids) != len(self.nodes):
            raise ValueError("duplicate node id")
        for n in self.nodes:
            if n.parent is not None and n.parent not in ids:
                raise ValueError(f"node {n.id}: unknown parent {n.parent}")
        evse_ids = {e.id for e in self.evses}
        if len(evse_ids) != len(self.evses):
            raise ValueError("duplicate EVSE id")
        for e in self.evses:
            if e.node not in ids:
                raise ValueError(f"EVSE {e.id}: unknown node {e.node}")
        roots = [n for n in self.nodes if n.parent is None]
        if len(roots) != 1:
            raise ValueError("a site has exactly one root node (its grid connection)")
        for n in self.nodes:  # reject cycles
            seen: set[str] = set()
            cur: Node | None = n
            while cur is not None:
                if cur.id in seen:
                    raise ValueError(f"cycle through node {n.id}")
                seen.add(cur.id)
                cur = self.node(cur.parent) if cur.parent else None

    @property
    def root(self) -> Node:
        return next(n for n in self.nodes if n.parent is None)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def evse(self, evse_id: str) -> Evse:
        for e in self.evses:
            if e.id == evse_id:
                return e
        raise KeyError(evse_id)

    def path_to_root(self, node_id: str) -> list[str]:
        """The node and all its ancestors: every limit an EVSE under it counts against."""
        out: list[str] = []
        cur: str | None = node_id
        while cur is not None:
            out.append(cur)
            cur = self.node(cur).parent
        return out


# --------------------------------------------------------------------------- V2G and storage


class V2gMode(StrEnum):
    """What the driver allows the car's battery to be used for."""

    CHARGE_ONLY = "charge_only"
    # behind the meter only: covers the site's own load (relieves the transformer),
    # never exports past the site's connection, never below the reserve
    BACKUP_ONLY = "backup_only"
    EXPORT_ALLOWED = "export_allowed"  # may also export, never below the reserve


@dataclass(frozen=True)
class V2gTerms:
    """A session's V2G agreement and its battery as the car reports it (ISO 15118-20,
    OCPP 2.1 NotifyEVChargingNeeds V2X parameters, or the driver's app).

    Energies are in the battery (kWh stored), power at the EVSE (kW, metered). The
    reserve is max(`reserve_kwh`, `min_soc` x capacity). `wear_per_kwh` overrides the
    planner's `Weights.wear`; `compensation_per_kwh` is what the driver is paid per
    discharged kWh: both make a discharge cost, so it only happens when it pays.
    """

    opted_in: bool
    mode: V2gMode
    battery_kwh: float
    energy_now_kwh: float
    reserve_kwh: float = 0.0
    min_soc: float = 0.0
    max_discharge_kw: float | None = None
    compensation_per_kwh: float = 0.0
    wear_per_kwh: float | None = None
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95

    def __post_init__(self) -> None:
        _check_finite("V2G terms", battery_kwh=self.battery_kwh,
                      energy_now_kwh=self.energy_now_kwh, reserve_kwh=self.reserve_kwh,
                      min_soc=self.min_soc, max_discharge_kw=self.max_discharge_kw,
                      compensation_per_kwh=self.compensation_per_kwh,
                      wear_per_kwh=self.wear_per_kwh)
        if self.battery_kwh <= 0:
            raise ValueError("V2G terms: battery_kwh must be positive")
        if self.energy_now_kwh > self.battery_kwh + 1e-9:
            raise ValueError("V2G terms: energy_now_kwh above battery_kwh")
        if self.min_soc > 1 or self.reserve_kwh > self.battery_kwh:
            raise ValueError("V2G terms: reserve above the battery's capacity")
        _check_efficiency(self.charge_efficiency, self.discharge_efficiency)
        object.__setattr__(self, "mode", V2gMode(self.mode))  # a str from config/API too

    @property
    def reserve(self) -> float:
        return max(self.reserve_kwh, self.min_soc * self.battery_kwh)

    @property
    def may_discharge(self) -> bool:
        return self.opted_in and self.mode != V2gMode.CHARGE_ONLY


def _check_efficiency(*etas: float) -> None:
    for eta in etas:
        if not np.isfinite(eta) or not 0 < eta <= 1:
            raise ValueError(f"efficiency must be in (0, 1], got {eta}")


@dataclass(frozen=True)
class StationaryBattery:
    """A site's battery on `node`: planned like a V2G car that never leaves.

    Energy window [min_kwh, max_kwh], power limits at its inverter, wear per discharged
    kWh (None: `Weights.wear`). By default it ends the horizon with at least the energy
    it has now (`end_energy_kwh`), so a plan cannot "earn" by emptying it at the
    horizon's end. `export_allowed` False keeps it behind the meter (backup use).
    """

    id: str
    node: str
    capacity_kwh: float
    energy_now_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    min_kwh: float = 0.0
    max_kwh: float | None = None
    wear_per_kwh: float | None = None
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    end_energy_kwh: float | None = None
    export_allowed: bool = False

    def __post_init__(self) -> None:
        _check_finite(f"battery {self.id}", capacity_kwh=self.capacity_kwh,
                      energy_now_kwh=self.energy_now_kwh, max_charge_kw=self.max_charge_kw,
                      max_discharge_kw=self.max_discharge_kw, min_kwh=self.min_kwh,
                      max_kwh=self.max_kwh, wear_per_kwh=self.wear_per_kwh,
                      end_energy_kwh=self.end_energy_kwh)
        top = self.capacity_kwh if self.max_kwh is None else self.max_kwh
        if not self.min_kwh <= top <= self.capacity_kwh:
            raise ValueError(f"battery {self.id}: need min_kwh <= max_kwh <= capacity_kwh")
        if self.energy_now_kwh > self.capacity_kwh + 1e-9:
            raise ValueError(f"battery {self.id}: energy_now_kwh above capacity_kwh")
        _check_efficiency(self.charge_efficiency, self.discharge_efficiency)


@dataclass(frozen=True)
class SolarForecast:
    """On-site solar on `node`: a forecast negative load (kW, >= 0) on the node and
    every node above it. The worst case is taken per slot: its least output against the
    upper limits, its most against reverse-flow limits."""

    id: str
    node: str
    power_kw: Series

    def __post_init__(self) -> None:
        vals = self.power_kw.values if isinstance(self.power_kw, StepSeries | DailyProfile) \
            else ()
        for v in vals:
            _check_finite(f"solar {self.id}", power_kw=v)


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    """A car plugged into an EVSE, with what it needs.

    `max_power_kw` is what the car actually takes (learned from meter values); None
    means the EVSE maximum. `opted_out` ("charge now") sessions are charged as early as
    the limits allow instead of being shifted. Priority scales the shortfall penalty.
    """

    id: str
    evse_id: str
    arrival: datetime
    departure: datetime
    energy_wanted_kwh: float
    energy_delivered_kwh: float = 0.0
    max_power_kw: float | None = None
    opted_out: bool = False
    priority: float = 1.0
    transaction_id: str | None = None
    # the driver's V2G agreement and the battery's state; None: charge only, as before
    v2g: V2gTerms | None = None

    def __post_init__(self) -> None:
        if self.arrival.tzinfo is None or self.departure.tzinfo is None:
            raise ValueError(f"session {self.id}: times must be timezone-aware")
        if self.energy_wanted_kwh < 0 or self.energy_delivered_kwh < 0:
            raise ValueError(f"session {self.id}: negative energy")
        if self.v2g is not None:
            _check_finite(f"session {self.id}", energy_wanted_kwh=self.energy_wanted_kwh,
                          energy_delivered_kwh=self.energy_delivered_kwh,
                          max_power_kw=self.max_power_kw)
        if self.priority <= 0:
            raise ValueError(f"session {self.id}: priority must be positive")

    @property
    def energy_needed_kwh(self) -> float:
        return max(0.0, self.energy_wanted_kwh - self.energy_delivered_kwh)


# --------------------------------------------------------------------------- prices


@dataclass(frozen=True)
class TouBand:
    """A tariff band in local time; end <= start means it wraps past midnight."""

    name: str
    start: time
    end: time
    price: float

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True)
class Carbon:
    """Grid emission factors (kgCO2 per kWh drawn) over time, and what a kg weighs in the
    objective beside the energy price (currency per kg). A weight of 0 (the default) keeps
    plans exactly as without carbon: the factors are then only reported, not optimised."""

    factors: Series | None = None
    weight_per_kg: float = 0.0

    def __post_init__(self) -> None:
        _check_finite("carbon", weight_per_kg=self.weight_per_kg)
        for v in () if self.factors is None else self.factors.values:
            _check_finite("carbon", kg_per_kwh=v)

    def cost_per_kwh(self, starts: Sequence[datetime], ends: Sequence[datetime]) -> np.ndarray:
        """The carbon term per slot (currency per kWh): weight x the slot's worst factor."""
        if self.weight_per_kg == 0 or self.factors is None:
            return np.zeros(len(starts))
        return self.weight_per_kg * sample(self.factors, starts, ends, "max", 0.0)


@dataclass(frozen=True)
class Prices:
    """Energy prices (TOU bands, or per-interval prices that override them) and an
    optional demand charge per kW of the site's peak within the horizon. `carbon` adds
    a per-slot cost for emissions, so the engine weighs them like a price and stays pure."""

    bands: tuple[TouBand, ...] = ()
    utc_offset: timedelta = timedelta(0)
    per_interval: StepSeries | None = None
    demand_charge_per_kw: float = 0.0
    currency: str = "CNY"
    flat_price: float = 0.0
    carbon: Carbon = field(default_factory=Carbon)

    def band_at(self, t: datetime) -> TouBand | None:
        local = (t.astimezone(UTC) + self.utc_offset).time()
        for b in self.bands:
            if b.contains(local):
                return b
        return None

    def energy_price(self, starts: Sequence[datetime], ends: Sequence[datetime]) -> np.ndarray:
        """Price per slot: per-interval prices where given, else the band at the slot's middle."""
        if self.per_interval is not None:
            return self.per_interval.over(starts, ends, "max")
        out = np.full(len(starts), float(self.flat_price))
        for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
            band = self.band_at(a + (b - a) / 2)
            if band is not None:
                out[i] = band.price
        return out

    def slot_cost(self, starts: Sequence[datetime], ends: Sequence[datetime]) -> np.ndarray:
        """What the objective charges per kWh in each slot: energy price plus carbon term."""
        return self.energy_price(starts, ends) + self.carbon.cost_per_kwh(starts, ends)
