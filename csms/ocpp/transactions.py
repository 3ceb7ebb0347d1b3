"""Block E, transactions: TransactionEvent (E01-E15).

An event and its meter values are stored in one database transaction, keyed on
transactionId + seqNo: a crash stores neither (the station resends), and a replayed seqNo
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from csms.clock import parse_ocpp
from csms.connection import StationContext
from csms.events import TransactionChanged
from csms.frames import Payload
from csms.ocpp.authorization import id_token_info, is_master_pass
from csms.ocpp.cost import transaction_event_cost
from csms.ocpp.deps import Deps
from csms.ocpp.metering import energy_range, meter_rows, publish_power
from csms.ocpp.reservation import reservation_used
from csms.store.transactions import TransactionEventRecord


@dataclass(frozen=True)
class TransactionEvent:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        store, now = self.deps.store, self.deps.clock.now()
        info = req["transactionInfo"]
        transaction_id = info["transactionId"]
        evse = req.get("evse") or {}
        evse_id = evse.get("id") or await self._evse_of(ctx, transaction_id)
        if evse_id:
            ctx.transaction_evse[transaction_id] = evse_id
        rows = meter_rows(ctx.station_id, evse_id or 0, transaction_id, req.get("meterValue", []))
        low, high = energy_range(rows)
        id_token = req.get("idToken")
        event = TransactionEventRecord(
            transaction_id=transaction_id,
            seq_no=req["seqNo"],
            event_type=req["eventType"],
            trigger_reason=req["triggerReason"],
            timestamp=parse_ocpp(req["timestamp"]),
            offline=bool(req.get("offline", False)),
            evse_id=evse_id,
            connector_id=evse.get("connectorId"),
            id_token=id_token["idToken"] if id_token else None,
            token_type=id_token["type"] if id_token else None,
            charging_state=info.get("chargingState"),
            stopped_reason=info.get("stoppedReason"),
            energy_min_wh=low,
            energy_max_wh=high,
            payload=req,
        )
        if await store.transactions.record_event(ctx.station_id, event, now, rows):
            publish_power(self.deps, rows)
            self.deps.events.publish(TransactionChanged(
                ctx.station_id, transaction_id, evse_id, event.event_type,
                event.charging_state, event.timestamp, identified=id_token is not None,
            ))
        if event.event_type == "Ended":
            ctx.transaction_evse.pop(transaction_id, None)
        if req.get("reservationId") is not None:
            await reservation_used(store, self.deps.events, ctx.station_id,
                                   req["reservationId"], transaction_id, now)
        reply = await transaction_event_cost(store, ctx.station_id, req, event.timestamp, now)
        if id_token:
            info = await id_token_info(store.tokens, id_token, now)
            if info["status"] == "Unknown" and info_remote_start(req):
                # F01/F02: the CSMS asked for this start with this token; an Unknown here
                # would have a station with StopTxOnInvalidId end it at once (E05)
                info = {"status": "Accepted"}
            if info["status"] == "Accepted" and _authorizes_start(req) and (
                await is_master_pass(self.deps, ctx.station_id, info)
            ):
                info = {**info, "status": "Invalid"}  # C16: it may stop, never start
            reply["idTokenInfo"] = info
        return reply

    async def _evse_of(self, ctx: StationContext, transaction_id: str) -> int | None:
        if transaction_id in ctx.transaction_evse:
            return ctx.transaction_evse[transaction_id]
        known = await self.deps.store.transactions.get(ctx.station_id, transaction_id)
        return known.evse_id if known else None


def _authorizes_start(req: Payload) -> bool:
    """Whether the event's idToken is the one a transaction is started (authorized) with."""
    return req["eventType"] == "Started" or req["triggerReason"] in ("Authorized", "RemoteStart")


def info_remote_start(req: Payload) -> bool:
    """Whether the station says the transaction was started by RequestStartTransaction."""
    return req["transactionInfo"].get("remoteStartId") is not None
