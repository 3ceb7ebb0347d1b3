"""Block B, provisioning: device model variables, base reports (B07) and Reset (B11/B12)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.clock import to_ocpp
from simulators.ocppj import FrameError
from simulators.station.replies import Reply

if TYPE_CHECKING:
    from simulators.station.core import Station


def _within(station: Station, items: list, variable: str) -> None:
    """B05/B06: a request with more items than the station takes per message is refused."""
    limit = int(station.device_model.number("DeviceDataCtrlr", variable))
    if len(items) > limit:
        raise FrameError("OccurrenceConstraintViolation",
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


async def get_base_report(station: Station, req: dict) -> Reply:
    base = req["reportBase"]
    request_id = req["requestId"]
    data = station.device_model.report(base)
    if not data:
        return {"status": "EmptyResultSet"}, None
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

    return {"status": "Accepted"}, send_report


async def reset(station: Station, req: dict) -> Reply:
    busy = any(e.tx is not None for e in station.evses.values())
    if req["type"] == "OnIdle" and busy:
        return {"status": "Scheduled"}, None

    async def restart() -> None:
        for evse in station.evses.values():
            if evse.tx is not None:
                await station._end_transaction(evse, "ResetCommand", "ImmediateReset")
        await station._reboot()

    return {"status": "Accepted"}, restart
