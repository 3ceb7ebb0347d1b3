"""Blocks E and F, transactions and remote control: remote start and stop (F01-F03),
transaction status (E14), unlock (F05) and triggered messages (F06)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station import security
from simulators.station.replies import Reply
from simulators.station.smart_charging import install_remote_profile

if TYPE_CHECKING:
    from simulators.station.core import Station


async def request_start_transaction(station: Station, req: dict) -> Reply:
    evse_id = req.get("evseId")
    if evse_id is None:
        free = [e for e in station.evses.values() if e.operative and e.tx is None]
        occupied = [e for e in free if e.ev is not None]
        pick = (occupied or free or [None])[0]
        if pick is None:
            return {"status": "Rejected"}, None
        evse_id = pick.spec.evse_id
    evse = station.evses.get(evse_id)
    if evse is None or not evse.operative:
        return {"status": "Rejected"}, None
    if evse.tx is not None and evse.tx.authorized:
        return {"status": "Rejected"}, None
    profile = req.get("chargingProfile")
    if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
        return {"status": "Rejected"}, None
    evse.pending_remote_start = req
    response: dict = {"status": "Accepted"}
    if evse.tx is not None:
        response["transactionId"] = evse.tx.transaction_id

    async def start() -> None:
        tx = evse.tx
        if tx is None:
            await station._start_transaction(
                evse,
                "RemoteStart",
                id_token=req["idToken"],
                remote_start_id=req["remoteStartId"],
            )
        else:
            tx.id_token = req["idToken"]
            tx.remote_start_id = req["remoteStartId"]
            install_remote_profile(station, evse)
            await station._authorize_transaction(evse, "RemoteStart")
        evse.pending_remote_start = None

    return response, start


async def request_stop_transaction(station: Station, req: dict) -> Reply:
    tx_id = req["transactionId"]
    for evse in station.evses.values():
        if evse.tx is not None and evse.tx.transaction_id == tx_id and not evse.tx.ended:
            return {"status": "Accepted"}, lambda e=evse: station._end_transaction(
                e, "RemoteStop", "Remote"
            )
    return {"status": "Rejected"}, None


async def trigger_message(station: Station, req: dict) -> Reply:
    what = req["requestedMessage"]
    evse_ref = req.get("evse") or {}
    evse_id = evse_ref.get("id")
    if evse_id is not None and evse_id not in station.evses:
        return {"status": "Rejected"}, None
    targets = [station.evses[evse_id]] if evse_id else list(station.evses.values())

    async def boot() -> None:
        await station._boot("Triggered")

    async def heartbeat() -> None:
        await station.call("Heartbeat", {})

    async def status() -> None:
        for e in targets:
            await station._send_status(e)

    async def meter() -> None:
        for e in targets:
            station._advance(e)
            await station.call(
                "MeterValues",
                {"evseId": e.spec.evse_id, "meterValue": [station._meter_value(e, "Trigger")]},
            )

    async def tx_event() -> None:
        for e in targets:
            if e.tx is not None:
                station._advance(e)
                await station._tx_event(e, "Updated", "Trigger", context="Trigger")

    async def sign_certificate() -> None:
        await security.request_certificate(station)

    actions = {
        "SignChargingStationCertificate": sign_certificate,  # A02
        "BootNotification": boot,
        "Heartbeat": heartbeat,
        "StatusNotification": status,
        "MeterValues": meter,
        "TransactionEvent": tx_event,
    }
    if what not in actions:
        return {"status": "NotImplemented"}, None
    if what == "BootNotification" and station.boot_status == "Accepted":
        return {"status": "Rejected"}, None
    return {"status": "Accepted"}, actions[what]


async def unlock_connector(station: Station, req: dict) -> Reply:
    evse = station.evses.get(req["evseId"])
    if evse is None or req["connectorId"] != 1:
        return {"status": "UnknownConnector"}, None
    if evse.tx is not None and evse.tx.authorized:
        return {"status": "OngoingAuthorizedTransaction"}, None
    return {"status": "Unlocked"}, None


async def get_transaction_status(station: Station, req: dict) -> Reply:
    tx_id = req.get("transactionId")
    if tx_id is None:
        return {"messagesInQueue": bool(station._queue)}, None
    ongoing = any(
        e.tx is not None and e.tx.transaction_id == tx_id for e in station.evses.values()
    )
    queued = any(p["transactionInfo"]["transactionId"] == tx_id for p in station._queue)
    return {"ongoingIndicator": ongoing, "messagesInQueue": queued}, None
