"""The station's physics: what each EV draws under the composite limit of the installed
charging profiles (and an equal share of a station-wide limit), the energy meter, and the
loops that follow schedule steps and send meter values.

On an OCPP 2.1 connection a bidirectional EVSE with a bidirectional EV, in a transaction the
CSMS allowed a BPT energy transfer mode (Authorize or NotifyAllowedEnergyTransfer), runs at
the composite's signed rate (`Operation.target`): a negative one discharges the EV, never
below its reserve, and the meter counts it on Energy.Active.Export.Register;
Power.Active.Import is signed (negative while discharging) and Power.Active.Export carries
the same power as a magnitude. The meter integrates across schedule steps (`_advance`), so
metered energy follows the profile however late the meter loop wakes.

`Physics` is a base of `Station`: it uses the station's spec, clock, device model, profile
store and EVSEs; it sends through the link (`call`, `_spawn`) and the station's `_tx_event`
(charging state changes, periodic samples).
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from simulators.clock import to_ocpp
from simulators.ev import EV, RESERVE_SNAP_WH
from simulators.profiles import (
    CHARGING_ONLY,
    Electrical,
    Transaction,
    limit_at,
    next_change,
    operation_at,
)
from simulators.station.link import CallFailed
from simulators.station.model import EvseState, TxState

log = logging.getLogger("simulators.station")

MAX_CONTROL_STEP_S = 60.0  # re-evaluate taper and limits at least this often while charging


class Physics:
    """EVs, meters, power and limits."""

    def energy_wh(self, evse_id: int) -> float:
        evse = self._evse(evse_id)
        self._advance(evse)
        return evse.energy_wh

    def power_w(self, evse_id: int) -> float:
        evse = self._evse(evse_id)
        self._advance(evse)
        return evse.power_w

    def soc(self, evse_id: int) -> float | None:
        ev = self._evse(evse_id).ev
        return None if ev is None else ev.soc

    def ev(self, evse_id: int) -> EV | None:
        return self._evse(evse_id).ev

    def composite_limit(self, evse_id: int) -> tuple[float, str] | None:
        """The composite limit now, in the unit of the profile that sets it."""
        evse = self._evse(evse_id)
        now = self.clock.now()
        self.profiles.expire(now)
        unit = self._natural_unit(evse, now)
        if unit is None:
            return None
        got = limit_at(self.profiles, evse_id, now, unit, self._electrical(evse), self._tx(evse))
        return None if got is None else (got[0], unit)

    def limit_w(self, evse_id: int) -> float:
        """What the EVSE offers now in W: the composite limit capped by the hardware."""
        evse = self._evse(evse_id)
        hardware = evse.spec.max_power_w or 0.0
        got = limit_at(
            self.profiles, evse_id, self.clock.now(), "W", self._electrical(evse), self._tx(evse)
        )
        return hardware if got is None else min(hardware, got[0])

    def meter_jump(self, evse_id: int, energy_wh: float) -> None:
        """Fault injection: the energy register jumps by `energy_wh`."""
        evse = self._evse(evse_id)
        self._advance(evse)
        evse.energy_wh += energy_wh

    def _start_aligned_meter(self) -> None:
        """Run the aligned meter loop while AlignedDataCtrlr.Interval > 0 (no task when it
        is 0, the default: thousands of idle stations must cost nothing)."""
        running = self._aligned_task is not None and not self._aligned_task.done()
        if not running and self.device_model.number("AlignedDataCtrlr", "Interval") > 0:
            self._aligned_task = self._spawn(self._aligned_meter_loop())

    async def _aligned_meter_loop(self) -> None:
        """Clock-aligned MeterValues, as a station reports its meters on the quarter hour
        whether or not a transaction runs."""
        while not self._stopping:
            interval = self.device_model.number("AlignedDataCtrlr", "Interval")
            if interval <= 0:
                return
            now = self.clock.now().timestamp()
            await self.clock.sleep(interval - now % interval or interval)
            if not (self.connected and self.boot_status == "Accepted"):
                continue
            for evse in self.evses.values():
                self._advance(evse)
                try:
                    await self.call("MeterValues", {
                        "evseId": evse.spec.evse_id,
                        "meterValue": [self._meter_value(evse, "Sample.Clock")],
                    })
                except (ConnectionError, TimeoutError, CallFailed) as exc:
                    log.info("%s aligned meter values failed: %s", self.station_id, exc)

    def _meter_value(self, evse: EvseState, context: str) -> dict:
        sampled = [
            {
                "value": round(evse.energy_wh, 1),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": round(evse.power_w, 1),
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            },
        ]
        v2x = self._can_discharge(evse)
        if v2x:
            sampled += [
                {
                    "value": round(evse.export_wh, 1),
                    "context": context,
                    "measurand": "Energy.Active.Export.Register",
                    "unitOfMeasure": {"unit": "Wh"},
                },
                {
                    "value": round(max(0.0, -evse.power_w), 1),
                    "context": context,
                    "measurand": "Power.Active.Export",
                    "unitOfMeasure": {"unit": "W"},
                },
            ]
        if evse.spec.kind == "AC":
            for i in range(1, evse.spec.phases + 1):
                amps = evse.current_a if i <= evse.phases_in_use else 0.0
                for measurand, value in (("Current.Import", max(0.0, amps)),
                                         ("Current.Export", max(0.0, -amps))):
                    if measurand == "Current.Export" and not v2x:
                        continue
                    sampled.append(
                        {
                            "value": round(value, 2),
                            "context": context,
                            "measurand": measurand,
                            "phase": f"L{i}",
                            "unitOfMeasure": {"unit": "A"},
                        }
                    )
        ev = evse.ev
        if ev is not None and (evse.spec.kind == "DC" or ev.iso15118 or ev.bidirectional):
            sampled.append(
                {
                    "value": round(ev.soc * 100.0, 1),
                    "context": context,
                    "measurand": "SoC",
                    "unitOfMeasure": {"unit": "Percent"},
                }
            )
        return {"timestamp": to_ocpp(self.clock.now()), "sampledValue": sampled}

    def _can_discharge(self, evse: EvseState) -> bool:
        """V2X is OCPP 2.1's: a bidirectional EVSE discharges only on a 2.1 connection."""
        return evse.spec.bidirectional and self.ocpp_version == "2.1"

    def _evse(self, evse_id: int) -> EvseState:
        try:
            return self.evses[evse_id]
        except KeyError:
            raise ValueError(f"{self.station_id} has no EVSE {evse_id}") from None

    def _tx(self, evse: EvseState) -> Transaction | None:
        tx = evse.tx
        return None if tx is None else Transaction(tx.transaction_id, tx.started)

    def _electrical(self, evse: EvseState) -> Electrical:
        spec = evse.spec
        phases = spec.phases
        if spec.kind == "AC" and evse.ev is not None:
            phases = min(phases, evse.ev.ac_phases)
        return Electrical(spec.kind, phases, spec.voltage_v)

    def _natural_unit(self, evse: EvseState, now: datetime) -> str | None:
        """Unit of the profile that governs this EVSE now (Tx level first, then caps)."""
        tx = self._tx(evse)
        order = (
            "TxProfile",
            "TxDefaultProfile",
            "ChargingStationMaxProfile",
            "ChargingStationExternalConstraints",
        )
        for purpose in order:
            for entry in self.profiles:
                p = entry.profile
                if p.purpose != purpose:
                    continue
                if operation_at([entry], evse.spec.evse_id, now, "W", self._electrical(evse), tx):
                    return p.schedule.charging_rate_unit
        return None

    def _draw(self, evse: EvseState, at: datetime | None = None) -> tuple[float, float, int]:
        """(power W, current A per phase, phases) the EV draws under the composite schedule
        (now, or `at`); negative while it discharges."""
        ev = evse.ev
        tx = evse.tx
        spec = evse.spec
        if ev is None or tx is None or not tx.authorized or tx.ended or not evse.operative:
            return 0.0, 0.0, 0
        now = at or self.clock.now()
        electrical = self._electrical(evse)
        unit = "A" if spec.kind == "AC" else "W"
        op = None
        if not self.ignore_profiles:
            op = operation_at(self.profiles, spec.evse_id, now, unit, electrical, self._tx(evse))
        target = math.inf if op is None else op.target()
        if spec.kind == "AC" and op is not None and op.number_phases is not None:
            electrical = Electrical("AC", min(electrical.phases, op.number_phases), spec.voltage_v)
        if target < 0:
            return self._discharge(evse, electrical, -target)
        if spec.kind == "AC":
            offered = min(spec.max_current_a, target)
            share_w = self._station_share_w(now)
            if share_w is not None:
                offered = min(offered, share_w / (spec.voltage_v * electrical.phases))
            if offered < spec.min_current_a:
                offered = 0.0  # IEC 61851: below 6 A the EVSE pauses
            amps = ev.ac_current_a(offered)
            phases = electrical.phases
            return amps * spec.voltage_v * phases, amps, phases
        offered_w = min(spec.max_power_w or 0.0, target)
        share_w = self._station_share_w(now)
        if share_w is not None:
            offered_w = min(offered_w, share_w)
        watts = ev.dc_power_w(offered_w)
        return watts, watts / 400.0, 1

    def _discharge(
        self, evse: EvseState, electrical: Electrical, wanted: float
    ) -> tuple[float, float, int]:
        """(negative power W, negative current A, phases) for a discharge of `wanted` (A per
        phase on AC, W on DC), within the EVSE's and the EV's discharge limits."""
        ev = evse.ev
        spec = evse.spec
        if ev is None or evse.tx is None or not self._can_discharge(evse):
            return 0.0, 0.0, 0
        if not evse.tx.may_discharge:  # the CSMS allowed no bidirectional transfer (Q01)
            return 0.0, 0.0, 0
        evse_max_w = spec.max_discharge_power_w or 0.0
        if spec.kind == "AC":
            factor = spec.voltage_v * electrical.phases
            ev_max_w = ev.discharge_limit_w(ev.max_ac_current_a * factor)
            amps = min(wanted, min(evse_max_w, ev_max_w) / factor)
            if amps < spec.min_current_a:
                return 0.0, 0.0, 0  # the same 6 A floor as charging
            return -amps * factor, -amps, electrical.phases
        watts = min(wanted, evse_max_w, ev.discharge_limit_w(ev.max_dc_power_w))
        if watts <= 0:
            return 0.0, 0.0, 0
        return -watts, -watts / 400.0, 1

    def _station_share_w(self, now: datetime) -> float | None:
        """Equal share of the station-wide limit (max profile, external constraints) for each
        EVSE that is charging, so that together they stay under it; None if no such limit."""
        if self.ignore_profiles or len(self.evses) < 2:
            return None
        electrical = Electrical(
            "AC" if self._all_ac() else "DC",
            max(e.phases for e in self.spec.evses),
            self.spec.evses[0].voltage_v,
        )
        got = limit_at(self.profiles, 0, now, "W", electrical)
        if got is None:
            return None
        charging = sum(
            1
            for e in self.evses.values()
            if e.ev is not None and e.tx is not None and e.tx.authorized and not e.tx.ended
        )
        return got[0] / max(1, charging)

    def _advance(self, evse: EvseState) -> None:
        """Integrate energy up to now, changing the power at each schedule step in between:
        the meter follows the profile to the second however late the meter loop wakes."""
        now = self.clock.now()
        last = evse.last_update
        evse.last_update = now
        while last is not None and last < now:
            change = None
            if evse.tx is not None and not self.ignore_profiles:
                change = next_change(self.profiles, evse.spec.evse_id, last,
                                     (now - last).total_seconds(), self._tx(evse))
            self._integrate(evse, ((change or now) - last).total_seconds())
            if change is None:
                return
            self._set_power(evse, *self._draw(evse, change))
            last = change

    def _integrate(self, evse: EvseState, dt: float) -> None:
        """Energy at the present power for `dt` seconds, into the EV and the meter."""
        if evse.power_w == 0 or dt <= 0:
            return
        energy = evse.power_w * dt / 3600.0
        if energy < 0:  # V2X: the EV feeds back, down to its reserve
            given = -energy if evse.ev is None else evse.ev.discharge(-energy)
            evse.export_wh += given
            return
        if evse.ev is not None:
            energy = min(energy, evse.ev.energy_needed_wh)
            evse.ev.charge(energy)
        evse.energy_wh += energy

    def _set_power(self, evse: EvseState, watts: float, amps: float, phases: int) -> None:
        evse.power_w = watts
        evse.current_a = amps
        evse.phases_in_use = phases

    def _charging_state(self, evse: EvseState, watts: float, *_: Any) -> str:
        ev = evse.ev
        tx = evse.tx
        if ev is None:
            return "Idle"
        if tx is None or not tx.authorized:
            return "EVConnected"
        if watts != 0:  # discharging is energy transfer too (2.1 has no other state for it)
            return "Charging"
        if ev.satisfied:
            return "SuspendedEV"
        return "SuspendedEVSE"

    def _recompute(self, evse: EvseState) -> None:
        """Bring the meter up to now and set the power for the limits in force now."""
        self._advance(evse)
        watts, amps, phases = self._draw(evse)
        old = evse.power_w
        self._set_power(evse, watts, amps, phases)
        tx = evse.tx
        if tx is not None and not tx.ended:
            state = self._charging_state(evse, watts)
            mode = self._operation_mode(evse)
            if state != tx.charging_state:
                tx.charging_state = state
                tx.operation_mode = mode
                self._spawn(self._tx_event(evse, "Updated", "ChargingStateChanged"))
            elif mode != tx.operation_mode:  # 2.1: the CSMS learns the EVSE follows it now
                tx.operation_mode = mode
                self._spawn(self._tx_event(evse, "Updated", "OperationModeChanged"))
            elif state == "Charging" and abs(watts - old) > self._significance() * max(
                    abs(old), 1.0):
                # a schedule step or a new limit: reported with the new rate now, as
                # SmartChargingCtrlr.LimitChangeSignificance allows, so the CSMS's meter
                # data do not hold the old rate until the next periodic sample
                self._spawn(self._tx_event(evse, "Updated", "ChargingRateChanged"))
        _wake(evse)

    def _operation_mode(self, evse: EvseState) -> str | None:
        """The V2X operation mode a bidirectional EVSE on 2.1 follows now (None elsewhere)."""
        if not self._can_discharge(evse) or evse.tx is None:
            return None
        op = None
        if not self.ignore_profiles:
            op = operation_at(self.profiles, evse.spec.evse_id, self.clock.now(), "W",
                              self._electrical(evse), self._tx(evse))
        return CHARGING_ONLY if op is None else op.mode

    async def _meter_loop(self, evse: EvseState, tx: TxState) -> None:
        """While `tx` runs: follow the schedule, send periodic meter values."""
        next_sample = self.clock.now() + timedelta(seconds=self._meter_interval())
        while not tx.ended and not self._stopping:
            now = self.clock.now()
            wake_at = min(next_sample, now + timedelta(seconds=MAX_CONTROL_STEP_S))
            change = next_change(
                self.profiles, evse.spec.evse_id, now, MAX_CONTROL_STEP_S, self._tx(evse)
            )
            if change is not None:
                wake_at = min(wake_at, change)
            bound = self._battery_bound_s(evse)
            if bound is not None:
                wake_at = min(wake_at, now + timedelta(seconds=bound))
            await self._sleep_until(evse, wake_at)
            if tx.ended:
                return
            self.profiles.expire(self.clock.now())
            self._recompute(evse)
            now = self.clock.now()
            if now >= next_sample:
                interval = self._meter_interval()
                next_sample += timedelta(seconds=interval)
                if next_sample <= now:
                    next_sample = now + timedelta(seconds=interval)
                # sent aside: the power control above must not wait for the CSMS's answer
                # (a slow round trip would make the EVSE miss a schedule step)
                self._spawn(self._periodic_sample(evse, tx))

    def _battery_bound_s(self, evse: EvseState) -> float | None:
        """Seconds until the EV reaches its reserve (discharging) or its energy (charging) at
        the present power: the power changes then, not a control step later."""
        ev = evse.ev
        if ev is None or evse.power_w == 0:
            return None
        left_wh = ev.dischargeable_wh if evse.power_w < 0 else ev.energy_needed_wh
        if left_wh < RESERVE_SNAP_WH:  # there already: no busy wake-ups on a rounding residue
            return None
        return left_wh * 3600.0 / abs(evse.power_w) + 1e-3

    async def _periodic_sample(self, evse: EvseState, tx: TxState) -> None:
        if evse.tx is tx and not tx.ended:
            await self._tx_event(evse, "Updated", "MeterValuePeriodic")

    def _significance(self) -> float:
        return max(0.0, self.device_model.number("SmartChargingCtrlr",
                                                 "LimitChangeSignificance"))

    def _meter_interval(self) -> float:
        return max(1.0, self.device_model.number("SampledDataCtrlr", "TxUpdatedInterval"))

    async def _sleep_until(self, evse: EvseState, t: datetime) -> None:
        seconds = (t - self.clock.now()).total_seconds()
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        evse.sleeper = sleeper
        try:
            await asyncio.wait((sleeper,))  # returns early when _wake cancels the sleep
        finally:
            evse.sleeper = None
            sleeper.cancel()

    def _recompute_all(self) -> None:
        for evse in self.evses.values():
            self._recompute(evse)

    def _all_ac(self) -> bool:
        return all(e.kind == "AC" for e in self.spec.evses)


def _wake(evse: EvseState) -> None:
    sleeper = evse.sleeper
    if sleeper is not None and not sleeper.done() and sleeper is not asyncio.current_task():
        sleeper.cancel()
