"""Block P, data transfer: this station knows no vendor extensions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station.replies import Reply

if TYPE_CHECKING:
    from simulators.station.core import Station


async def data_transfer(station: Station, req: dict) -> Reply:
    return {"status": "UnknownVendorId"}, None
