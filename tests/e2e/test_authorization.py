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
