"""CSMS-initiated commands, for the HTTP API and the smart-charging scheduler.

Each method sends one CALL over the station's connection (one in flight per station, with a
timeout) and returns the station's answer as a payload dict. Errors come back as exceptions:
StationOffline, CallFailed (with the CALLERROR code), TimeoutError.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from csms.clock import Clock
from csms.connection import Connections
from csms.frames import Payload
from csms.ocpp.message_limits import (
    SPLIT_BY_FLOW,
    SPLITTABLE,
    Limits,
    join_replies,
    parse_limit,
    split_request,
)
from csms.store import Store
from csms.store.devices import Variable

# requestId, remoteStartId and the like are int32 at a station. Counting from the clock's
# milliseconds (modulo int32) keeps ids from repeating across a restart of the CSMS in
# practice, so a late notification is not matched to a newer request.
_ID_SPACE = 2**31 - 2**24


def _evse(evse_id: int | None, connector_id: int | None = None) -> Payload | None:
    if evse_id is None:
        return None
    evse: Payload = {"id": evse_id}
    if connector_id is not None:
        evse["connectorId"] = connector_id
    return evse


def _clean(payload: dict[str, Any]) -> Payload:
    return {k: v for k, v in payload.items() if v is not None}


def _variable_key(item: Payload) -> tuple[Any, ...]:
    component, variable = item["component"], item["variable"]
    evse = component.get("evse") or {}
    return (component["name"], component.get("instance", ""), evse.get("id", 0),
            evse.get("connectorId", 0), variable["name"], variable.get("instance", ""),
            item.get("attributeType", "Actual"))


def _variable(result: Payload, value: str | None) -> Variable:
    """A Get/SetVariables result as a device model row."""
    name, instance, evse_id, connector_id, variable, v_instance, attribute = (
        _variable_key(result))
    return Variable(component=name, component_instance=instance, evse_id=evse_id,
                    connector_id=connector_id, variable=variable,
                    variable_instance=v_instance, attribute_type=attribute, value=value,
                    mutability=None, data_type=None, unit=None)


PRIORITY = ("OCPPCommCtrlr", "NetworkConfigurationPriority")


@dataclass
class NetworkProfileOutcome:
    status: str  # SetNetworkProfile
    priority: str | None = None  # the NetworkConfigurationPriority asked for
    priority_status: str | None = None  # SetVariables' answer for it
    reset_status: str | None = None


class Commands:
    def __init__(self, connections: Connections, store: Store, clock: Clock) -> None:
        self.connections = connections
        self.store = store
        self.clock = clock
        self._request_ids = itertools.count(int(clock.now().timestamp() * 1000) % _ID_SPACE)

    def next_request_id(self) -> int:
        """A fresh id for a request's `requestId` (and `remoteStartId`)."""
        return next(self._request_ids) % (2**31 - 1) + 1

    async def call(
        self, station_id: str, action: str, payload: Payload, timeout: float | None = None
    ) -> Payload:
        """One CALL, or several where the station's message limits ask for it (B06.FR.05):
        a request whose items exceed `ItemsPerMessage...`/`BytesPerMessage...` is sent in
        parts, one after the other, and the answers joined."""
        connection = self.connections.get(station_id)
        if action in SPLITTABLE:
            parts = split_request(action, payload, await self.message_limits(station_id, action))
            if len(parts) > 1:
                replies = [await connection.call(action, part, timeout) for part in parts]
                return join_replies(action, replies)
        if action == "GetReport" and payload.get("componentVariable"):
            parts = split_request(action, payload, await self.message_limits(station_id, action))
            if len(parts) > 1:
                return await self._report_in_parts(station_id, parts, timeout)
        return await connection.call(action, payload, timeout)

    async def _report_in_parts(
        self, station_id: str, parts: list[Payload], timeout: float | None
    ) -> Payload:
        """B08 within ItemsPerMessageGetReport: one GetReport per part, each with its own
        requestId (the first keeps the one asked for) and stored as a report of its own;
        Accepted if any part was."""
        connection = self.connections.get(station_id)
        statuses = []
        for i, part in enumerate(parts):
            request = part if i == 0 else {**part, "requestId": self.next_request_id()}
            reply = await connection.call("GetReport", request, timeout)
            statuses.append(str(reply["status"]))
            await self.store.reports.add(station_id, request["requestId"], "custom", request,
                                         statuses[-1], self.clock.now())
        return {"status": "Accepted" if "Accepted" in statuses else statuses[0]}

    async def message_limits(self, station_id: str, action: str) -> Limits:
        """The station's reported per-message limits for `action` (none if unreported)."""
        spec = SPLITTABLE.get(action) or SPLIT_BY_FLOW[action]
        found: dict[str, str | None] = {}
        for v in await self.store.devices.variables(station_id, spec.component):
            if (v.attribute_type == "Actual" and v.evse_id == 0 and not v.component_instance
                    and not v.variable_instance):
                found[v.variable] = v.value
        return Limits(items=parse_limit(found.get(spec.items_variable)),
                      bytes=parse_limit(found.get(spec.bytes_variable)))

    # F remote control
    async def request_start_transaction(
        self, station_id: str, id_token: str, token_type: str = "Central", *,
        evse_id: int | None = None, remote_start_id: int | None = None,
        charging_profile: Payload | None = None,
    ) -> Payload:
        return await self.call(station_id, "RequestStartTransaction", _clean({
            "idToken": {"idToken": id_token, "type": token_type},
            "remoteStartId": remote_start_id if remote_start_id is not None
            else self.next_request_id(),
            "evseId": evse_id,
            "chargingProfile": charging_profile,
        }))

    async def request_stop_transaction(self, station_id: str, transaction_id: str) -> Payload:
        return await self.call(
            station_id, "RequestStopTransaction", {"transactionId": transaction_id}
        )

    async def unlock_connector(
        self, station_id: str, evse_id: int, connector_id: int = 1
    ) -> Payload:
        return await self.call(
            station_id, "UnlockConnector", {"evseId": evse_id, "connectorId": connector_id}
        )

    async def trigger_message(
        self, station_id: str, message: str, evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> Payload:
        return await self.call(station_id, "TriggerMessage", _clean({
            "requestedMessage": message, "evse": _evse(evse_id, connector_id),
        }))

    async def get_transaction_status(
        self, station_id: str, transaction_id: str | None = None
    ) -> Payload:
        return await self.call(
            station_id, "GetTransactionStatus", _clean({"transactionId": transaction_id})
        )

    # B provisioning
    async def reset(
        self, station_id: str, type: str = "OnIdle", evse_id: int | None = None
    ) -> Payload:
        return await self.call(station_id, "Reset", _clean({"type": type, "evseId": evse_id}))

    async def get_base_report(self, station_id: str, report_base: str = "FullInventory") -> Payload:
        """B07; the request and its answer are stored, NotifyReport parts complete it."""
        request = {"requestId": self.next_request_id(), "reportBase": report_base}
        reply = await self.call(station_id, "GetBaseReport", request)
        await self.store.reports.add(station_id, request["requestId"], "base", request,
                                     reply["status"], self.clock.now())
        return reply

    async def get_report(
        self, station_id: str, *, criteria: list[str] | None = None,
        component_variables: list[Payload] | None = None,
    ) -> Payload:
        """B08: a custom report (by component criteria and/or component variables)."""
        request = _clean({"requestId": self.next_request_id(),
                          "componentCriteria": criteria or None,
                          "componentVariable": component_variables or None})
        reply = await self.call(station_id, "GetReport", request)
        await self.store.reports.add(station_id, request["requestId"], "custom", request,
                                     reply["status"], self.clock.now())
        return reply

    async def set_network_profile(
        self, station_id: str, slot: int, connection_data: Payload, *, first: bool = True,
        reset: bool = False,
    ) -> NetworkProfileOutcome:
        """B09/B10: store a connection profile in a slot; if accepted, put the slot first
        (or last) in OCPPCommCtrlr.NetworkConfigurationPriority; optionally Reset OnIdle
        so the station reconnects with it. Each step runs only if the one before was
        accepted."""
        reply = await self.call(station_id, "SetNetworkProfile", {
            "configurationSlot": slot, "connectionData": connection_data})
        outcome = NetworkProfileOutcome(str(reply["status"]))
        if outcome.status != "Accepted":
            return outcome
        held = next((r.get("attributeValue") or "" for r in await self.get_variables(
            station_id, [PRIORITY]) if r["attributeStatus"] == "Accepted"), "")
        slots = [s.strip() for s in held.split(",") if s.strip() and s.strip() != str(slot)]
        slots = [str(slot), *slots] if first else [*slots, str(slot)]
        outcome.priority = ",".join(slots)
        results = await self.set_variables(station_id, [(*PRIORITY, outcome.priority)])
        outcome.priority_status = str(results[0]["attributeStatus"]) if results else "Missing"
        if reset and outcome.priority_status in ("Accepted", "RebootRequired"):
            outcome.reset_status = str((await self.reset(station_id, "OnIdle"))["status"])
        return outcome

    async def get_variables(
        self, station_id: str, items: list[tuple[str, str]] | list[Payload]
    ) -> list[Payload]:
        """Read variables (as (component, variable) pairs or full GetVariableData); the
        accepted values are also stored in the device model."""
        data = [
            {"component": {"name": i[0]}, "variable": {"name": i[1]}} if isinstance(i, tuple)
            else i
            for i in items
        ]
        reply = await self.call(station_id, "GetVariables", {"getVariableData": data})
        results: list[Payload] = reply["getVariableResult"]
        accepted = [_variable(r, r.get("attributeValue")) for r in results
                    if r["attributeStatus"] == "Accepted"]
        await self.store.devices.upsert_variables(station_id, accepted, self.clock.now())
        return results

    async def set_variables(
        self, station_id: str, items: list[tuple[str, str, str]] | list[Payload]
    ) -> list[Payload]:
        data = [
            {"component": {"name": i[0]}, "variable": {"name": i[1]}, "attributeValue": i[2]}
            if isinstance(i, tuple) else i
            for i in items
        ]
        reply = await self.call(station_id, "SetVariables", {"setVariableData": data})
        results = list(reply["setVariableResult"])
        # what the station accepted is its value now: keep the device model current
        sent = {_variable_key(d): d.get("attributeValue") for d in data}
        accepted = [
            _variable(r, sent.get(_variable_key(r))) for r in results
            if r.get("attributeStatus") == "Accepted" and _variable_key(r) in sent
        ]
        await self.store.devices.upsert_variables(station_id, accepted, self.clock.now())
        return results

    # G availability
    async def change_availability(
        self, station_id: str, operational: bool, evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> Payload:
        return await self.call(station_id, "ChangeAvailability", _clean({
            "operationalStatus": "Operative" if operational else "Inoperative",
            "evse": _evse(evse_id, connector_id),
        }))

    # K smart charging
    async def set_charging_profile(
        self, station_id: str, evse_id: int, profile: Payload
    ) -> Payload:
        return await self.call(
            station_id, "SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile}
        )

    async def clear_charging_profile(
        self, station_id: str, profile_id: int | None = None, *, evse_id: int | None = None,
        purpose: str | None = None, stack_level: int | None = None,
    ) -> Payload:
        criteria = _clean({
            "evseId": evse_id, "chargingProfilePurpose": purpose, "stackLevel": stack_level,
        })
        return await self.call(station_id, "ClearChargingProfile", _clean({
            "chargingProfileId": profile_id, "chargingProfileCriteria": criteria or None,
        }))

    async def get_charging_profiles(
        self, station_id: str, *, evse_id: int | None = None, purpose: str | None = None,
    ) -> Payload:
        return await self.call(station_id, "GetChargingProfiles", _clean({
            "requestId": self.next_request_id(), "evseId": evse_id,
            "chargingProfile": _clean({"chargingProfilePurpose": purpose}),
        }))

    async def get_composite_schedule(
        self, station_id: str, evse_id: int, duration_s: int, rate_unit: str | None = None
    ) -> Payload:
        return await self.call(station_id, "GetCompositeSchedule", _clean({
            "evseId": evse_id, "duration": duration_s, "chargingRateUnit": rate_unit,
        }))

    # Q bidirectional power transfer (OCPP 2.1 only)
    async def notify_allowed_energy_transfer(
        self, station_id: str, transaction_id: str, modes: list[str]
    ) -> Payload:
        """Q01: the energy transfer modes the CSMS allows this transaction now (a V2G
        opt-in or opt-out during the session)."""
        return await self.call(station_id, "NotifyAllowedEnergyTransfer", {
            "transactionId": transaction_id, "allowedEnergyTransfer": modes})

    # C / D authorization
    async def clear_cache(self, station_id: str) -> Payload:
        return await self.call(station_id, "ClearCache", {})

    async def get_local_list_version(self, station_id: str) -> int:
        reply = await self.call(station_id, "GetLocalListVersion", {})
        return int(reply["versionNumber"])

    async def send_local_list(
        self, station_id: str, version: int, tokens: list[tuple[str, str, str]],
        full: bool = True,
    ) -> Payload:
        """tokens: (idToken, type, status) triples."""
        entries = [
            {"idToken": {"idToken": t, "type": ty}, "idTokenInfo": {"status": st}}
            for t, ty, st in tokens
        ]
        return await self.call(station_id, "SendLocalList", _clean({
            "versionNumber": version, "updateType": "Full" if full else "Differential",
            "localAuthorizationList": entries or None,
        }))
