"""Block G, availability: ChangeAvailability for the station or one EVSE (G03, G04)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station


async def change_availability(station: Station, req: dict) -> Reply:
    operative = req["operationalStatus"] == "Operative"
    evse_ref = req.get("evse")
    targets = (
        [station.evses[evse_ref["id"]]]
        if evse_ref and evse_ref.get("id") in station.evses
        else list(station.evses.values())
        if not evse_ref or evse_ref.get("id") == 0
        else []
    )
    if not targets:
        return rejected("UnknownEVSE", "no such EVSE", status="Rejected"), None
    scheduled = not operative and any(e.tx is not None for e in targets)
    for e in targets:
        e.operative = operative

    async def announce() -> None:
        for e in targets:
            if e.tx is None:
                new = "Available" if operative else "Unavailable"
                if e.ev is not None and operative:
                    new = "Occupied"
                await station.status(e.spec.evse_id, new)

    return {"status": "Scheduled" if scheduled else "Accepted"}, announce
