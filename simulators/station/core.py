"""The simulated station: a `Link` to the CSMS and the `Physics` of its EVSEs, driven by a
test or a fleet through the public surface below (plug in, present a token, unplug), with
the transaction lifecycle (block E) that turns those events into TransactionEvents.

CSMS-initiated calls are answered by the block modules through the table in `handlers`.
Nothing here decides smart-charging policy: the station only keeps what the CSMS sets and
lets each EV draw no more than the composite schedule allows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from simulators.clock import Clock, SystemClock, to_ocpp
from simulators.device_model import DeviceModel, add_v2x_variables, standard_device_model
from simulators.ev import EV
from simulators.profiles import V2X_OPERATION_MODES, ProfileStore
from simulators.station import diagnostics, reservation, tariff_cost
from simulators.station.authorization import LocalAuth, master_pass_group, may_stop
from simulators.station.diagnostics import DiagnosticsState
from simulators.station.firmware import FirmwareState
from simulators.station.handlers import HANDLERS
from simulators.station.link import CallFailed, Link, NotConnected
from simulators.station.model import EvseState, StationSpec, TxState
from simulators.station.physics import Physics, _wake
from simulators.station.provisioning import run_scheduled_resets
from simulators.station.security import CertificateStore
from simulators.station.smart_charging import install_remote_profile

log = logging.getLogger("simulators.station")


class Station(Link, Physics):
    """One simulated charging station; see the package docstring for a use."""

    def __init__(
        self,
        spec: StationSpec,
        url: str,
        clock: Clock | None = None,
        ssl: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.url = url.rstrip("/") + "/" + spec.station_id
        self.clock: Clock = clock or SystemClock()
        self.ssl = ssl
        self.rng = rng or random.Random()
        self.boot_status: str | None = None
        self.heartbeat_interval_s = spec.heartbeat_interval_s
        self.profiles = ProfileStore()
        self.evses: dict[int, EvseState] = {e.evse_id: EvseState(e) for e in spec.evses}
        self.device_model: DeviceModel = standard_device_model(
            station_id=spec.station_id,
            vendor=spec.vendor,
            model=spec.model,
            serial_number=spec.serial_number or f"SN-{spec.station_id}",
            firmware_version=spec.firmware_version,
            evses=[(e.evse_id, e.kind, e.phases, e.max_power_w or 0.0) for e in spec.evses],
            meter_interval_s=spec.meter_interval_s,
            heartbeat_interval_s=spec.heartbeat_interval_s,
            rate_units=spec.rate_units,
            periods_per_schedule=spec.periods_per_schedule,
            max_stack_level=spec.max_stack_level,
            max_entries=spec.max_entries,
            phases3to1=spec.phases3to1,
            password=spec.password,
            tx_message_attempts=spec.tx_message_attempts,
            tx_message_attempt_interval_s=spec.tx_message_attempt_interval_s,
        )
        if spec.ocpp_version == "2.1" and any(e.bidirectional for e in spec.evses):
            for e in spec.evses:
                if e.bidirectional:
                    add_v2x_variables(
                        self.device_model, e.evse_id, e.kind, e.phases, V2X_OPERATION_MODES
                    )
            measurands = self.device_model.value("SampledDataCtrlr", "TxUpdatedMeasurands")
            self.device_model.put("SampledDataCtrlr", "TxUpdatedMeasurands", measurands
                                  + ",Energy.Active.Export.Register,Power.Active.Export")
        # fault injection
        self.ignore_profiles = False
        self.drop_responses = False
        self.response_delay_s = 0.0
        self._init_link(
            {action: functools.partial(handler, self) for action, handler in HANDLERS.items()}
        )
        self.certificates = CertificateStore()  # its own certificate and trusted roots (A)
        self.local_auth = LocalAuth()
        self.network_slots: dict[int, dict] = {}  # B09: connection profiles by slot
        # B11/B12: OnIdle resets answered Scheduled, done once idle (None: the station)
        self.scheduled_resets: set[int | None] = set()
        self.reservations: dict[int, reservation.Reservation] = {}  # block H
        self.costs: dict[str, float] = {}  # block I: the newest cost shown per transaction
        self.display: list[str] = []  # block I: tariff and cost texts shown, newest last
        self.firmware = FirmwareState()  # block L: images, faults, statuses sent
        self.diagnostics = DiagnosticsState()  # block N: monitors, log uploads
        diagnostics.install(self)
        self.display_messages: dict[int, dict] = {}  # block O, by message id

    # ------------------------------------------------------------------ public surface

    async def report_value(self, component: str, variable: str, value: float) -> int:
        """A measured value: NotifyEvent for each monitor it crosses (N07)."""
        return await diagnostics.report_value(self, component, variable, value)

    @property
    def station_id(self) -> str:
        return self.spec.station_id

    async def status(self, evse_id: int, status: str) -> None:
        """StatusNotification for connector 1 of `evse_id` (held until boot is Accepted)."""
        evse = self._evse(evse_id)
        evse.status = status
        self.device_model.put("EVSE", "AvailabilityState", status, evse_id)
        if self.connected and self.boot_status == "Accepted":
            await self._send_status(evse)

    async def plug_in(self, evse_id: int, ev: EV) -> None:
        """Cable plugged in: Occupied, TransactionEvent Started, NotifyEVChargingNeeds."""
        evse = self._evse(evse_id)
        if evse.ev is not None:
            raise RuntimeError(f"EVSE {evse_id} already has an EV")
        self._advance(evse)
        evse.ev = ev
        await self.status(evse_id, "Occupied")
        if evse.tx is None:
            await self._start_transaction(evse, "CablePluggedIn")
        else:  # started by RequestStartTransaction before the cable
            evse.tx.charging_state = self._charging_state(evse, self._draw(evse)[0])
            await self._tx_event(evse, "Updated", "CablePluggedIn")
        if ev.iso15118 or ev.bidirectional:  # ISO 15118 (-20 for a bidirectional EV)
            await self._notify_charging_needs(evse)
        self._recompute_all()

    async def present_token(self, evse_id: int, token: str, token_type: str = "ISO14443") -> str:
        """Authorize an idToken; if Accepted, authorize the transaction and start charging.
        "Reserved" (not an authorization status): the EVSE is held for another driver."""
        evse = self._evse(evse_id)
        id_token = {"idToken": token, "type": token_type}
        info, transfer = await self._authorize(id_token)
        status = info["status"]
        if status != "Accepted":
            return status
        token_group = (info.get("groupIdToken") or {}).get("idToken")
        master = master_pass_group(self)
        if master and token_group == master:  # C16: stops every transaction, starts none
            for running in self.evses.values():
                if running.tx is not None and running.tx.authorized:
                    running.tx.stop_id_token = id_token
                    await self._end_transaction(running, "StopAuthorized", "MasterPass")
            return status
        if evse.tx is not None and evse.tx.authorized:  # C09: a token stops its transaction
            tx = evse.tx
            if not may_stop(self, tx.transaction_id, tx.id_token, id_token, info):
                return "NotAllowed"
            tx.stop_id_token = id_token
            await self._end_transaction(evse, "StopAuthorized", "Local")
            return status
        allowed, reservation_id = reservation.claim(self, evse, id_token,
                                                    info.get("groupIdToken"))
        if not allowed:
            return "Reserved"
        if evse.tx is None:
            await self._start_transaction(evse, "Authorized", id_token=id_token,
                                          reservation_id=reservation_id,
                                          allowed_energy_transfer=transfer)
        else:
            evse.tx.id_token = id_token
            evse.tx.reservation_id = reservation_id
            evse.tx.allowed_energy_transfer = transfer
            await self._authorize_transaction(evse, "Authorized")
        if evse.tx is not None:
            self.local_auth.tx_groups[evse.tx.transaction_id] = token_group
        return status

    def _transaction_answered(self, payload: dict, response: dict) -> None:
        """E05: a token the CSMS does not accept ends its running transaction, with
        TxCtrlr.StopTxOnInvalidId (else the transaction goes on, as the spec allows); and
        the running cost shown to the driver (block I)."""
        tariff_cost.on_transaction_event(self, payload, response)
        info = response.get("idTokenInfo")
        if info is None or info["status"] == "Accepted" or payload["eventType"] == "Ended":
            return
        if "idToken" in payload:
            self.local_auth.remember(self, payload["idToken"], info)
        if not self.device_model.flag("TxCtrlr", "StopTxOnInvalidId"):
            return
        tx_id = payload["transactionInfo"]["transactionId"]
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.transaction_id == tx_id and not evse.tx.ended:
                self._spawn(self._end_transaction(evse, "Deauthorized", "DeAuthorized"))

    async def _authorize(self, id_token: dict) -> tuple[dict, tuple[str, ...]]:
        """The idTokenInfo for a token: from the CSMS (C01, then cached), else from the
        local list or the cache, else by AuthCtrlr.LocalAuthorizeOffline; with the energy
        transfer modes the CSMS allows (2.1 Q01; none said, or offline: charging only)."""
        if self.connected and self.boot_status == "Accepted":
            try:
                response = await self.call("Authorize", {"idToken": id_token})
                info: dict = response["idTokenInfo"]
                self.local_auth.remember(self, id_token, info)
                tariff_cost.on_authorize(self, info)  # block I: the tariff shown
                return info, tuple(response.get("allowedEnergyTransfer") or ())
            except (NotConnected, TimeoutError):
                pass
        known = self.local_auth.offline_info(self, id_token, self.clock.now())
        return (known if known is not None else {"status": self._offline_auth()}), ()

    async def unplug(self, evse_id: int) -> None:
        """EV leaves: stop charging, TransactionEvent Ended, StatusNotification Available."""
        evse = self._evse(evse_id)
        self._advance(evse)
        self._set_power(evse, 0.0, 0.0, 0)
        evse.pending_remote_start = None
        if evse.tx is not None:
            await self._end_transaction(evse, "EVDeparted", "EVDisconnected", cable_gone=True)
        evse.ev = None
        self._recompute_all()  # a station-wide limit is shared by fewer EVs now
        await self.status(evse_id, "Available" if evse.operative else "Unavailable")
        await reservation.refresh(self)  # still reserved: Reserved again

    def transaction_id(self, evse_id: int) -> str | None:
        tx = self._evse(evse_id).tx
        return tx.transaction_id if tx is not None else None

    # ------------------------------------------------------------------ messages out

    async def _send_status(self, evse: EvseState) -> None:
        await self.call(
            "StatusNotification",
            {
                "timestamp": to_ocpp(self.clock.now()),
                "connectorStatus": evse.status,
                "evseId": evse.spec.evse_id,
                "connectorId": 1,
            },
        )

    def _offline_auth(self) -> str:
        if self.device_model.flag("AuthCtrlr", "LocalAuthorizeOffline"):
            return "Accepted"
        return "Invalid"

    async def _start_transaction(
        self,
        evse: EvseState,
        trigger: str,
        id_token: dict | None = None,
        remote_start_id: int | None = None,
        reservation_id: int | None = None,
        allowed_energy_transfer: tuple[str, ...] = (),
    ) -> None:
        now = self.clock.now()
        evse.tx = TxState(
            transaction_id=uuid.uuid4().hex,
            started=now,
            id_token=id_token,
            remote_start_id=remote_start_id,
            charging_state="EVConnected" if evse.ev is not None else "Idle",
            authorized=id_token is not None,
            reservation_id=reservation_id,
            allowed_energy_transfer=allowed_energy_transfer,
        )
        evse.last_update = now
        if evse.pending_remote_start is not None:
            install_remote_profile(self, evse)
        tx = evse.tx
        tx.charging_state = self._charging_state(evse, self._draw(evse)[0])
        tx.operation_mode = self._operation_mode(evse)
        await self._tx_event(evse, "Started", trigger, context="Transaction.Begin")
        evse.meter_task = self._spawn(self._meter_loop(evse, tx))
        self._recompute_all()

    async def _authorize_transaction(self, evse: EvseState, trigger: str) -> None:
        tx = evse.tx
        assert tx is not None
        tx.authorized = True
        self._advance(evse)
        state = self._charging_state(evse, *self._draw(evse))
        tx.charging_state = state
        await self._tx_event(evse, "Updated", trigger)
        self._recompute_all()

    async def _end_transaction(
        self, evse: EvseState, trigger: str, stopped_reason: str, cable_gone: bool = False
    ) -> None:
        tx = evse.tx
        if tx is None or tx.ended:
            return
        self._advance(evse)
        tx.ended = True
        self._set_power(evse, 0.0, 0.0, 0)
        tx.charging_state = "Idle" if cable_gone or evse.ev is None else "EVConnected"
        _wake(evse)  # the meter loop sees the end and returns
        await self._tx_event(
            evse, "Ended", trigger, context="Transaction.End", stopped_reason=stopped_reason
        )
        self.profiles.end_transaction(tx.transaction_id)
        evse.tx = None
        if self.scheduled_resets:
            self._spawn(run_scheduled_resets(self))

    async def _tx_event(
        self,
        evse: EvseState,
        event_type: str,
        trigger: str,
        context: str = "Sample.Periodic",
        stopped_reason: str | None = None,
        with_meter: bool = True,
    ) -> None:
        """Queue one TransactionEvent with its seqNo and have it sent in order (E13)."""
        tx = evse.tx
        assert tx is not None
        info: dict = {"transactionId": tx.transaction_id, "chargingState": tx.charging_state}
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if tx.remote_start_id is not None:
            info["remoteStartId"] = tx.remote_start_id
        if tx.operation_mode is not None:  # only on 2.1, for a bidirectional EVSE
            info["operationMode"] = tx.operation_mode
        payload: dict = {
            "eventType": event_type,
            "timestamp": to_ocpp(self.clock.now()),
            "triggerReason": trigger,
            "seqNo": tx.seq_no,
            "transactionInfo": info,
            "evse": {"id": evse.spec.evse_id, "connectorId": 1},
        }
        tx.seq_no += 1
        if tx.id_token is not None and (
            event_type == "Started" or trigger in ("Authorized", "RemoteStart")
        ):
            payload["idToken"] = tx.id_token
            if tx.reservation_id is not None:
                payload["reservationId"] = tx.reservation_id
        if trigger == "StopAuthorized" and tx.stop_id_token is not None:
            payload["idToken"] = tx.stop_id_token  # who stopped it (C09, C16)
        if with_meter:
            payload["meterValue"] = [self._meter_value(evse, context)]
        if not self.connected:
            payload["offline"] = True
        self._enqueue(payload)
        if not (self.connected and self.boot_status == "Accepted"):
            return  # delivered in order after the reconnect (or boot Accepted)
        if self._retrying:  # an earlier event waits to be sent again: this one follows it
            self._kick_sender()
            return
        # return once this event had its first attempt, as a station that sends it at once
        # would; retries go on in the background, in order
        tried: asyncio.Future = asyncio.get_running_loop().create_future()
        self._first_try[id(payload)] = tried
        try:
            await asyncio.wait({tried, self._kick_sender()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._first_try.pop(id(payload), None)

    async def _notify_charging_needs(self, evse: EvseState) -> None:
        ev = evse.ev
        assert ev is not None
        needs: dict
        if evse.spec.kind == "DC":
            needs = {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": {
                    "evMaxCurrent": int(ev.max_dc_power_w / 400),
                    "evMaxVoltage": 500,
                    "energyAmount": int(ev.energy_needed_wh),
                    "evMaxPower": int(ev.max_dc_power_w),
                    "stateOfCharge": int(ev.soc * 100),
                    "evEnergyCapacity": int(ev.battery_kwh * 1000),
                },
            }
        else:
            phases = min(ev.ac_phases, evse.spec.phases)
            needs = {
                "requestedEnergyTransfer": {1: "AC_single_phase", 2: "AC_two_phase"}.get(
                    phases, "AC_three_phase"
                ),
                "acChargingParameters": {
                    "energyAmount": int(ev.energy_needed_wh),
                    "evMinCurrent": int(evse.spec.min_current_a),
                    "evMaxCurrent": int(ev.max_ac_current_a),
                    "evMaxVoltage": int(evse.spec.voltage_v),
                },
            }
        if ev.departure is not None:
            needs["departureTime"] = to_ocpp(ev.departure)
        if ev.bidirectional and self._can_discharge(evse):
            self._add_v2x_needs(evse, needs)
        try:
            await self.call(
                "NotifyEVChargingNeeds", {"evseId": evse.spec.evse_id, "chargingNeeds": needs}
            )
        except (ConnectionError, TimeoutError, CallFailed) as exc:
            log.info("%s NotifyEVChargingNeeds failed: %s", self.station_id, exc)

    def _add_v2x_needs(self, evse: EvseState, needs: dict) -> None:
        """OCPP 2.1: a bidirectional EV on a bidirectional EVSE asks for BPT and says what it
        can give (ISO 15118-20 terms: signed energies to its reserve, its target and full)."""
        ev = evse.ev
        assert ev is not None
        capacity_wh = ev.battery_kwh * 1000.0
        if evse.spec.kind == "AC":
            plain = needs["requestedEnergyTransfer"]
            bpt = "AC_BPT"
            charge_max_w = ev.max_ac_current_a * evse.spec.voltage_v * min(
                ev.ac_phases, evse.spec.phases
            )
        else:
            plain, bpt, charge_max_w = "DC", "DC_BPT", ev.max_dc_power_w
        charge_max_w = min(charge_max_w, evse.spec.max_power_w or charge_max_w)
        discharge_max_w = min(
            ev.max_discharge_power_w if ev.max_discharge_power_w is not None else charge_max_w,
            evse.spec.max_discharge_power_w or 0.0,
        )
        to_reserve_wh = (ev.min_soc - ev.soc) * capacity_wh  # negative: it may give this much
        to_full_wh = (1.0 - ev.soc) * capacity_wh
        target_soc = min(1.0, ev.soc + ev.energy_needed_wh / capacity_wh)
        needs["requestedEnergyTransfer"] = bpt
        needs["availableEnergyTransfer"] = [plain, bpt]
        needs["controlMode"] = "ScheduledControl"
        needs["v2xChargingParameters"] = {
            "minChargePower": 0.0,
            "maxChargePower": round(charge_max_w, 1),
            "minDischargePower": 0.0,
            "maxDischargePower": round(discharge_max_w, 1),
            "evTargetEnergyRequest": round(ev.energy_needed_wh, 1),
            "evMinEnergyRequest": round(min(ev.energy_needed_wh, max(0.0, to_reserve_wh)), 1),
            "evMaxEnergyRequest": round(to_full_wh, 1),
            "evMinV2XEnergyRequest": round(to_reserve_wh, 1),
            "evMaxV2XEnergyRequest": round(to_full_wh, 1),
            "targetSoC": round(target_soc * 100),
        }
        now = self.clock.now()
        until = ev.departure or now + timedelta(hours=24)
        needs["evEnergyOffer"] = {
            "evPowerSchedule": {
                "timeAnchor": to_ocpp(now),
                "evPowerScheduleEntries": [
                    {
                        "duration": max(1, int((until - now).total_seconds())),
                        "power": -round(discharge_max_w, 1),  # what it offers to give back
                    }
                ],
            }
        }
