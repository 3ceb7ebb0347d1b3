"""Block I, tariff and cost, as this station reads OCPP 2.0.1 Part 2: the CSMS computes
the cost, the station shows what it is sent. What a driver would see is kept in
`station.display` (newest last) and the newest cost per transaction in `station.costs`:

- I01: the `personalMessage` of an Authorize answer (the driver's tariff);
- I02: CostUpdated, and `totalCost` / `updatedPersonalMessage` in a TransactionEvent
  answer, only while TariffCostCtrlr.Enabled[Cost] is true (else not shown);
- I03: the final `totalCost` in the answer to the Ended event (shown whenever sent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station.replies import Reply

if TYPE_CHECKING:
    from simulators.station.core import Station


def _shows_cost(station: Station) -> bool:
    return station.device_model.flag("TariffCostCtrlr", "Enabled")


async def cost_updated(station: Station, req: dict) -> Reply:
    if _shows_cost(station):
        station.costs[req["transactionId"]] = req["totalCost"]
        station.display.append(f"{req['totalCost']} {_currency(station)}")
    return {}, None


def on_authorize(station: Station, info: dict) -> None:
    message = info.get("personalMessage")
    if message:
        station.display.append(message["content"])


def on_transaction_event(station: Station, event: dict, reply: dict) -> None:
    ended = event["eventType"] == "Ended"
    if not (ended or _shows_cost(station)):
        return
    if "totalCost" in reply:
        station.costs[event["transactionInfo"]["transactionId"]] = reply["totalCost"]
    message = reply.get("updatedPersonalMessage")
    if message:
        station.display.append(message["content"])


def _currency(station: Station) -> str:
    return station.device_model.value("TariffCostCtrlr", "Currency")
