"""Block M on a station: install the configured V2G / MO root certificates (the trust
anchors of ISO 15118 Plug & Charge) and keep which certificates the station holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from csms.api import answers
from csms.api.auth import Permission, require
from csms.api.commands import CommandFailed, send
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.display import REFUSED
from csms.api.models import Body, Model
from csms.frames import Payload

router = APIRouter(prefix="/api/stations/{station_id}", tags=["ISO 15118 certificates"])

CertificateType = Literal["V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate",
                          "V2GCertificateChain", "ManufacturerRootCertificate"]


class RootInstall(Body):
    certificate_type: Literal["V2GRootCertificate", "MORootCertificate"]


class InstalledCertificate(Model):
    certificate_type: str
    serial_number: str
    issuer_name_hash: str
    issuer_key_hash: str
    hash_algorithm: str
    children: list[dict[str, Any]] = Field(description="childCertificateHashData (OCPP)")
    reported_at: datetime


class RootInstalled(Model):
    status: str = Field(description="the station's InstallCertificate answer")
    installed: list[InstalledCertificate] = Field(
        description="what the station then reported holding (GetInstalledCertificateIds)")


async def refresh(parts: Parts, station_id: str,
                  types: list[str] | None = None) -> list[InstalledCertificate]:
    """GetInstalledCertificateIds, kept as the station's certificates of those types."""
    request: Payload = {"certificateType": types} if types else {}
    reply = (await send(parts, station_id, "GetInstalledCertificateIds",
                        lambda: parts.commands.call(station_id, "GetInstalledCertificateIds",
                                                    request)))
    await answers.installed_certificate_ids(parts, station_id, request, reply)
    return [InstalledCertificate.model_validate(c)
            for c in await parts.store.installed_certificates.list(station_id)]


@router.post("/root-certificates", responses=REFUSED,
             dependencies=[require(Permission.SECURITY)])
async def install_root(station_id: str, body: RootInstall, parts: PartsDep) -> RootInstalled:
    """Install the configured root certificate of that type (`[iso15118]`
    v2g_root_certificate / mo_root_certificate), then record what the station holds."""
    service = parts.iso15118
    pem = service.root_certificate(body.certificate_type) if service is not None else None
    if pem is None:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"no {body.certificate_type} is configured ([iso15118])")
    reply = (await send(parts, station_id, "InstallCertificate", lambda: parts.commands.call(
        station_id, "InstallCertificate",
        {"certificateType": body.certificate_type, "certificate": pem})))
    if reply["status"] != "Accepted":
        raise CommandFailed(status.HTTP_409_CONFLICT,
                            f"station {station_id} refused the certificate: {reply['status']}",
                            reply["status"])
    return RootInstalled(status=reply["status"], installed=await refresh(parts, station_id))


@router.get("/installed-certificates", dependencies=[require(Permission.READ)])
async def installed(station_id: str, parts: PartsDep) -> list[InstalledCertificate]:
    """The certificates the station last reported holding."""
    if await parts.store.stations.get(station_id) is None:
        raise not_found(f"station {station_id}")
    return [InstalledCertificate.model_validate(c)
            for c in await parts.store.installed_certificates.list(station_id)]


@router.post("/installed-certificates/refresh", responses=REFUSED,
             dependencies=[require(Permission.SECURITY)])
async def refresh_installed(station_id: str, parts: PartsDep) -> list[InstalledCertificate]:
    """Ask the station which certificates it holds (GetInstalledCertificateIds) and keep it."""
    return await refresh(parts, station_id)
