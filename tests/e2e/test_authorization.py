"""Block C: Authorize against the token table."""

from __future__ import annotations

from csms.app import Csms
from tests.e2e.conftest import StationFactory


async def test_C01_authorize_known_unknown_and_blocked_tokens(
    csms: Csms, make_station: StationFactory
) -> None:
    now = csms.clock.now()
    await csms.store.tokens.add("GOOD", "ISO14443", now)
    await csms.store.tokens.add("BAD", "ISO14443", now, status="Blocked")
    station = await make_station("CS001")

    async def status(token: str, type: str = "ISO14443") -> str:
        reply = await station.call("Authorize", {"idToken": {"idToken": token, "type": type}})
        return str(reply["idTokenInfo"]["status"])

    assert await status("GOOD") == "Accepted"
    assert await status("BAD") == "Blocked"
    assert await status("NEVER-SEEN") == "Unknown"
    assert await status("GOOD", "ISO15693") == "Unknown"  # a token is its value and type


async def test_C01_expired_token_is_expired(csms: Csms, make_station: StationFactory) -> None:
    from datetime import timedelta

    await csms.store.tokens.add("OLD", "ISO14443", csms.clock.now(),
                                expires_at=csms.clock.now() - timedelta(days=1))
    station = await make_station("CS001")
    reply = await station.call("Authorize", {"idToken": {"idToken": "OLD", "type": "ISO14443"}})
    assert reply["idTokenInfo"]["status"] == "Expired"


async def test_C01_present_token_at_station(csms: Csms, make_station: StationFactory) -> None:
    await csms.store.tokens.add("GOOD", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    assert await station.present_token(1, "GOOD", "ISO14443") == "Accepted"
    assert await station.present_token(1, "NOPE", "ISO14443") in ("Unknown", "Invalid")


async def _tx_ended(csms: Csms, station_id: str, transaction_id: str):  # type: ignore[no-untyped-def]
    from tests.support import eventually

    async def ended():  # type: ignore[no-untyped-def]
        tx = await csms.store.transactions.get(station_id, transaction_id)
        return tx if tx is not None and tx.ended_at is not None else None

    return await eventually(ended)


async def test_C09_a_group_token_stops_a_transaction_another_of_its_group_started(
    csms: Csms, make_station: StationFactory
) -> None:
    now = csms.clock.now()
    await csms.store.tokens.add("FLEET-1", "Local", now)  # the group, itself in the table
    await csms.store.tokens.add("DRIVER-A", "ISO14443", now, group_id="FLEET-1")
    await csms.store.tokens.add("DRIVER-B", "ISO14443", now, group_id="FLEET-1")
    await csms.store.tokens.add("STRANGER", "ISO14443", now)
    station = await make_station("CS001")
    reply = await station.call("Authorize", {"idToken": {"idToken": "DRIVER-B",
                                                         "type": "ISO14443"}})
    assert reply["idTokenInfo"]["groupIdToken"] == {"idToken": "FLEET-1", "type": "Local"}

    assert await station.present_token(1, "DRIVER-A") == "Accepted"
    tx_id = station.transaction_id(1)
    assert tx_id is not None
    assert await station.present_token(1, "STRANGER") == "NotAllowed"  # not of the group
    assert station.transaction_id(1) == tx_id
    assert await station.present_token(1, "DRIVER-B") == "Accepted"
    assert station.transaction_id(1) is None
    tx = await _tx_ended(csms, "CS001", tx_id)
    assert tx.stopped_reason == "Local"
    events = await csms.store.pool.fetch(
        "SELECT payload FROM transaction_events WHERE transaction_id = $1 ORDER BY seq_no",
        tx_id)
    import json

    ended = json.loads(events[-1]["payload"])
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["idToken"] == {"idToken": "DRIVER-B", "type": "ISO14443"}


async def test_C16_master_pass_stops_any_transaction_but_starts_none(
    csms: Csms, make_station: StationFactory
) -> None:
    now = csms.clock.now()
    await csms.store.tokens.add("MASTER", "ISO14443", now, group_id="MASTERPASS")
    await csms.store.tokens.add("DRIVER", "ISO14443", now)
    station = await make_station("CS001")
    results = await csms.commands.set_variables(
        "CS001", [("AuthCtrlr", "MasterPassGroupId", "MASTERPASS")])
    assert results[0]["attributeStatus"] == "Accepted"

    assert await station.present_token(1, "MASTER") == "Accepted"
    assert station.transaction_id(1) is None  # C16: a master pass starts nothing
    assert await station.present_token(1, "DRIVER") == "Accepted"
    tx_id = station.transaction_id(1)
    assert tx_id is not None
    assert await station.present_token(1, "MASTER") == "Accepted"
    assert station.transaction_id(1) is None
    tx = await _tx_ended(csms, "CS001", tx_id)
    assert tx.stopped_reason == "MasterPass"

    # the CSMS too refuses a transaction started with it (the station knows the group)
    reply = await station.call("TransactionEvent", {
        "eventType": "Started", "timestamp": "2026-12-04T10:00:00Z",
        "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": "MP-1"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "MASTER", "type": "ISO14443"}})
    assert reply["idTokenInfo"]["status"] == "Invalid"
    reply = await station.call("TransactionEvent", {
        "eventType": "Ended", "timestamp": "2026-12-04T10:01:00Z",
        "triggerReason": "StopAuthorized", "seqNo": 1,
        "transactionInfo": {"transactionId": "MP-1", "stoppedReason": "MasterPass"},
        "idToken": {"idToken": "MASTER", "type": "ISO14443"}})
    assert reply["idTokenInfo"]["status"] == "Accepted"  # ...but it may stop one


async def test_C10_C11_C12_the_cache_authorizes_offline_until_cleared(
    csms: Csms, make_station: StationFactory
) -> None:
    from datetime import timedelta

    now = csms.clock.now()
    await csms.store.tokens.add("CACHED", "ISO14443", now,
                                expires_at=now + timedelta(days=30))
    station = await make_station("CS001")
    station.device_model.put("AuthCtrlr", "LocalAuthorizeOffline", "false")
    reply = await station.call("Authorize", {"idToken": {"idToken": "CACHED",
                                                         "type": "ISO14443"}})
    assert reply["idTokenInfo"]["cacheExpiryDateTime"].startswith(
        (now + timedelta(days=30)).strftime("%Y-%m-%d"))

    assert await station.present_token(1, "CACHED") == "Accepted"  # online, then cached
    assert await station.present_token(1, "CACHED") == "Accepted"  # stops it again
    await station.disconnect()
    assert await station.present_token(1, "CACHED") == "Accepted"  # C12: from the cache
    assert await station.present_token(1, "CACHED") == "Accepted"
    assert await station.present_token(1, "UNSEEN") == "Invalid"
    await station.reconnect()
    assert (await csms.commands.clear_cache("CS001"))["status"] == "Accepted"  # C11
    await station.disconnect()
    assert await station.present_token(1, "CACHED") == "Invalid"
    await station.reconnect()

    station.device_model.put("AuthCacheCtrlr", "Enabled", "false")
    reply = await csms.commands.clear_cache("CS001")
    assert reply["status"] == "Rejected"  # no cache to clear


async def test_E05_a_token_the_csms_does_not_accept_ends_the_transaction(
    csms: Csms, make_station: StationFactory
) -> None:
    """Started offline with a token the station could not check; once the CSMS answers
    the queued event Unknown, the station (StopTxOnInvalidId) ends it DeAuthorized."""
    station = await make_station("CS001")
    await station.disconnect()
    assert await station.present_token(1, "STRANGER") == "Accepted"  # LocalAuthorizeOffline
    tx_id = station.transaction_id(1)
    assert tx_id is not None
    await station.reconnect()
    tx = await _tx_ended(csms, "CS001", tx_id)
    assert tx.stopped_reason == "DeAuthorized"
    assert station.transaction_id(1) is None
