"""Block D: each station's local authorization list, kept in step with the token table.

Every change to the token table (add, change, remove) takes a version from one sequence.
A station's list carries such a version: the one it was last sent. Syncing a station asks
its version (D02, GetLocalListVersion); if it holds the version the CSMS last sent it, a
Differential update sends only what changed since (removals as entries without
idTokenInfo), else a Full one sends every token (D01). A list larger than the station's
`LocalAuthListCtrlr.ItemsPerMessage`/`BytesPerMessage` goes as a Full part followed by
Differential parts, each with a higher version, so each part is a valid update on its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import structlog

from csms.clock import Clock
from csms.commands import Commands
from csms.connection import CallFailed, StationOffline
from csms.frames import Payload
from csms.ocpp.authorization import token_info
from csms.ocpp.message_limits import split_request
from csms.store import Store
from csms.store.tokens import IdToken

log = structlog.get_logger()

SKIPPED_TYPES = ("NoAuthorization",)  # free vending needs no list entry


@dataclass(frozen=True)
class SyncResult:
    station_id: str
    update: str  # Full, Differential, or None (already up to date)
    status: str  # the station's answer to the last part, or why nothing was sent
    version: int | None  # the version the station holds now, as far as the CSMS knows
    entries: int  # entries sent
    messages: int  # SendLocalList messages sent


class LocalLists:
    def __init__(self, commands: Commands, store: Store, clock: Clock) -> None:
        self.commands = commands
        self.store = store
        self.clock = clock

    async def sync(self, station_id: str, *, full: bool = False) -> SyncResult:
        """Bring the station's list to the token table's newest version. Raises
        StationOffline, CallFailed, TimeoutError for the first call (the version)."""
        station = await self.store.stations.get(station_id)
        known = station.local_list_version if station is not None else None
        held = await self.commands.get_local_list_version(station_id)
        now = self.clock.now()
        if not full and held > 0 and held == known:
            if await self.store.tokens.version() <= held:
                return SyncResult(station_id, "None", "UpToDate", held, 0, 0)
            result = await self._differential(station_id, held, now)
            if result.status != "VersionMismatch":
                return result
            log.warning("local_list.version_mismatch", station_id=station_id, version=held)
        return await self._full(station_id, now)

    async def sync_all(self, station_ids: list[str], *, full: bool = False,
                       concurrency: int = 10) -> list[SyncResult]:
        """Sync many stations, a few at a time; a station that fails is reported, not
        raised."""
        gate = asyncio.Semaphore(concurrency)

        async def one(station_id: str) -> SyncResult:
            async with gate:
                try:
                    return await self.sync(station_id, full=full)
                except StationOffline:
                    return SyncResult(station_id, "None", "Offline", None, 0, 0)
                except TimeoutError:
                    return SyncResult(station_id, "None", "Timeout", None, 0, 0)
                except CallFailed as exc:
                    return SyncResult(station_id, "None", f"CallError {exc.code}", None, 0, 0)

        return list(await asyncio.gather(*(one(s) for s in station_ids)))

    async def _differential(self, station_id: str, since: int, now: datetime) -> SyncResult:
        [version] = await self.store.tokens.reserve_versions(1)
        changed, removed = await self.store.tokens.changes_since(since)
        entries = await self._entries(changed, now) + [
            {"idToken": {"idToken": t, "type": ty}} for t, ty in removed
            if ty not in SKIPPED_TYPES]
        return await self._send(station_id, "Differential", entries, version, now)

    async def _full(self, station_id: str, now: datetime) -> SyncResult:
        tokens = await self.store.tokens.list()
        return await self._send(station_id, "Full", await self._entries(tokens, now), None, now)

    async def _entries(self, tokens: list[IdToken], now: datetime) -> list[Payload]:
        groups: dict[str, IdToken | None] = {}
        entries = []
        for token in tokens:
            if token.type in SKIPPED_TYPES:
                continue
            if token.group_id and token.group_id not in groups:
                groups[token.group_id] = await self.store.tokens.group_token(token.group_id)
            group = groups.get(token.group_id) if token.group_id else None
            entries.append({"idToken": {"idToken": token.id_token, "type": token.type},
                            "idTokenInfo": token_info(token, now, group)})
        return entries

    async def _send(self, station_id: str, update: str, entries: list[Payload],
                    version: int | None, now: datetime) -> SyncResult:
        limits = await self.commands.message_limits(station_id, "SendLocalList")
        request: Payload = {"updateType": update, "versionNumber": 0,
                            "localAuthorizationList": entries}
        parts = split_request("SendLocalList", request, limits) if entries else [request]
        versions = ([version] if version is not None and len(parts) == 1
                    else await self.store.tokens.reserve_versions(len(parts)))
        status, held = "Accepted", None
        for i, (part, number) in enumerate(zip(parts, versions, strict=True)):
            payload = {**part, "versionNumber": number,
                       "updateType": update if i == 0 else "Differential"}
            if not payload.get("localAuthorizationList"):
                payload.pop("localAuthorizationList", None)  # an empty Full clears the list
            reply = await self.commands.call(station_id, "SendLocalList", payload)
            status = str(reply["status"])
            if status != "Accepted":
                break
            held = number
        if held is not None:
            await self.store.stations.set_local_list_version(station_id, held, now)
        elif update == "Full":
            # a refused Full leaves the station's list unknown: the next sync sends it again
            await self.store.stations.set_local_list_version(station_id, None, now)
        log.info("local_list.sent", station_id=station_id, update=update, status=status,
                 version=held, entries=len(entries), messages=len(parts))
        return SyncResult(station_id, update, status, held, len(entries), len(parts))
