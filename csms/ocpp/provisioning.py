"""Block B, provisioning: BootNotification (B01-B03) and device model reports (B07/B08)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from csms.clock import to_ocpp
from csms.connection import CallFailed, StationContext
from csms.frames import Payload
from csms.ocpp.deps import Deps
from csms.store.devices import Variable
from csms.store.stations import StationRecord

log = structlog.get_logger()

_ID_SPACE = 2**31 - 1
# a base report request that ended so: no report is coming, stop waiting for it
_REPORT_WILL_NOT_COME = frozenset({"Rejected", "NotSupported", "EmptyResultSet", "Timeout"})


@dataclass(frozen=True)
class BootNotification:
    """B01-B03. An operator's hold (Pending or Rejected) wins; else, with
    `pending_until_reported`, a station is Pending until its device model is reported, its
    report request failed, or `pending_timeout_s` has passed since its first Pending boot."""

    deps: Deps
    # requestIds for the base reports it asks for: seeded from the clock, so a restart
    # does not reuse the ids of reports stored before it
    _ids: list[Iterator[int]] = field(init=False, repr=False, default_factory=list)

    def _next_request_id(self) -> int:
        if not self._ids:
            self._ids.append(itertools.count(
                int(self.deps.clock.now().timestamp() * 1000) % _ID_SPACE))
        return next(self._ids[0]) % _ID_SPACE + 1

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        store, now = self.deps.store, self.deps.clock.now()
        station = await store.stations.get(ctx.station_id)
        status = await self._decide(ctx, station, now)
        cs = req["chargingStation"]
        await store.stations.record_boot(
            ctx.station_id,
            vendor=cs["vendorName"], model=cs["model"],
            serial_number=cs.get("serialNumber"), firmware_version=cs.get("firmwareVersion"),
            reason=req["reason"], status=status, now=now,
        )
        if station is not None:
            if status == "Pending" and station.pending_since is None:
                await store.stations.set_pending_since(ctx.station_id, now)
            elif status == "Accepted" and station.pending_since is not None:
                await store.stations.set_pending_since(ctx.station_id, None)
        ctx.boot_status = status
        interval = self.deps.boot.heartbeat_interval_s
        if status != "Accepted":
            interval = self.deps.boot.retry_interval_s  # B02/B03: boot again after it
        return {"currentTime": to_ocpp(now), "interval": interval, "status": status}

    async def _decide(
        self, ctx: StationContext, station: StationRecord | None, now: datetime
    ) -> str:
        boot = self.deps.boot
        if station is not None and station.boot_hold is not None:
            return station.boot_hold
        if not boot.pending_until_reported or (
            station is not None and station.report_complete_at is not None
        ):
            return "Accepted"
        since = station.pending_since if station is not None else None
        if since is not None:
            waited = (now - since).total_seconds()
            if boot.pending_timeout_s and waited >= boot.pending_timeout_s:
                log.warning("boot.pending_timeout", station_id=ctx.station_id,
                            waited_s=round(waited))
                return "Accepted"
            newest = await self.deps.store.reports.newest_base(ctx.station_id)
            if newest is not None and newest.requested_at >= since and (
                newest.status in _REPORT_WILL_NOT_COME or newest.status.startswith("CallError")
            ):
                log.warning("boot.report_refused", station_id=ctx.station_id,
                            status=newest.status)
                return "Accepted"
        request_id = self._next_request_id()
        ctx.after(lambda: _request_base_report(self.deps, ctx, request_id))  # B02
        return "Pending"


async def _request_base_report(deps: Deps, ctx: StationContext, request_id: int) -> None:
    """Ask for the full device model, and keep the answer: a refusal ends the wait."""
    assert ctx.connection is not None
    request: Payload = {"requestId": request_id, "reportBase": "FullInventory"}
    try:
        reply = await ctx.connection.call("GetBaseReport", request)
        status = str(reply["status"])
    except CallFailed as exc:
        status = f"CallError {exc.code}"
    except TimeoutError:
        status = "Timeout"
    await deps.store.reports.add(ctx.station_id, request["requestId"], "base", request,
                                 status, deps.clock.now())


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
        now, store = self.deps.clock.now(), self.deps.store
        data = req.get("reportData", [])
        await store.devices.upsert_variables(ctx.station_id, report_variables(data), now)
        tbc = bool(req.get("tbc", False))
        report = await store.reports.add_part(
            ctx.station_id, req["requestId"], req["seqNo"], len(data), tbc, now)
        if not tbc and report is not None and report.kind == "base":
            await store.stations.set_report_complete(ctx.station_id, now)
        return {}
