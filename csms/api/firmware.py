"""Firmware updates (L01/L02) and rollouts over many stations, as status resources.

`POST /api/firmware-updates` sends one station UpdateFirmware and keeps what becomes of
it: the station's answer, then every FirmwareStatusNotification (Downloading, Downloaded,
SignatureVerified, Installing, Installed, or a failure such as InvalidSignature).
`POST /api/firmware-rollouts` updates many stations, at most `max_concurrent` at once,
retrying a station that failed up to `max_attempts` times (csms/rollout.py has the rules).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AwareDatetime, Field, model_validator

from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import STATION_ID, Body, Model
from csms.firmware import FirmwareUpdates
from csms.rollout import RolloutPolicy, count
from csms.store.firmware import Firmware, FirmwareUpdate, Rollout

router = APIRouter(tags=["firmware"])

Reader = Annotated[Caller, require(Permission.READ)]
Writer = Annotated[Caller, require(Permission.COMMANDS)]
OutcomeName = Literal["in_progress", "installed", "failed", "cancelled"]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class FirmwareIn(Body):
    location: str = Field(min_length=1, max_length=512,
                          description="URI where the station downloads the firmware")
    retrieve_at: AwareDatetime | None = Field(
        None, description="when the station should download it (default: now)")
    install_at: AwareDatetime | None = Field(
        None, description="when it should install it (default: as soon as downloaded)")
    signature: str | None = Field(
        None, min_length=1, max_length=800,
        description="base64 signature of the firmware (secure update, L01)")
    signing_certificate: str | None = Field(
        None, min_length=1, max_length=5500,
        description="PEM certificate the signature was made with (secure update, L01)")
    retries: int | None = Field(None, ge=0, le=100,
                                description="how often the station retries the download")
    retry_interval_s: int | None = Field(None, ge=0, le=86_400)

    @model_validator(mode="after")
    def signed_firmware(self) -> FirmwareIn:
        if (self.signature is None) != (self.signing_certificate is None):
            raise ValueError("signature and signing_certificate go together (L01)")
        if self.signature is not None:
            try:
                base64.b64decode(self.signature, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("signature is not base64") from None
        if self.signing_certificate is not None:
            try:
                x509.load_pem_x509_certificate(self.signing_certificate.encode())
            except ValueError:
                raise ValueError("signing_certificate is not a PEM X.509 certificate") from None
        return self

    def firmware(self, now: datetime) -> Firmware:
        return Firmware(self.location, self.retrieve_at or now, self.install_at,
                        self.signature, self.signing_certificate)


class UpdateIn(FirmwareIn):
    station_id: str = Field(pattern=STATION_ID)


class RolloutIn(FirmwareIn):
    station_ids: list[Annotated[str, Field(pattern=STATION_ID)]] = Field(
        min_length=1, max_length=10_000)
    max_concurrent: int = Field(10, ge=1, le=1000,
                                description="stations updating at the same time")
    max_attempts: int = Field(3, ge=1, le=20,
                              description="UpdateFirmware sent to a station at most this often")
    retry_after_s: float = Field(600.0, ge=0, le=7 * 86_400, allow_inf_nan=False,
                                 description="wait after a failure before trying again")
    stall_timeout_s: float = Field(
        3600.0, gt=0, le=7 * 86_400, allow_inf_nan=False,
        description="an update that reports nothing for this long counts as failed")


class FirmwareUpdateOut(Model):
    id: int
    station_id: str
    request_id: int = Field(description="the requestId sent in UpdateFirmware")
    rollout_id: int | None
    location: str
    retrieve_at: datetime
    install_at: datetime | None
    retries: int | None
    retry_interval_s: int | None
    signed: bool
    reply_status: str | None = Field(description="the UpdateFirmwareResponse status")
    reply_reason: str | None
    status: str = Field(description="the newest FirmwareStatus the station reported, or "
                        "Requested / Accepted / Rejected / Offline / NoAnswer / CallError / "
                        "Cancelled / Stalled")
    outcome: OutcomeName
    history: list[dict[str, Any]]
    created_by: str
    created_at: datetime
    updated_at: datetime


class RolloutCounts(Model):
    waiting: int
    updating: int
    installed: int
    retrying: int = Field(description="failed, to be tried again")
    failed: int = Field(description="failed and out of attempts")


class RolloutStationOut(Model):
    station_id: str
    attempts: int
    update_id: int | None
    status: str | None
    outcome: OutcomeName | None


class RolloutOut(Model):
    id: int
    status: Literal["running", "completed", "cancelled"]
    location: str
    retrieve_at: datetime
    install_at: datetime | None
    signed: bool
    max_concurrent: int
    max_attempts: int
    retry_after_s: float
    stall_timeout_s: float
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    counts: RolloutCounts
    stations: list[RolloutStationOut]


def _service(parts: Parts) -> FirmwareUpdates:
    assert parts.firmware is not None
    return parts.firmware


def update_out(update: FirmwareUpdate) -> FirmwareUpdateOut:
    return FirmwareUpdateOut.model_validate(update)


async def rollout_out(parts: Parts, rollout: Rollout) -> RolloutOut:
    stations = await parts.store.firmware.rollout_stations(rollout.id)
    counts = count(rollout.policy, [s.target for s in stations])
    p, f = rollout.policy, rollout.firmware
    return RolloutOut(
        id=rollout.id, status=rollout.status,  # type: ignore[arg-type]
        location=f.location, retrieve_at=f.retrieve_at, install_at=f.install_at,
        signed=f.signature is not None, max_concurrent=p.max_concurrent,
        max_attempts=p.max_attempts, retry_after_s=p.retry_after_s,
        stall_timeout_s=p.stall_timeout_s, created_by=rollout.created_by,
        created_at=rollout.created_at, finished_at=rollout.finished_at,
        counts=RolloutCounts.model_validate(counts),
        stations=[RolloutStationOut.model_validate(s) for s in stations])


@router.post("/api/firmware-updates", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "no such station"},
                        409: {"description": "the station is not connected"}})
async def create_update(body: UpdateIn, parts: PartsDep, who: Writer) -> FirmwareUpdateOut:
    """Send the station UpdateFirmware (L01 signed, L02 unsigned) and keep its status.
    The answer is the update as it stands once the station replied (or did not)."""
    if await parts.store.stations.get(body.station_id) is None:
        raise not_found(f"station {body.station_id}")
    if not parts.connections.is_connected(body.station_id):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"station {body.station_id} is not connected")
    update = await _service(parts).update(
        body.station_id, body.firmware(parts.clock.now()), body.retries,
        body.retry_interval_s, created_by=who.name)
    return update_out(update)


@router.get("/api/firmware-updates")
async def list_updates(
    parts: PartsDep, _: Reader, station_id: str | None = Query(None, max_length=48),
    outcome: OutcomeName | None = None, rollout_id: int | None = Query(None, ge=1),
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[FirmwareUpdateOut]:
    """Newest first."""
    found = await parts.store.firmware.updates(station_id, outcome, rollout_id, limit)
    return [update_out(u) for u in found]


@router.get("/api/firmware-updates/{update_id}",
            responses={404: {"description": "no such update"}})
async def get_update(update_id: RowId, parts: PartsDep, _: Reader) -> FirmwareUpdateOut:
    update = await parts.store.firmware.get_update(update_id)
    if update is None:
        raise not_found(f"firmware update {update_id}")
    return update_out(update)


@router.post("/api/firmware-rollouts", status_code=status.HTTP_201_CREATED)
async def create_rollout(body: RolloutIn, parts: PartsDep, who: Writer) -> RolloutOut:
    """Update every listed station (in that order), at most `max_concurrent` at a time.
    A station offline when its turn comes counts as a failed attempt."""
    if len(set(body.station_ids)) != len(body.station_ids):
        raise _invalid("station_ids", "a station is listed twice")
    known = {s.id for s in await parts.store.stations.list()}
    if unknown := [s for s in body.station_ids if s not in known]:
        raise _invalid("station_ids", f"unknown station(s): {', '.join(unknown[:20])}")
    policy = RolloutPolicy(body.max_concurrent, body.max_attempts, body.retry_after_s,
                           body.stall_timeout_s)
    rollout = await _service(parts).start_rollout(
        body.station_ids, body.firmware(parts.clock.now()), body.retries,
        body.retry_interval_s, policy, created_by=who.name)
    return await rollout_out(parts, rollout)


@router.get("/api/firmware-rollouts")
async def list_rollouts(
    parts: PartsDep, _: Reader,
    status_: Annotated[Literal["running", "completed", "cancelled"] | None,
                       Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RolloutOut]:
    """Newest first, each with its counts."""
    return [await rollout_out(parts, r)
            for r in await parts.store.firmware.rollouts(status_, limit)]


@router.get("/api/firmware-rollouts/{rollout_id}",
            responses={404: {"description": "no such rollout"}})
async def get_rollout(rollout_id: RowId, parts: PartsDep, _: Reader) -> RolloutOut:
    rollout = await parts.store.firmware.rollout(rollout_id)
    if rollout is None:
        raise not_found(f"firmware rollout {rollout_id}")
    return await rollout_out(parts, rollout)


@router.post("/api/firmware-rollouts/{rollout_id}/cancel",
             responses={404: {"description": "no such rollout"},
                        409: {"description": "the rollout is not running"}})
async def cancel_rollout(rollout_id: RowId, parts: PartsDep, _: Writer) -> RolloutOut:
    """Start no more updates; those under way go on and are still tracked."""
    rollout = await parts.store.firmware.rollout(rollout_id)
    if rollout is None:
        raise not_found(f"firmware rollout {rollout_id}")
    if not await parts.store.firmware.finish_rollout(rollout_id, "cancelled",
                                                     parts.clock.now()):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"firmware rollout {rollout_id} is {rollout.status}")
    found = await parts.store.firmware.rollout(rollout_id)
    assert found is not None
    return await rollout_out(parts, found)


def _invalid(field: str, msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
        "loc": ["body", field], "type": "value_error", "msg": msg}])
