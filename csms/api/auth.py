"""API tokens and roles: who may call what.

A token is 32 random bytes (256 bits) from `secrets`, shown once when it is made. Only its
SHA-256 is stored. A slow, salted hash (scrypt, as for station passwords) protects
passwords that people choose and that an attacker can guess from a list; a random 256-bit
token cannot be guessed, so a plain hash is as safe and lets a request find its token with
one indexed lookup instead of ~50 ms of scrypt per request.

Each role is a set of permissions; each route names the one permission it needs. The table
below is the whole policy.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from csms.store.api_tokens import ApiToken, ApiTokenRepo

TOKEN_PREFIX = "csms_"  # makes a leaked token easy to recognise (and to scan for)
# The dashboard's login keeps the token in this HttpOnly cookie, and the API accepts it
# too; a request that changes something must then also carry CSRF_HEADER (see
# docs/decisions/0012-dashboard.md).
COOKIE = "csms_token"
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Permission(StrEnum):
    READ = "read"  # stations, id tokens, transactions, sessions, the live feed
    STATIONS = "stations:write"  # provisioning
    ID_TOKENS = "id-tokens:write"
    SESSIONS = "sessions:write"  # departure time, energy wanted, charge now
    COMMANDS = "commands"  # remote start/stop, reset, profiles ... to a station
    SITES = "sites:read"  # site load and plans
    LIMITS = "limits:write"  # limits and demand-response events on the token's nodes
    TARIFFS = "tariffs:write"  # a site's tariff
    METRICS = "metrics"
    # certificates, network profiles, a customer's data at a station: admin only
    SECURITY = "security"
    PORTFOLIOS = "portfolios:read"  # an aggregator's pooled sites (its own, if scoped)
    PORTFOLIOS_WRITE = "portfolios:write"  # make and remove portfolios
    AUDIT = "audit:read"  # the tamper-evident log
    CARBON = "carbon:read"  # a site's grid emission factors
    CARBON_WRITE = "carbon:write"  # set them (a grid company, an aggregator: issue 14)
    VPP = "vpp:write"  # answer demand-response invitations, accept offers (dispatch)


ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "operator": frozenset({
        Permission.READ, Permission.STATIONS, Permission.ID_TOKENS, Permission.SESSIONS,
        Permission.COMMANDS, Permission.SITES, Permission.METRICS, Permission.TARIFFS,
        Permission.PORTFOLIOS, Permission.PORTFOLIOS_WRITE, Permission.AUDIT,
        Permission.CARBON,
    }),
    # A grid company sees and limits its own nodes; it does not see drivers or stations.
    # Emission factors: on the sites of its nodes.
    "grid": frozenset({Permission.SITES, Permission.LIMITS, Permission.CARBON,
                       Permission.CARBON_WRITE}),
    # An aggregator sees the portfolios its token names (and the log of what it
    # committed to), forecasts them and answers invitations for them, and the emission
    # factors of their sites; no drivers, no stations.
    "aggregator": frozenset({Permission.PORTFOLIOS, Permission.AUDIT, Permission.CARBON,
                             Permission.CARBON_WRITE, Permission.VPP}),
    "viewer": frozenset({Permission.READ, Permission.SITES, Permission.METRICS,
                         Permission.PORTFOLIOS, Permission.CARBON}),
}


def new_token() -> tuple[str, bytes]:
    """(the token to show once, the hash to store)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Caller:
    """The token a request came with."""

    name: str
    role: str
    nodes: tuple[str, ...]
    portfolios: tuple[str, ...] = ()

    def may(self, permission: Permission) -> bool:
        return permission in ROLES.get(self.role, frozenset())

    def sees_portfolio(self, portfolio_id: str) -> bool:
        """An aggregator token sees the portfolios it names; other roles see all."""
        return self.role != "aggregator" or portfolio_id in self.portfolios


_bearer = HTTPBearer(auto_error=False, description="an API token from `csms api-tokens add`")


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The request's token (bearer header, else the dashboard's cookie), or 401."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = credentials.credentials
    elif cookie := request.cookies.get(COOKIE):
        if request.method not in SAFE_METHODS and CSRF_HEADER.lower() not in request.headers:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"a request signed in by cookie needs the {CSRF_HEADER} header")
        token = cookie
    else:
        raise _unauthorized("an API token is required (Authorization: Bearer <token>)")
    found = await lookup(request, token)
    if found is None:
        raise _unauthorized("unknown or revoked API token")
    return found


async def lookup(request: Request, token: str) -> Caller | None:
    """The caller a token stands for, or None if it is unknown or revoked."""
    repo: ApiTokenRepo = request.app.state.parts.api_tokens
    record: ApiToken | None = await repo.find(hash_token(token))
    return None if record is None else Caller(record.name, record.role, record.nodes,
                                              record.portfolios)


def require(permission: Permission) -> Any:
    """A route dependency: the caller's role must grant `permission`, else 403."""

    async def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not who.may(permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {who.role} may not do this (needs permission {permission.value})",
            )
        return who

    return Depends(check)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )
