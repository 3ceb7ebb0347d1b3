"""The revenue-split ledger of a settled event (issue 14): who gets what of its net.

A portfolio dispatch is settled for the whole portfolio; its net is first apportioned
over the member sites (`apportion`), then each site's part is split like a site event's.

Pure. The net (payment minus penalty) is split by the portfolio's (or programme's) shares
between the aggregator, the site operator and the drivers who took part; the drivers'
pool is split by each session's measured contribution (kWh not drawn in the event window
against its uncontrolled counterfactual, csms/carbon.py). Rules that decide money:

- amounts are in cents, and the records add up to the net exactly (largest remainder);
- drivers never pay: a negative net (a shortfall penalty) falls on the aggregator and the
  site operator by their shares, on the aggregator alone if both shares are 0;
- sessions that opted out ("charge now") or contributed nothing get nothing; a drivers'
  pool with no contributor goes to the site operator, who hosted the flexibility;
- a driver is a pseudonym: a keyed hash of the id token (HMAC-SHA256 under a key derived
  from the installation's audit key), stable across events so earnings add up, and not
  reversible by hashing a list of card numbers, as an unkeyed hash would be.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Shares:
    aggregator: float
    site_operator: float
    drivers: float

    def __post_init__(self) -> None:
        values = (self.aggregator, self.site_operator, self.drivers)
        if any(not 0 <= v <= 1 for v in values) or abs(sum(values) - 1) > 1e-6:
            raise ValueError("shares are each 0 to 1 and add up to 1")


@dataclass(frozen=True)
class Contribution:
    payee: str  # a driver's pseudonym
    kwh: float


@dataclass(frozen=True)
class Record:
    party: str  # aggregator, site_operator, driver
    payee: str
    contribution_kwh: float | None
    amount: Decimal


def key_from(audit_key: Ed25519PrivateKey) -> bytes:
    """The pseudonyms' key, derived from the installation's audit key: every node of a
    cluster names a driver alike, and nobody without the key can."""
    raw = audit_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    return hashlib.sha256(b"csms ledger pseudonyms\0" + raw).digest()


def pseudonym(key: bytes, id_token: str) -> str:
    """A driver's stable pseudonymous id: not the token, and not guessable from it."""
    return "drv-" + hmac.new(key, id_token.encode(), hashlib.sha256).hexdigest()[:20]


def session_pseudonym(key: bytes, station_id: str, transaction_id: str) -> str:
    """A session's pseudonymous id: no station or transaction id in clear."""
    return "ses-" + hmac.new(key, f"{station_id}/{transaction_id}".encode(),
                             hashlib.sha256).hexdigest()[:20]


def _allocate(total: Decimal, weights: Sequence[float]) -> list[Decimal]:
    """`total` in cents over `weights`, largest remainder first, adding up exactly."""
    cents = int((total / CENT).to_integral_value())
    s = sum(weights)
    if s <= 0:
        return [Decimal(0)] * len(weights)
    raw = [cents * w / s for w in weights]
    floors = [int(Decimal(r).to_integral_value(ROUND_FLOOR)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (floors[i] - raw[i], i))
    for i in order[:cents - sum(floors)]:
        floors[i] += 1
    return [Decimal(c) * CENT for c in floors]


def apportion(net: Decimal, delivered: Sequence[float], owed: Sequence[float]
              ) -> list[Decimal]:
    """A portfolio dispatch's net over its sites, in cents, adding up exactly: a payment
    by what each delivered (a site that delivered nothing gets nothing); a penalty by what
    each fell short of what it owed (its share; a site that drew more than its baseline
    fell short by more than its share), else by what it owed, else evenly, so a site that
    delivered its share pays for no other's shortfall."""
    net = net.quantize(CENT)
    if net >= 0:
        weights = [max(0.0, d) for d in delivered]
    else:
        weights = [max(0.0, o - d) for d, o in zip(delivered, owed, strict=True)]
        if sum(weights) <= 0:
            weights = [max(0.0, o) for o in owed]
    if sum(weights) <= 0:
        weights = [1.0] * len(delivered)
    return _allocate(net, weights)


def split(net: Decimal, shares: Shares, aggregator: str, operator: str,
          contributions: Sequence[Contribution]) -> list[Record]:
    """The ledger records of one settled event (rules in the module docstring)."""
    net = net.quantize(CENT)
    paying = [c for c in contributions if c.kwh > 0]
    if net < 0:
        weights = [shares.aggregator, shares.site_operator]
        agg, op = _allocate(net, weights if sum(weights) > 0 else [1.0, 0.0])
        return [Record("aggregator", aggregator, None, agg),
                Record("site_operator", operator, None, op)]
    drivers_share = shares.drivers if paying else 0.0
    agg, op, pool = _allocate(net, [shares.aggregator,
                                    shares.site_operator + shares.drivers - drivers_share,
                                    drivers_share])
    out = [Record("aggregator", aggregator, None, agg),
           Record("site_operator", operator, None, op)]
    for c, amount in zip(paying, _allocate(pool, [c.kwh for c in paying]), strict=True):
        out.append(Record("driver", c.payee, round(c.kwh, 3), amount))
    return out
