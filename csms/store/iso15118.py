"""Block M: the certificates a station reported holding (GetInstalledCertificateIds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class InstalledCertificate:
    station_id: str
    certificate_type: str
    serial_number: str
    issuer_name_hash: str
    issuer_key_hash: str
    hash_algorithm: str
    children: list[dict[str, Any]]
    reported_at: datetime


_COLUMNS = ("station_id, certificate_type, serial_number, issuer_name_hash, issuer_key_hash,"
            " hash_algorithm, children, reported_at")


class InstalledCertificateRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def replace(self, station_id: str, types: list[str] | None,
                      chains: list[dict[str, Any]], now: datetime) -> None:
        """What one GetInstalledCertificateIds answered: the station holds exactly these
        certificates of the `types` asked for (None: of every type)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM station_certificate_ids WHERE station_id = $1"
                " AND ($2::text[] IS NULL OR certificate_type = ANY($2::text[]))",
                station_id, types,
            )
            await conn.executemany(
                f"INSERT INTO station_certificate_ids ({_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) ON CONFLICT DO NOTHING",
                [(station_id, chain["certificateType"], data["serialNumber"],
                  data["issuerNameHash"], data["issuerKeyHash"], data["hashAlgorithm"],
                  json.dumps(chain.get("childCertificateHashData") or []), now)
                 for chain in chains for data in [chain["certificateHashData"]]],
            )

    async def remove(self, station_id: str, data: dict[str, Any]) -> bool:
        """One certificate, by its CertificateHashDataType."""
        result = await self.pool.execute(
            "DELETE FROM station_certificate_ids WHERE station_id = $1 AND serial_number = $2"
            " AND issuer_name_hash = $3 AND issuer_key_hash = $4",
            station_id, data["serialNumber"], data["issuerNameHash"], data["issuerKeyHash"],
        )
        return not result.endswith(" 0")

    async def list(self, station_id: str) -> list[InstalledCertificate]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM station_certificate_ids WHERE station_id = $1"
            " ORDER BY certificate_type, serial_number", station_id,
        )
        out = []
        for r in rows:
            values = dict(r)
            values["children"] = json.loads(values["children"])
            out.append(InstalledCertificate(**values))
        return out
