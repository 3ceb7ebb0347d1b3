"""Block A records: certificates the CSMS's CA issued to stations, and the security events
stations report (A04), kept as alerts (see migrations/0006_security.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from csms.ca import IssuedCertificate


@dataclass(frozen=True)
class StationCertificate:
    serial: str
    station_id: str
    certificate_type: str
    subject: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    source: str
    status: str
    renewal_requested_at: datetime | None


_CERT_COLUMNS = ("serial, station_id, certificate_type, subject, not_before, not_after,"
                 " issued_at, source, status, renewal_requested_at")


class CertificateRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, issued: IssuedCertificate, *, source: str, status: str,
                  now: datetime, certificate_type: str = "ChargingStationCertificate") -> None:
        await self.pool.execute(
            "INSERT INTO station_certificates (serial, station_id, certificate_type, subject,"
            " not_before, not_after, pem, issued_at, source, status)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            issued.serial, issued.station_id, certificate_type, issued.subject,
            issued.not_before, issued.not_after, issued.pem, now, source, status,
        )

    async def issued_since(self, station_id: str, since: datetime) -> int:
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM station_certificates WHERE station_id = $1"
            " AND issued_at >= $2", station_id, since)
        return count

    async def set_status(self, serial: str, status: str) -> None:
        await self.pool.execute(
            "UPDATE station_certificates SET status = $2 WHERE serial = $1", serial, status)

    async def list(self, station_id: str | None = None, limit: int = 100
                   ) -> list[StationCertificate]:
        rows = await self.pool.fetch(
            f"SELECT {_CERT_COLUMNS} FROM station_certificates"
            " WHERE ($1::text IS NULL OR station_id = $1) ORDER BY issued_at DESC LIMIT $2",
            station_id, limit,
        )
        return [StationCertificate(**dict(r)) for r in rows]

    async def due_for_renewal(self, expiring_before: datetime, asked_before: datetime
                              ) -> list[StationCertificate]:
        """Each station's newest certificate in use (the last it accepted, or the CLI's)
        that expires before `expiring_before`, and for which no renewal was asked since
        `asked_before`."""
        rows = await self.pool.fetch(
            f"SELECT {_CERT_COLUMNS} FROM ("
            f"  SELECT DISTINCT ON (station_id) {_CERT_COLUMNS} FROM station_certificates"
            "   WHERE status = 'Accepted' AND certificate_type = 'ChargingStationCertificate'"
            "   ORDER BY station_id, not_after DESC) newest"
            " WHERE not_after < $1"
            " AND (renewal_requested_at IS NULL OR renewal_requested_at < $2)"
            " ORDER BY not_after",
            expiring_before, asked_before,
        )
        return [StationCertificate(**dict(r)) for r in rows]

    async def renewal_requested(self, serial: str, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE station_certificates SET renewal_requested_at = $2 WHERE serial = $1",
            serial, now)


@dataclass(frozen=True)
class SecurityEvent:
    id: int
    station_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    tech_info: str | None
    critical: bool


class SecurityEventRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, station_id: str, type: str, occurred_at: datetime,
                  tech_info: str | None, critical: bool, now: datetime) -> int:
        event_id: int = await self.pool.fetchval(
            "INSERT INTO security_events (station_id, type, occurred_at, received_at,"
            " tech_info, critical) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            station_id, type, occurred_at, now, tech_info, critical,
        )
        return event_id

    async def list(self, *, station_id: str | None = None, critical: bool | None = None,
                   since: datetime | None = None, limit: int = 100) -> list[SecurityEvent]:
        rows = await self.pool.fetch(
            "SELECT id, station_id, type, occurred_at, received_at, tech_info, critical"
            " FROM security_events WHERE ($1::text IS NULL OR station_id = $1)"
            " AND ($2::boolean IS NULL OR critical = $2)"
            " AND ($3::timestamptz IS NULL OR received_at >= $3)"
            " ORDER BY received_at DESC, id DESC LIMIT $4",
            station_id, critical, since, limit,
        )
        return [SecurityEvent(**dict(r)) for r in rows]
