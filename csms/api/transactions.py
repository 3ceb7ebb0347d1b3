"""Transactions: list and filter, and one transaction with its meter values."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import MeterValue, Transaction, TransactionDetail
from csms.store.driver_tariffs import TransactionCost
from csms.store.transactions import Transaction as TransactionRecord
from csms.v2g_ledger import V2gFacts, v2g_facts

router = APIRouter(prefix="/api/transactions", tags=["transactions"],
                   dependencies=[require(Permission.READ)])


def transaction_out(tx: TransactionRecord, cost: TransactionCost | None = None,
                    v2g: V2gFacts | None = None) -> Transaction:
    priced = {} if cost is None else {"cost": cost.cost, "currency": cost.currency,
                                      "cost_final": cost.final}
    discharged = {}
    if v2g is not None:
        account = v2g.account
        discharged = {"vehicle_id": v2g.vehicle.id if v2g.vehicle else None,
                      "discharged_kwh": account.discharged_kwh,
                      "v2g_cycles": account.cycles,
                      "v2g_compensation": account.compensation}
    return Transaction.model_validate(asdict(tx) | {"active": tx.ended_at is None} | priced
                                      | discharged)


async def with_costs(parts: Parts, found: list[TransactionRecord]) -> list[Transaction]:
    """With the driver's cost (block I) and the V2G account (discharge, cycles, owed)."""
    costs = await parts.store.driver_tariffs.costs(
        [(t.station_id, t.transaction_id) for t in found])
    facts = await v2g_facts(parts.store, found)
    return [transaction_out(t, costs.get(key := (t.station_id, t.transaction_id)),
                            facts.get(key)) for t in found]


@router.get("")
async def list_transactions(
    parts: PartsDep,
    station_id: str | None = None,
    active: bool | None = Query(None, description="true: running, false: ended"),
    id_token: str | None = None,
    since: Annotated[AwareDatetime | None, Query(
        description="only transactions still running at or after this time")] = None,
    until: Annotated[AwareDatetime | None, Query(
        description="only transactions started before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Transaction]:
    """Newest first."""
    found = await parts.store.transactions.list(
        station_id, active, limit, id_token=id_token, since=since, until=until
    )
    return await with_costs(parts, found)


@router.get("/{station_id}/{transaction_id}",
            responses={404: {"description": "no such transaction"}})
async def get_transaction(
    station_id: str, transaction_id: str, parts: PartsDep
) -> TransactionDetail:
    tx = await parts.store.transactions.get(station_id, transaction_id)
    if tx is None:
        raise not_found(f"transaction {transaction_id} on station {station_id}")
    values = await parts.store.transactions.meter_values(station_id, transaction_id)
    return TransactionDetail.model_validate(
        (await with_costs(parts, [tx]))[0].model_dump()
        | {"meter_values": [MeterValue.model_validate(v) for v in values]}
    )
