"""Block B, provisioning: BootNotification (B01-B03) and the device model report (B06/B07)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from csms.clock import to_ocpp
from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.deps import Deps
from csms.store.devices import Variable

_request_ids = itertools.count(1)


@dataclass(frozen=True)
class BootNotification:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        store, now = self.deps.store, self.deps.clock.now()
        station = await store.stations.get(ctx.station_id)
        status = "Accepted"
        if self.deps.boot.pending_until_reported and (
            station is None or station.report_complete_at is None
        ):
            status = "Pending"  # B02: provision first; the next boot is accepted
            ctx.after(lambda: _request_base_report(ctx))
        cs = req["chargingStation"]
        await store.stations.record_boot(
            ctx.station_id,
            vendor=cs["vendorName"], model=cs["model"],
            serial_number=cs.get("serialNumber"), firmware_version=cs.get("firmwareVersion"),
            reason=req["reason"], status=status, now=now,
        )
        ctx.boot_status = status
        interval = self.deps.boot.heartbeat_interval_s
        if status != "Accepted":
            interval = self.deps.boot.retry_interval_s
        return {"currentTime": to_ocpp(now), "interval": interval, "status": status}


async def _request_base_report(ctx: StationContext) -> None:
    assert ctx.connection is not None
    await ctx.connection.call(
        "GetBaseReport", {"requestId": next(_request_ids), "reportBase": "FullInventory"}
    )


def report_variables(report_data: list[Payload]) -> list[Variable]:
    """Flatten NotifyReport's reportData into one row per variable attribute."""
    rows = []
    for item in report_data:
        component, variable = item["component"], item["variable"]
        evse = component.get("evse") or {}
        characteristics = item.get("variableCharacteristics") or {}
        for attribute in item["variableAttribute"]:
            rows.append(Variable(
                component=component["name"],
                component_instance=component.get("instance", ""),
                evse_id=evse.get("id", 0),
                connector_id=evse.get("connectorId", 0),
                variable=variable["name"],
                variable_instance=variable.get("instance", ""),
                attribute_type=attribute.get("type", "Actual"),
                value=attribute.get("value"),
                mutability=attribute.get("mutability"),
                data_type=characteristics.get("dataType"),
                unit=characteristics.get("unit"),
            ))
    return rows


@dataclass(frozen=True)
class NotifyReport:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now = self.deps.clock.now()
        await self.deps.store.devices.upsert_variables(
            ctx.station_id, report_variables(req.get("reportData", [])), now
        )
        if not req.get("tbc", False):
            await self.deps.store.stations.set_report_complete(ctx.station_id, now)
        return {}
