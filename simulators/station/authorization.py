"""Blocks C and D, authorization: the authorization cache (C10-C12), the local
authorization list (D01, D02), group id tokens (C09) and the master pass (C16).

The station's own reading of the spec: a token is looked up online with Authorize (and
the answer cached while AuthCacheCtrlr.Enabled); offline, the local list comes first
(LocalAuthListCtrlr.Enabled), then the cache (an entry past its cacheExpiryDateTime is
not used), then AuthCtrlr.LocalAuthorizeOffline. A token may stop a transaction it did
not start when its groupIdToken equals the starting token's (C09); a token of the
AuthCtrlr.MasterPassGroupId group stops transactions and never starts one (C16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from simulators.clock import parse_ocpp
from simulators.station.replies import ErrorReply, Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

Key = tuple[str, str]  # (idToken, type)


def key(id_token: dict) -> Key:
    return (id_token["idToken"], id_token["type"])


@dataclass
class LocalAuth:
    version: int = 0  # of the local list; 0: none installed
    local_list: dict[Key, dict] = field(default_factory=dict)  # idTokenInfo by token
    cache: dict[Key, dict] = field(default_factory=dict)
    tx_groups: dict[str, str | None] = field(default_factory=dict)  # group by transaction

    def remember(self, station: Station, id_token: dict, info: dict) -> None:
        """C10: keep an answer from the CSMS, while the cache is enabled."""
        if station.device_model.flag("AuthCacheCtrlr", "Enabled"):
            self.cache[key(id_token)] = info

    def offline_info(self, station: Station, id_token: dict, now: datetime) -> dict | None:
        """C12/C13 and D: what the station knows of a token without the CSMS."""
        dm = station.device_model
        if dm.flag("LocalAuthListCtrlr", "Enabled") and key(id_token) in self.local_list:
            return self.local_list[key(id_token)]
        info = self.cache.get(key(id_token))
        if info is not None and dm.flag("AuthCacheCtrlr", "Enabled"):
            expiry = info.get("cacheExpiryDateTime")
            if expiry is None or parse_ocpp(expiry) > now:
                return info
        return None

    def group_of(self, id_token: dict | None) -> str | None:
        if id_token is None:
            return None
        info = self.local_list.get(key(id_token)) or self.cache.get(key(id_token)) or {}
        return (info.get("groupIdToken") or {}).get("idToken")


def group(info: dict) -> str | None:
    return (info.get("groupIdToken") or {}).get("idToken")


def master_pass_group(station: Station) -> str:
    return station.device_model.value("AuthCtrlr", "MasterPassGroupId")


def may_stop(station: Station, tx_id: str, start_token: dict | None, id_token: dict,
             info: dict) -> bool:
    """C09: the same token, or one of the starting token's group, may stop it."""
    if start_token is not None and key(start_token) == key(id_token):
        return True
    started_by = station.local_auth.tx_groups.get(tx_id) or station.local_auth.group_of(
        start_token)
    return started_by is not None and started_by == group(info)


async def clear_cache(station: Station, req: dict) -> Reply:
    """C11: Rejected while the cache is disabled."""
    if not station.device_model.flag("AuthCacheCtrlr", "Enabled"):
        return rejected("Disabled", "AuthCacheCtrlr.Enabled is false"), None
    station.local_auth.cache.clear()
    return {"status": "Accepted"}, None


def _check_size(station: Station, entries: list) -> None:
    limit = int(station.device_model.number("LocalAuthListCtrlr", "ItemsPerMessage"))
    if len(entries) > limit:
        raise ErrorReply("OccurrenceConstraintViolation",
                         f"{len(entries)} entries, ItemsPerMessage is {limit}")


async def send_local_list(station: Station, req: dict) -> Reply:
    """D01: Full replaces the list; Differential adds, changes and (an entry without
    idTokenInfo) removes, and must carry a version above the one held."""
    auth, dm = station.local_auth, station.device_model
    if not dm.flag("LocalAuthListCtrlr", "Enabled"):
        return rejected("Disabled", "LocalAuthListCtrlr.Enabled is false", "Failed"), None
    entries = req.get("localAuthorizationList") or []
    _check_size(station, entries)
    version = req["versionNumber"]
    if req["updateType"] == "Full":
        auth.local_list = {key(e["idToken"]): e["idTokenInfo"] for e in entries
                           if "idTokenInfo" in e}
    else:
        if version <= auth.version:
            return {"status": "VersionMismatch"}, None
        for e in entries:
            if "idTokenInfo" in e:
                auth.local_list[key(e["idToken"])] = e["idTokenInfo"]
            else:
                auth.local_list.pop(key(e["idToken"]), None)
    auth.version = version
    dm.put("LocalAuthListCtrlr", "Entries", str(len(auth.local_list)))
    return {"status": "Accepted"}, None


async def get_local_list_version(station: Station, req: dict) -> Reply:
    return {"versionNumber": station.local_auth.version}, None
