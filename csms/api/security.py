"""Block A over HTTP: rotate a station's Basic auth password (A01), set the lowest security
profile it may connect with (A05), install the CSMS's CA as the station's CSMS root, and
read the certificates the CA issued and the security events stations reported (A04).

Changing credentials is admin-only (permission `security`); reading is for every role that
reads stations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, Field

from csms.api.auth import Permission, require
from csms.api.commands import send
from csms.api.deps import PartsDep, not_found
from csms.api.models import Body, CommandError, Model
from csms.frames import Payload
from csms.passwords import generate_password

log = structlog.get_logger()
router = APIRouter(tags=["security"])

_COMMAND_ERRORS = {
    404: {"model": CommandError, "description": "no such station"},
    409: {"model": CommandError, "description": "the station is not connected"},
    502: {"model": CommandError, "description": "the station answered with a CALLERROR"},
    504: {"model": CommandError, "description": "the station did not answer in time"},
}


class PasswordRotation(Model):
    station_id: str
    status: str = Field(description="the station's SetVariables attributeStatus")
    password: str | None = Field(description="the new password, shown this once; null when "
                                 "the station did not take it (the old one stays)")


class SecurityProfileSet(Body):
    profile: int = Field(
        ge=0, le=3, strict=True, description="0 no auth (development), 1 Basic auth, "
        "2 Basic auth over TLS, 3 TLS with a client certificate")


class SecurityProfile(Model):
    station_id: str
    security_profile: int


class StationCertificate(Model):
    serial: str
    station_id: str
    certificate_type: str
    subject: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    source: Literal["csr", "cli"]
    status: str = Field(description="Issued, then the station's answer: Accepted, Rejected, "
                        "or Failed (not delivered)")
    renewal_requested_at: datetime | None


class SecurityEvent(Model):
    id: int
    station_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    tech_info: str | None
    critical: bool


class RootInstalled(Model):
    station_id: str
    status: str = Field(description="the station's InstallCertificate status")
    reply: dict[str, object]


@router.post("/api/stations/{station_id}/password",
             dependencies=[require(Permission.SECURITY)], responses=_COMMAND_ERRORS)
async def rotate_password(station_id: str, parts: PartsDep) -> PasswordRotation:
    """A01: generate a new Basic auth password and send it to the station
    (SetVariables SecurityCtrlr.BasicAuthPassword). When the station accepts it, it is the
    only password accepted from then on (the station uses it at its next connection); when
    it does not, the old one stays."""
    password, hashed = generate_password()
    data: Payload = {"component": {"name": "SecurityCtrlr"},
                     "variable": {"name": "BasicAuthPassword"}, "attributeValue": password}

    async def call() -> Payload:
        return {"result": await parts.commands.set_variables(station_id, [data])}

    reply = await send(parts, station_id, "SetVariables", call)
    results = reply["result"]
    answer = str(results[0].get("attributeStatus")) if results else "Rejected"
    if answer in ("Accepted", "RebootRequired"):
        await parts.store.stations.set_password_hash(station_id, hashed)
        log.info("station.password_rotated", station_id=station_id, status=answer)
        return PasswordRotation(station_id=station_id, status=answer, password=password)
    log.warning("station.password_not_rotated", station_id=station_id, status=answer)
    return PasswordRotation(station_id=station_id, status=answer, password=None)


@router.put("/api/stations/{station_id}/security-profile",
            dependencies=[require(Permission.SECURITY)],
            responses={404: {"description": "no such station"}})
async def set_security_profile(
    station_id: str, body: SecurityProfileSet, parts: PartsDep
) -> SecurityProfile:
    """A05: the lowest profile the station may connect with from now on. A station that
    connects with a higher profile raises it by itself; lowering it is the operator's
    explicit decision (a replaced station), and is logged."""
    station = await parts.store.stations.get(station_id)
    if station is None:
        raise not_found(f"station {station_id}")
    await parts.store.stations.set_security_profile(station_id, body.profile)
    lowered = station.security_profile is not None and body.profile < station.security_profile
    (log.warning if lowered else log.info)(
        "station.security_profile_set", station_id=station_id, profile=body.profile,
        was=station.security_profile)
    return SecurityProfile(station_id=station_id, security_profile=body.profile)


@router.post("/api/stations/{station_id}/certificates/csms-root",
             dependencies=[require(Permission.SECURITY)], responses=_COMMAND_ERRORS)
async def install_csms_root(station_id: str, parts: PartsDep) -> RootInstalled:
    """Install the CSMS's CA certificate on the station as its CSMSRootCertificate
    (InstallCertificate), for when the CSMS's TLS certificate is issued by that CA. Another
    root: the generic `commands/install-certificate`."""
    if parts.ca is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "this CSMS has no CA")
    request = {"certificateType": "CSMSRootCertificate", "certificate": parts.ca.root_pem}

    async def call() -> Payload:
        return await parts.commands.call(station_id, "InstallCertificate", request)

    reply = await send(parts, station_id, "InstallCertificate", call)
    log.info("station.csms_root_installed", station_id=station_id, status=reply.get("status"))
    return RootInstalled(station_id=station_id, status=str(reply.get("status")), reply=reply)


@router.get("/api/certificates", dependencies=[require(Permission.READ)])
async def list_certificates(
    parts: PartsDep,
    station_id: Annotated[str | None, Query(max_length=48)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[StationCertificate]:
    """Station certificates the CSMS's CA issued (A02/A03 and `stations add
    --certificate`), newest first."""
    return [StationCertificate.model_validate(c)
            for c in await parts.store.certificates.list(station_id, limit)]


@router.get("/api/security-events", dependencies=[require(Permission.READ)])
async def list_security_events(
    parts: PartsDep,
    station_id: Annotated[str | None, Query(max_length=48)] = None,
    critical: bool | None = None,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SecurityEvent]:
    """A04: security events stations reported, newest first; `critical=true` for the alerts
    the spec marks critical (also logged at warning and sent on the live feed)."""
    events = await parts.store.security_events.list(
        station_id=station_id, critical=critical, since=since, limit=limit)
    return [SecurityEvent.model_validate(e) for e in events]
