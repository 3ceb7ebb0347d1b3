"""Station password storage: generated secrets hash fast, chosen ones with scrypt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.app import Csms
from csms.passwords import PasswordChecker, generate_password, hash_password, verify_password


def test_generated_passwords_use_the_fast_scheme_and_verify() -> None:
    password, stored = generate_password()
    assert len(password) == 32 and stored.startswith("sha256$")
    assert verify_password(password, stored)
    assert not verify_password(password + "x", stored)
    assert generate_password()[1] != generate_password()[1]  # salted, random


def test_chosen_passwords_use_scrypt_and_verify() -> None:
    stored = hash_password("a-person-chose-this")
    assert stored.startswith("scrypt$")
    assert verify_password("a-person-chose-this", stored)
    assert not verify_password("a-person-chose-that", stored)
    assert not verify_password("anything", "garbage")


async def test_checker_remembers_only_correct_passwords() -> None:
    checker = PasswordChecker()
    stored = hash_password("a-person-chose-this")
    assert not await checker.check("CS1", "wrong-password-123", stored)
    assert await checker.check("CS1", "a-person-chose-this", stored)
    assert await checker.check("CS1", "a-person-chose-this", stored)  # from memory
    assert not await checker.check("CS1", "wrong-password-123", stored)
    _, fast = generate_password()
    assert not await checker.check("CS2", "not-it", fast)


async def test_a_late_disconnect_does_not_mark_the_new_connection_offline(csms: Csms) -> None:
    """A replaced connection's 'disconnected' write can land after its successor connected."""
    t0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    await csms.store.stations.add("CS1", None, t0)
    await csms.store.stations.set_connected("CS1", t0 + timedelta(seconds=10))
    await csms.store.stations.set_disconnected("CS1", t0 + timedelta(seconds=5))
    record = await csms.store.stations.get("CS1")
    assert record is not None and record.online
    await csms.store.stations.set_disconnected("CS1", t0 + timedelta(seconds=20))
    record = await csms.store.stations.get("CS1")
    assert record is not None and not record.online
