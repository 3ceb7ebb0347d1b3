"""V2G on the CSMS side: whose terms are planned, whether an EVSE can discharge, what a
session has discharged and is owed. Decisions only: no I/O, no clock.

Three sources speak about one session, and the stricter wins where they meet
(docs/decisions/0028-v2g-csms.md):
- the vehicle's standing terms (`/api/vehicles`, found by the id token its driver uses),
- the session's terms, set by the driver or operator for this transaction
  (`/api/sessions/{station}/{tx}/v2g`): each field set overrides the vehicle's,
- the car itself (OCPP 2.1 NotifyEVChargingNeeds, ISO 15118-20 V2X parameters): a car that
  offers no bidirectional mode cannot discharge, its V2X floor raises the reserve, its
  maximum discharge power caps the EVSE's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from smart_charging import Evse
from smart_charging.model import V2gMode, V2gTerms

MODES = tuple(m.value for m in V2gMode)
BPT_MODES = frozenset({"AC_BPT", "AC_BPT_DER", "DC_BPT", "DC_ACDP_BPT"})
# what a vehicle allowed to discharge may choose from at authorization (Q01)
ALL_MODES = ("AC_single_phase", "AC_two_phase", "AC_three_phase", "DC", "AC_BPT", "DC_BPT")
# the device model variables a 2.1 station reports bidirectional power transfer with
V2X_COMPONENT = "V2XChargingCtrlr"
EFFICIENCY = 0.95  # each way, as the engine's V2gTerms default


@dataclass(frozen=True)
class Terms:
    """A V2G agreement: opted in, the mode allowed, the reserve (share of the battery) and
    what the driver is paid per discharged kWh. `None` fields are not set at that level."""

    opted_in: bool | None = None
    mode: str | None = None
    min_soc: float | None = None
    compensation_per_kwh: float | None = None

    def over(self, base: Terms) -> Terms:
        """These terms where set, `base` elsewhere (a session's over its vehicle's)."""
        return Terms(*(mine if mine is not None else theirs for mine, theirs in zip(
            (self.opted_in, self.mode, self.min_soc, self.compensation_per_kwh),
            (base.opted_in, base.mode, base.min_soc, base.compensation_per_kwh),
            strict=True)))

    @property
    def may_discharge(self) -> bool:
        return bool(self.opted_in) and (self.mode or "charge_only") != "charge_only"


@dataclass(frozen=True)
class EvV2x:
    """What the car reported in NotifyEVChargingNeeds (None: not said)."""

    bidirectional: bool | None = None
    battery_kwh: float | None = None
    soc_percent: float | None = None
    max_discharge_w: float | None = None
    min_v2x_energy_wh: float | None = None


def ev_v2x(needs: Mapping[str, Any]) -> EvV2x:
    """The V2X facts of a `chargingNeeds` (2.0.1 or 2.1): bidirectional when the car
    requests or offers a *_BPT energy transfer mode; battery size and SoC from the DC
    parameters; the discharge limit and V2X floor from the 2.1 V2X parameters."""
    modes = {needs.get("requestedEnergyTransfer"), *needs.get("availableEnergyTransfer", ())}
    v2x = needs.get("v2xChargingParameters") or {}
    dc = needs.get("dcChargingParameters") or {}
    capacity = dc.get("evEnergyCapacity")
    offered = "availableEnergyTransfer" in needs or bool(v2x)
    return EvV2x(
        bidirectional=True if modes & BPT_MODES else (False if offered else None),
        battery_kwh=capacity / 1000.0 if _positive(capacity) else None,
        soc_percent=float(dc["stateOfCharge"]) if "stateOfCharge" in dc else None,
        max_discharge_w=_finite(v2x.get("maxDischargePower")),
        min_v2x_energy_wh=_finite(v2x.get("evMinV2XEnergyRequest")),
    )


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v) and v > 0


def device_says_bidirectional(variables: Iterable[Any], evse_id: int) -> bool:
    """A 2.1 station's device model: V2XChargingCtrlr.Enabled true, or its
    SupportedEnergyTransferModes naming a *_BPT mode, for this EVSE or the station."""
    for v in variables:
        if v.component != V2X_COMPONENT or v.attribute_type != "Actual" or not v.value:
            continue
        if v.evse_id not in (0, evse_id):
            continue
        if v.variable == "Enabled" and v.value.strip().lower() == "true":
            return True
        if v.variable == "SupportedEnergyTransferModes" and BPT_MODES & {
                m.strip() for m in v.value.split(",")}:
            return True
    return False


def max_discharge_kw(evse: Evse, ocpp_version: str | None, device: bool, ev: EvV2x) -> float:
    """How much this EVSE may discharge now (kW, 0: not at all). Only over OCPP 2.1 (2.0.1
    has no standard discharge); bidirectional when the site file says so (`v2g`,
    `max_discharge_kw`), the device model does, or the car requests a BPT mode; the
    car's own maximum caps it. A car that offers no BPT mode makes it 0."""
    if ocpp_version != "2.1" or ev.bidirectional is False:
        return 0.0
    if not (evse.v2g or device or ev.bidirectional):
        return 0.0
    cap = evse.max_discharge_kw if evse.max_discharge_kw is not None else evse.max_kw
    if ev.max_discharge_w is not None:
        cap = min(cap, max(ev.max_discharge_w, 0.0) / 1000.0)
    return max(cap, 0.0)


def engine_terms(terms: Terms, ev: EvV2x, battery_kwh: float | None, soc_percent: float | None,
                 max_discharge: float) -> tuple[V2gTerms | None, str]:
    """The engine's V2gTerms for a session, or None and why not. The reserve is the
    stricter of the driver's minimum SoC and the car's own V2X floor."""
    if not terms.may_discharge:
        return None, "not opted in" if not terms.opted_in else "charge only"
    if max_discharge <= 0:
        return None, "EVSE not bidirectional"
    capacity = ev.battery_kwh or battery_kwh
    soc = soc_percent if soc_percent is not None else ev.soc_percent
    if capacity is None or soc is None:
        return None, "battery size or state of charge unknown"
    now_kwh = min(max(soc, 0.0), 100.0) / 100.0 * capacity
    reserve = (terms.min_soc or 0.0) * capacity
    if ev.min_v2x_energy_wh is not None:  # the car's floor: now + energy to reach it
        reserve = max(reserve, now_kwh + ev.min_v2x_energy_wh / 1000.0)
    return V2gTerms(
        opted_in=True, mode=V2gMode(terms.mode), battery_kwh=capacity, energy_now_kwh=now_kwh,
        reserve_kwh=min(max(reserve, 0.0), capacity), min_soc=terms.min_soc or 0.0,
        max_discharge_kw=max_discharge,
        compensation_per_kwh=terms.compensation_per_kwh or 0.0,
    ), "planned"


def allowed_modes(offered: Iterable[str], terms: Terms) -> list[str]:
    """The energy transfer modes to allow a car (2.1 NotifyAllowedEnergyTransfer): what it
    offered, without the bidirectional ones unless its terms let it discharge."""
    return [m for m in offered if terms.may_discharge or m not in BPT_MODES]


def remaining_kwh(wanted_kwh: float, imported_kwh: float, exported_kwh: float,
                  efficiency: float = EFFICIENCY) -> float:
    """Metered kWh still to charge for the driver's energy when the car has also
    discharged: what it exported left the battery at 1/eta and comes back at eta, so it
    is owed back as exported / eta^2 (decision 0025: the engine gets this with 0
    delivered)."""
    return max(0.0, wanted_kwh - imported_kwh + exported_kwh / (efficiency * efficiency))


@dataclass(frozen=True)
class Accounting:
    """A session's (or a vehicle's) discharge: kWh, equivalent full cycles, what is owed."""

    discharged_kwh: float
    cycles: float | None
    compensation: float

    @classmethod
    def of(cls, discharged_wh: float | None, battery_kwh: float | None,
           compensation_per_kwh: float | None) -> Accounting:
        kwh = max(discharged_wh or 0.0, 0.0) / 1000.0
        cycles = kwh / battery_kwh if battery_kwh else None
        return cls(round(kwh, 3), None if cycles is None else round(cycles, 4),
                   round(kwh * (compensation_per_kwh or 0.0), 2))

    def plus(self, other: Accounting) -> Accounting:
        cycles = None if self.cycles is None and other.cycles is None else round(
            (self.cycles or 0.0) + (other.cycles or 0.0), 4)
        return Accounting(round(self.discharged_kwh + other.discharged_kwh, 3), cycles,
                          round(self.compensation + other.compensation, 2))
