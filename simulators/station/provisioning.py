"""Block B, provisioning: device model variables, base reports (B07) and Reset (B11/B12)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from simulators.clock import to_ocpp
from simulators.station.replies import After, ErrorReply, Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station


def _within(station: Station, items: list, variable: str) -> None:
    """B05/B06: a request with more items than the station takes per message is refused."""
    limit = int(station.device_model.number("DeviceDataCtrlr", variable))
    if len(items) > limit:
        raise ErrorReply("OccurrenceConstraintViolation",
                         f"{len(items)} items, {variable} is {limit}")


async def get_variables(station: Station, req: dict) -> Reply:
    _within(station, req["getVariableData"], "ItemsPerMessageGetVariables")
    results = [station.device_model.get_variable(r) for r in req["getVariableData"]]
    return {"getVariableResult": results}, None


async def set_variables(station: Station, req: dict) -> Reply:
    _within(station, req["setVariableData"], "ItemsPerMessageSetVariables")
    results = [station.device_model.set_variable(r) for r in req["setVariableData"]]
    station._start_aligned_meter()
    return {"setVariableResult": results}, None


def _send_report(station: Station, request_id: int, data: list[dict]) -> After:
    """NotifyReport parts of at most DeviceDataCtrlr.ItemsPerMessageGetReport entries."""
    per_message = int(station.device_model.number("DeviceDataCtrlr", "ItemsPerMessageGetReport"))

    async def send_report() -> None:
        generated = to_ocpp(station.clock.now())
        chunks = [data[i : i + per_message] for i in range(0, len(data), per_message)]
        for seq, chunk in enumerate(chunks):
            payload = {
                "requestId": request_id,
                "generatedAt": generated,
                "seqNo": seq,
                "tbc": seq < len(chunks) - 1,
                "reportData": chunk,
            }
            await station.call("NotifyReport", payload)

    return send_report


async def get_base_report(station: Station, req: dict) -> Reply:
    data = station.device_model.report(req["reportBase"])
    if not data:
        return {"status": "EmptyResultSet"}, None
    return {"status": "Accepted"}, _send_report(station, req["requestId"], data)


def _component_key(component: dict) -> tuple[str, int | None, int | None]:
    evse = component.get("evse") or {}
    return (component["name"], evse.get("id"), evse.get("connectorId"))


def _meets(station: Station, component: tuple[str, int | None, int | None],
           criterion: str) -> bool:
    """B08: a component is Active/Available/Enabled/Problem when its variable of that name
    is true."""
    var = station.device_model.find(component[0], criterion, component[1], component[2])
    return var is not None and var.value.lower() == "true"


async def get_report(station: Station, req: dict) -> Reply:
    """B08: the variables of the components that meet every criterion, narrowed to the
    component variables asked for; nothing found is EmptyResultSet."""
    wanted = req.get("componentVariable")
    limit = int(station.device_model.number("DeviceDataCtrlr", "ItemsPerMessageGetReport"))
    if wanted and len(wanted) > limit:
        raise ErrorReply("OccurrenceConstraintViolation",
                         f"{len(wanted)} componentVariable, ItemsPerMessageGetReport is {limit}")
    data = station.device_model.report("FullInventory")
    criteria = req.get("componentCriteria") or []
    if criteria:
        data = [d for d in data
                if all(_meets(station, _component_key(d["component"]), c) for c in criteria)]
    if wanted:
        def asked(d: dict) -> bool:
            for w in wanted:
                component = _component_key(w["component"])
                if component[0] != d["component"]["name"]:
                    continue
                if component[1] is not None and component != _component_key(d["component"]):
                    continue
                variable = w.get("variable")
                if variable is None or variable["name"] == d["variable"]["name"]:
                    return True
            return False

        data = [d for d in data if asked(d)]
    if not data:
        return {"status": "EmptyResultSet"}, None
    return {"status": "Accepted"}, _send_report(station, req["requestId"], data)


async def set_network_profile(station: Station, req: dict) -> Reply:
    """B09: a profile for a slot; refused when it is not OCPP 2.0(.1) or would lower the
    security profile in use (a downgrade is not done this way)."""
    data = req["connectionData"]
    if data["ocppVersion"] != "OCPP20":
        return rejected("UnsupportedVersion", data["ocppVersion"]), None
    current = int(station.device_model.number("SecurityCtrlr", "SecurityProfile"))
    if data["securityProfile"] < current:
        return rejected("SecurityDowngrade",
                        f"security profile {data['securityProfile']} < {current}"), None
    station.network_slots[req["configurationSlot"]] = data
    return {"status": "Accepted"}, None


async def reset(station: Station, req: dict) -> Reply:
    """B11 the station, B12 one EVSE: OnIdle waits for its transactions (Scheduled),
    Immediate ends them first. An EVSE reset leaves the rest of the station running: the
    EVSE is Unavailable while it restarts, then back to its status."""
    if req.get("evseId") is not None:
        return await _reset_evse(station, req["evseId"], req["type"])
    busy = any(e.tx is not None for e in station.evses.values())
    if req["type"] == "OnIdle" and busy:
        station.scheduled_resets.add(None)
        return {"status": "Scheduled"}, None

    async def restart() -> None:
        for evse in station.evses.values():
            if evse.tx is not None:
                await station._end_transaction(evse, "ResetCommand", "ImmediateReset")
        await station._reboot()

    return {"status": "Accepted"}, restart


async def _reset_evse(station: Station, evse_id: int, type_: str) -> Reply:
    evse = station.evses.get(evse_id)
    if evse is None:
        return rejected("UnknownEvse", f"no EVSE {evse_id}"), None
    if type_ == "OnIdle" and evse.tx is not None:
        station.scheduled_resets.add(evse_id)
        return {"status": "Scheduled"}, None

    async def restart() -> None:
        if evse.tx is not None:
            await station._end_transaction(evse, "ResetCommand", "ImmediateReset")
        await _restart_evse(station, evse_id)

    return {"status": "Accepted"}, restart


async def _restart_evse(station: Station, evse_id: int) -> None:
    evse = station.evses[evse_id]
    before = evse.status
    await station.status(evse_id, "Unavailable")
    await station.status(evse_id, before if before != "Unavailable" else "Available")


async def run_scheduled_resets(station: Station) -> None:
    """B11/B12: a reset answered Scheduled happens once its transactions have ended."""
    await asyncio.sleep(0)  # let the step that ended the transaction send what follows it
    for _ in range(200):  # ... and have it answered (2 s at most), as a station would
        if not station._pending:
            break
        await asyncio.sleep(0.01)
    for target in sorted(station.scheduled_resets, key=lambda t: -1 if t is None else t):
        if target is None:
            if all(e.tx is None for e in station.evses.values()):
                station.scheduled_resets.clear()
                await station._reboot()
                return
        elif station.evses[target].tx is None:
            station.scheduled_resets.discard(target)
            await _restart_evse(station, target)
