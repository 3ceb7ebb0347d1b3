"""The tamper-evident log of what an aggregator commits to and what the grid is told:
dispatches (grid events), portfolios, and later offers and settlements (issue 14).

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical
JSON (seq, time, actor, kind, body), and the hash is signed with the installation's
Ed25519 key. So a changed entry no longer matches its hash, a removed or reordered one
breaks the next entry's link, and a forged chain needs the private key, which lives in a
file beside the database, not in it. The public key is enough to verify (`csms audit
verify`). A removed *tail* leaves no broken link: it shows as a gap once the next entry is
appended, or against a head an auditor noted (`csms audit head`, `verify --head`).

Personal data stays out: bodies name sites, nodes, portfolios and API token names only.
Why this shape: docs/decisions/0026-audit-log.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = bytes(32)  # the "previous hash" of the first entry


@dataclass(frozen=True)
class Entry:
    seq: int
    at: datetime
    actor: str
    kind: str
    body: dict[str, Any]
    prev_hash: bytes
    hash: bytes
    signature: bytes


def canonical(seq: int, at: datetime, actor: str, kind: str, body: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no spaces, UTC microseconds."""
    return json.dumps({"seq": seq, "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                       "actor": actor, "kind": kind, "body": body},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: bytes, seq: int, at: datetime, actor: str, kind: str,
               body: dict[str, Any]) -> bytes:
    return hashlib.sha256(prev_hash + canonical(seq, at, actor, kind, body)).digest()


def verify(entries: list[Entry], public_key: Ed25519PublicKey,
           head: tuple[int, bytes] | None = None) -> list[str]:
    """Every problem found in the chain, in order (empty: intact). `head`: a (seq, hash)
    noted earlier, which must still be in the chain."""
    problems: list[str] = []
    prev, expected_seq = GENESIS, 1
    by_seq: dict[int, bytes] = {}
    for e in entries:
        if e.seq != expected_seq:
            problems.append(f"entry {e.seq}: expected entry {expected_seq} here "
                            "(an entry was removed or reordered)")
        if e.prev_hash != prev:
            problems.append(f"entry {e.seq}: does not link to the entry before it")
        if entry_hash(e.prev_hash, e.seq, e.at, e.actor, e.kind, e.body) != e.hash:
            problems.append(f"entry {e.seq}: its content does not match its hash (changed)")
        try:
            public_key.verify(e.signature, e.hash)
        except InvalidSignature:
            problems.append(f"entry {e.seq}: the signature does not match")
        by_seq[e.seq] = e.hash
        prev, expected_seq = e.hash, e.seq + 1
    if head is not None and by_seq.get(head[0]) != head[1]:
        problems.append(f"the noted head (entry {head[0]}) is missing or changed "
                        "(entries were removed from the end or rewritten)")
    return problems


def load_key(folder: Path) -> Ed25519PrivateKey:
    """The installation's signing key (audit.key, mode 0600), made on first use, with its
    public half beside it (audit.pub) for auditors."""
    key_file, pub_file = folder / "audit.key", folder / "audit.pub"
    if key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_file} is not an Ed25519 private key")
        return key
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    pub_file.write_bytes(public_pem(key))
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key
