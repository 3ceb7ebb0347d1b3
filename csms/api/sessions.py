"""Sessions: a driver or an app states departure time and energy wanted for a running
transaction, or opts out of ordered charging ("charge now"). The scheduler re-plans on the
ChargingNeedsChanged event, as it does for an EV's own ISO 15118 needs."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep, not_found
from csms.api.models import SessionNeeds, Transaction
from csms.api.transactions import transaction_out
from csms.events import ChargingNeedsChanged
from csms.v2g_ledger import v2g_facts

router = APIRouter(prefix="/api/sessions", tags=["sessions"])


@router.get("", dependencies=[require(Permission.READ)])
async def list_sessions(parts: PartsDep) -> list[Transaction]:
    """Running transactions with their needs and the energy delivered so far."""
    found = await parts.store.transactions.list(active=True, limit=10_000)
    facts = await v2g_facts(parts.store, found)
    return [transaction_out(t, v2g=facts.get((t.station_id, t.transaction_id)))
            for t in found]


@router.put("/{station_id}/{transaction_id}", dependencies=[require(Permission.SESSIONS)],
            responses={404: {"description": "no such transaction"},
                       409: {"description": "the transaction has ended"}})
async def set_session_needs(
    station_id: str, transaction_id: str, body: SessionNeeds, parts: PartsDep
) -> Transaction:
    now = parts.clock.now()
    if body.departure_time is not None and body.departure_time <= now:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "departure_time"], "type": "value_error",
            "msg": f"departure time must be in the future (now is {now.isoformat()})",
        }])
    tx = await parts.store.transactions.set_driver_needs(
        station_id, transaction_id, departure_time=body.departure_time,
        energy_wanted_wh=body.energy_wanted_wh, charge_now=body.charge_now, now=now,
    )
    if tx is None:
        if await parts.store.transactions.get(station_id, transaction_id) is None:
            raise not_found(f"transaction {transaction_id} on station {station_id}")
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"transaction {transaction_id} has ended")
    if tx.evse_id is not None:
        parts.events.publish(ChargingNeedsChanged(
            station_id, tx.evse_id, transaction_id, tx.departure_time, tx.energy_wanted_wh
        ))
    return transaction_out(tx)
