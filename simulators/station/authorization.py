"""Blocks C and D, authorization: the authorization cache (C11) and the local list (D01, D02)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station.replies import Reply

if TYPE_CHECKING:
    from simulators.station.core import Station


async def clear_cache(station: Station, req: dict) -> Reply:
    return {"status": "Accepted"}, None


async def send_local_list(station: Station, req: dict) -> Reply:
    station._local_list_version = req["versionNumber"]
    return {"status": "Accepted"}, None


async def get_local_list_version(station: Station, req: dict) -> Reply:
    return {"versionNumber": station._local_list_version}, None
