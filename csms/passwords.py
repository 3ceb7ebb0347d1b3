"""Station passwords (Security Profile 1/2 Basic auth), stored salted and hashed.

A password a person chose may be weak, so it is stored as scrypt, slow on purpose (~50 ms):
verified in a worker thread, and remembered by its SHA-256 for the life of the process so a
reconnect after a network blip pays nothing. A password the CSMS generated carries 192
random bits; a slow hash adds nothing against guessing it, so it is stored as salted SHA-256
and a reconnect storm after a restart costs microseconds per station, not scrypt
(docs/decisions/0004-csms-station-passwords.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

N, R, P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def generate_password() -> tuple[str, str]:
    """A new random password (32 characters) and its fast hash."""
    password = secrets.token_urlsafe(24)
    return password, hash_generated(password)


def hash_generated(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.sha256(salt + password.encode()).digest()
    b64 = base64.b64encode
    return f"sha256${b64(salt).decode()}${b64(digest).decode()}"


def is_fast(stored: str) -> bool:
    return stored.startswith("sha256$")


def verify_password(password: str, stored: str) -> bool:
    if is_fast(stored):
        try:
            _, salt, digest = stored.split("$")
        except ValueError:
            return False
        actual = hashlib.sha256(base64.b64decode(salt) + password.encode()).digest()
        return hmac.compare_digest(actual, base64.b64decode(digest))
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


# scrypt releases the GIL: one thread per core verifies fastest (more threads only fight
# over the cores and the memory bus: 36/s with 2 threads, 21-31/s with asyncio's default 6
# on a 2-core machine, where a reconnect storm after a restart is all scrypt).
_verifier = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="scrypt")


class PasswordChecker:
    def __init__(self) -> None:
        self._verified: dict[tuple[str, str], bytes] = {}
        self._running: dict[tuple[str, str, bytes], asyncio.Future[bool]] = {}

    async def check(self, station_id: str, password: str, stored: str) -> bool:
        if is_fast(stored):
            return verify_password(password, stored)
        key = (station_id, stored)
        fingerprint = hashlib.sha256(password.encode()).digest()
        known = self._verified.get(key)
        if known is not None:
            return hmac.compare_digest(known, fingerprint)
        # One verification per station and password at a time, finished and remembered even
        # if the handshake that started it times out: in a storm the station's retry then
        # finds the answer instead of queueing another 50 ms of scrypt.
        job_key = (station_id, stored, fingerprint)
        job = self._running.get(job_key)
        if job is None:
            job = asyncio.get_running_loop().run_in_executor(
                _verifier, verify_password, password, stored
            )
            self._running[job_key] = job
            job.add_done_callback(lambda done: self._remember(job_key, done))
        return await asyncio.shield(job)

    def _remember(self, job_key: tuple[str, str, bytes], job: asyncio.Future[bool]) -> None:
        self._running.pop(job_key, None)
        if not job.cancelled() and job.exception() is None and job.result():
            station_id, stored, fingerprint = job_key
            self._verified[(station_id, stored)] = fingerprint
