"""Block I, tariff and cost: what the CSMS tells drivers about prices (central cost
calculation; the station only shows what it is sent).

- I01: Authorize answers an accepted token with its tariff as `personalMessage`.
- I02: while a transaction runs, the running cost goes back in each TransactionEvent
  answer (`totalCost` and `updatedPersonalMessage`), and CostUpdated is sent at an
  interval (csms/cost_updates.py); both only to a station that reports
  TariffCostCtrlr.Enabled[Cost] true, since 2.0.1 reserves `totalCost` for the final cost
  otherwise.
- I03: the Ended event's answer carries the final `totalCost` (0.00 when free), to every
  station, whenever a tariff applies: an omitted totalCost would mean "not free".
The cost itself is `csms.billing.session_cost`; it is stored with the transaction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from csms.billing import (
    Cost,
    DriverTariff,
    Usage,
    final_text,
    running_text,
    session_cost,
    tariff_text,
)
from csms.frames import Payload
from csms.store import Store

COST_COMPONENT = "TariffCostCtrlr"


def message(text: str) -> Payload:
    """A MessageContentType for a station's display."""
    return {"format": "UTF8", "content": text[:512]}


def as_number(amount: Decimal) -> float | int:
    """A JSON number for OCPP's decimal fields (exact for money with few decimals)."""
    return int(amount) if amount == amount.to_integral_value() else float(amount)


async def shows_cost(store: Store, station_id: str) -> bool:
    """Does the station show running cost (TariffCostCtrlr.Enabled[Cost] = true)?"""
    for v in await store.devices.variables(station_id, COST_COMPONENT):
        if (v.variable == "Enabled" and v.variable_instance == "Cost"
                and v.attribute_type == "Actual"):
            return (v.value or "").strip().lower() == "true"
    return False


async def tariff_for_token(store: Store, id_token: str | None, token_type: str | None
                           ) -> DriverTariff | None:
    """The tariff of the token's group, else the default tariff."""
    if not await store.driver_tariffs.any():
        return None
    group = None
    if id_token is not None and token_type is not None:
        token = await store.tokens.get(id_token, token_type)
        group = token.group_id if token else None
    return await store.driver_tariffs.for_group(group)


async def tariff_message(store: Store, id_token: Payload) -> Payload:
    """I01: the IdTokenInfo field that shows an accepted token's tariff ({} if none)."""
    tariff = await tariff_for_token(store, id_token["idToken"], id_token["type"])
    return {} if tariff is None else {"personalMessage": message(tariff_text(tariff))}


async def price_transaction(store: Store, station_id: str, transaction_id: str,
                            until: datetime, now: datetime) -> Cost | None:
    """The transaction's cost up to `until` (its end once it ended), stored with it; None
    when no tariff applies or the transaction is unknown."""
    if not await store.driver_tariffs.any():
        return None
    tx = await store.transactions.get(station_id, transaction_id)
    if tx is None:
        return None
    tariff = await store.driver_tariffs.fixed_tariff(station_id, transaction_id)
    fixed = tariff is not None
    if tariff is None:
        tariff = await tariff_for_token(store, tx.id_token, tx.token_type)
        fixed = tx.id_token is not None
    if tariff is None:
        return None
    final = tx.ended_at is not None
    readings, states = await store.driver_tariffs.usage_rows(station_id, transaction_id)
    cost = session_cost(tariff, Usage(until=tx.ended_at if final else until,
                                      readings=readings, states=states))
    await store.driver_tariffs.record_cost(station_id, transaction_id, tariff, cost,
                                           final=final, fix_tariff=fixed, now=now)
    return cost


async def transaction_event_cost(store: Store, station_id: str, req: Payload,
                                 timestamp: datetime, now: datetime) -> Payload:
    """The cost fields of a TransactionEvent answer (I02 running, I03 final)."""
    if not await store.driver_tariffs.any():
        return {}
    transaction_id = req["transactionInfo"]["transactionId"]
    ended = req["eventType"] == "Ended"
    shown = ended or await shows_cost(store, station_id)
    if not shown and "idToken" not in req:
        return {}
    # priced when the token comes, shown or not: that fixes the session's tariff
    cost = await price_transaction(store, station_id, transaction_id, timestamp, now)
    if cost is None or not shown:
        return {}
    text = final_text(cost) if ended else running_text(cost)
    return {"totalCost": as_number(cost.total), "updatedPersonalMessage": message(text)}
