"""Station passwords (Security Profile 1/2 Basic auth), stored as salted scrypt hashes.

Verification is slow on purpose (~50 ms), so it runs in a worker thread, and a password
already verified for a station is remembered by its SHA-256 for the life of the process:
a station reconnecting after a network blip pays nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

N, R, P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
        dklen=len(expected),
    )
    return hmac.compare_digest(actual, expected)


class PasswordChecker:
    def __init__(self) -> None:
        self._verified: dict[tuple[str, str], bytes] = {}

    async def check(self, station_id: str, password: str, stored: str) -> bool:
        key = (station_id, stored)
        fingerprint = hashlib.sha256(password.encode()).digest()
        known = self._verified.get(key)
        if known is not None:
            return hmac.compare_digest(known, fingerprint)
        ok = await asyncio.to_thread(verify_password, password, stored)
        if ok:
            self._verified[key] = fingerprint
        return ok
