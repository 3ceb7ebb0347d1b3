"""Stations: provisioning, boot information and connection state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from csms.store.batch import GroupCommit, GroupRead


@dataclass(frozen=True)
class StationRecord:
    id: str
    created_at: datetime
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    boot_status: str | None
    last_boot_at: datetime | None
    online: bool
    connected_at: datetime | None
    disconnected_at: datetime | None
    last_seen: datetime | None
    report_complete_at: datetime | None
    has_password: bool
    security_profile: int | None = None
    boot_hold: str | None = None  # B02/B03: Pending or Rejected by an operator
    pending_since: datetime | None = None
    local_list_version: int | None = None
    local_list_synced_at: datetime | None = None
    ocpp_version: str | None = None  # of its latest connection: "2.0.1" or "2.1"


_COLUMNS = (
    "id, created_at, vendor, model, serial_number, firmware_version, boot_status, last_boot_at,"
    " online, connected_at, disconnected_at, last_seen, report_complete_at,"
    " password_hash IS NOT NULL AS has_password, security_profile, boot_hold, pending_since,"
    " local_list_version, local_list_synced_at, ocpp_version"
)


# station id, online, time, OCPP version (of a connect; None for a disconnect)
State = tuple[str, bool, datetime, str | None]
# station id, vendor, model, serial number, firmware version, reason, status, time
Boot = tuple[str, str, str, str | None, str | None, str, str, datetime]


@dataclass(frozen=True)
class Admission:
    password_hash: str | None
    boot_status: str | None
    security_profile: int | None = None  # the lowest profile it may connect with (A05)


class StationRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # connection state and boots: group-committed, a reconnect storm is thousands at once
        self._states: GroupCommit[State] = GroupCommit(
            self._write_states, "station-states")
        self._boots: GroupCommit[Boot] = GroupCommit(self._write_boots, "station-boots")
        self._profiles: GroupCommit[tuple[str, int]] = GroupCommit(
            self._write_profiles, "station-profiles")
        self._admissions: GroupRead[str, Admission] = GroupRead(
            self._read_admissions, "station-admissions")

    async def add(self, station_id: str, password_hash: str | None, now: datetime) -> bool:
        """Create a station, or set its password if it exists. True when newly created."""
        row = await self.pool.fetchrow(
            "INSERT INTO stations (id, password_hash, created_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET password_hash = EXCLUDED.password_hash"
            " RETURNING (xmax = 0) AS created",
            station_id, password_hash, now,
        )
        return bool(row and row["created"])

    async def remove(self, station_id: str) -> bool:
        result = await self.pool.execute("DELETE FROM stations WHERE id = $1", station_id)
        return result.endswith(" 1")

    async def get(self, station_id: str) -> StationRecord | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM stations WHERE id = $1", station_id)
        return StationRecord(**dict(row)) if row else None

    async def list(self) -> list[StationRecord]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM stations ORDER BY id")
        return [StationRecord(**dict(r)) for r in rows]

    async def admission(self, station_id: str) -> Admission | None:
        """What the handshake and the new connection need (None: unknown station).
        Concurrent handshakes share one query."""
        return await self._admissions.get(station_id)

    async def _read_admissions(self, station_ids: list[str]) -> dict[str, Admission]:
        rows = await self.pool.fetch(
            "SELECT id, password_hash, boot_status, security_profile FROM stations"
            " WHERE id = ANY($1::text[])",
            station_ids,
        )
        return {r["id"]: Admission(r["password_hash"], r["boot_status"], r["security_profile"])
                for r in rows}

    async def set_security_profile(self, station_id: str, profile: int | None) -> bool:
        """The operator sets the lowest profile a station may connect with (A05)."""
        result = await self.pool.execute(
            "UPDATE stations SET security_profile = $2 WHERE id = $1", station_id, profile)
        return result.endswith(" 1")

    async def raise_security_profile(self, station_id: str, profile: int) -> None:
        """After a connection with `profile`: never accept a lower one again (A05).
        Group-committed: after an upgrade, a reconnect storm raises thousands at once."""
        await self._profiles.write([(station_id, profile)])

    async def _write_profiles(self, raised: list[tuple[str, int]]) -> None:
        highest: dict[str, int] = {}
        for station_id, profile in raised:
            highest[station_id] = max(profile, highest.get(station_id, profile))
        await self.pool.execute(
            "UPDATE stations s SET security_profile = u.profile"
            " FROM unnest($1::text[], $2::smallint[]) AS u(id, profile)"
            " WHERE s.id = u.id AND (s.security_profile IS NULL OR s.security_profile < u.profile)",
            list(highest), list(highest.values()),
        )

    async def set_password_hash(self, station_id: str, password_hash: str) -> bool:
        """A new Basic auth password (A01): from now on the only one accepted."""
        result = await self.pool.execute(
            "UPDATE stations SET password_hash = $2 WHERE id = $1", station_id, password_hash)
        return result.endswith(" 1")

    async def record_boot(
        self,
        station_id: str,
        *,
        vendor: str,
        model: str,
        serial_number: str | None,
        firmware_version: str | None,
        reason: str,
        status: str,
        now: datetime,
    ) -> None:
        await self._boots.write([(station_id, vendor, model, serial_number, firmware_version,
                                  reason, status, now)])

    async def _write_boots(self, boots: list[Boot]) -> None:
        last = {b[0]: b for b in sorted(boots, key=lambda b: b[7])}  # one row per station
        cols = [list(c) for c in zip(*last.values(), strict=True)]
        await self.pool.execute(
            "UPDATE stations s SET vendor = u.vendor, model = u.model,"
            " serial_number = u.serial, firmware_version = u.firmware, boot_reason = u.reason,"
            " boot_status = u.status, last_boot_at = u.ts, last_seen = u.ts"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
            " $6::text[], $7::text[], $8::timestamptz[])"
            " AS u(id, vendor, model, serial, firmware, reason, status, ts) WHERE s.id = u.id",
            *cols,
        )

    async def set_report_complete(self, station_id: str, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE stations SET report_complete_at = $2 WHERE id = $1", station_id, now
        )

    async def set_boot_hold(self, station_id: str, hold: str | None) -> bool:
        """Hold the station's boots at Pending or Rejected (None: the configured rules).
        False when there is no such station."""
        result = await self.pool.execute(
            "UPDATE stations SET boot_hold = $2 WHERE id = $1", station_id, hold
        )
        return result.endswith(" 1")

    async def set_pending_since(self, station_id: str, since: datetime | None) -> None:
        """When the station's boot was first answered Pending (None once Accepted)."""
        await self.pool.execute(
            "UPDATE stations SET pending_since = $2 WHERE id = $1", station_id, since
        )

    async def set_local_list_version(
        self, station_id: str, version: int | None, now: datetime
    ) -> None:
        await self.pool.execute(
            "UPDATE stations SET local_list_version = $2, local_list_synced_at = $3"
            " WHERE id = $1", station_id, version, now,
        )

    async def set_connected(self, station_id: str, now: datetime,
                            ocpp_version: str | None = None) -> None:
        """Online from `now`, speaking `ocpp_version` (None: keep the stored one)."""
        await self._states.write([(station_id, True, now, ocpp_version)])

    async def set_disconnected(self, station_id: str, now: datetime) -> None:
        """A late write for a replaced connection must not mark its successor offline."""
        await self._states.write([(station_id, False, now, None)])

    async def close(self) -> None:
        await self._states.close()
        await self._boots.close()
        await self._profiles.close()

    async def _write_states(self, changes: list[State]) -> None:
        """A storm's connects and disconnects in two statements. Connects go first, so a
        disconnect in the same batch is still checked against its successor's connect."""
        latest: dict[bool, dict[str, datetime]] = {True: {}, False: {}}
        versions: dict[str, str | None] = {}
        for station_id, online, ts, version in changes:
            seen = latest[online]
            if ts >= seen.get(station_id, ts):
                seen[station_id] = ts
                if online:
                    versions[station_id] = version
        if connected := latest[True]:
            await self.pool.execute(
                "UPDATE stations s SET online = true, connected_at = u.ts, last_seen = u.ts,"
                " ocpp_version = COALESCE(u.version, s.ocpp_version)"
                " FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(id, ts, version)"
                " WHERE s.id = u.id",
                list(connected), list(connected.values()), [versions[s] for s in connected],
            )
        if disconnected := latest[False]:
            await self.pool.execute(
                "UPDATE stations s SET online = false, disconnected_at = u.ts"
                " FROM unnest($1::text[], $2::timestamptz[]) AS u(id, ts) WHERE s.id = u.id"
                " AND (s.connected_at IS NULL OR s.connected_at <= u.ts)",
                list(disconnected), list(disconnected.values()),
            )

    async def mark_all_offline(self, now: datetime) -> None:
        """At start-up no station is connected to this process yet."""
        await self.pool.execute(
            "UPDATE stations SET online = false, disconnected_at = $1 WHERE online", now
        )

    async def touch(self, last_seen: dict[str, datetime]) -> None:
        """Batch update of last-seen times (one statement for many stations)."""
        if not last_seen:
            return
        await self.pool.execute(
            "UPDATE stations s SET last_seen = GREATEST(s.last_seen, u.ts)"
            " FROM unnest($1::text[], $2::timestamptz[]) AS u(id, ts) WHERE s.id = u.id",
            list(last_seen), list(last_seen.values()),
        )
