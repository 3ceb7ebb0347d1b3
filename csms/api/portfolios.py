"""Portfolios (issue 14): the sites, or nodes of sites, an aggregator pools, and the
tamper-evident log of what was committed and dispatched (csms/audit.py).

An aggregator token sees only the portfolios it names, and of the log only the entries
about them; another portfolio is a 404, as if it did not exist. Making or removing a
portfolio is recorded in the log in the same database transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import Field

from csms import portfolios
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Body, Model
from csms.portfolios import PORTFOLIO_ID
from csms.store.portfolios import Portfolio

router = APIRouter(prefix="/api", tags=["portfolios"])

PortfolioId = Annotated[str, Path(pattern=PORTFOLIO_ID)]
Reader = Annotated[Caller, require(Permission.PORTFOLIOS)]
Writer = Annotated[Caller, require(Permission.PORTFOLIOS_WRITE)]
Auditor = Annotated[Caller, require(Permission.AUDIT)]


class MemberIn(Body):
    site_id: str = Field(min_length=1, max_length=64)
    node: str | None = Field(None, min_length=1, max_length=64,
                             description="one node of the site; absent: the whole site")


class PortfolioIn(Body):
    id: str = Field(pattern=PORTFOLIO_ID)
    name: str = Field(min_length=1, max_length=200)
    operator: str = Field(min_length=1, max_length=200,
                          description="who operates the pooled sites, e.g. a property company")
    members: list[MemberIn] = Field(min_length=1, max_length=1000)


class MemberOut(Model):
    site_id: str
    node: str | None


class PortfolioOut(Model):
    id: str
    name: str
    operator: str
    members: list[MemberOut]
    created_by: str
    created_at: datetime


class AuditEntryOut(Model):
    seq: int
    at: datetime
    actor: str
    kind: str
    body: dict[str, Any]
    hash: str = Field(description="hex SHA-256 over the previous hash and this entry")


@router.get("/portfolios")
async def list_portfolios(who: Reader, parts: PartsDep) -> list[PortfolioOut]:
    """Every portfolio; an aggregator's token: its own."""
    ids = who.portfolios if who.role == "aggregator" else None
    return [PortfolioOut.model_validate(p) for p in await parts.store.portfolios.list(ids)]


@router.post("/portfolios", status_code=status.HTTP_201_CREATED, responses={
    409: {"description": "a portfolio with this id exists"},
    422: {"description": "bad body, or a member that is not a configured site or node"}})
async def create_portfolio(body: PortfolioIn, who: Writer, parts: PartsDep) -> PortfolioOut:
    """Pool sites (or nodes of sites) under one portfolio; recorded in the audit log."""
    now = parts.clock.now()
    try:
        wanted = portfolios.members(parts.sites, [(m.site_id, m.node) for m in body.members])
    except portfolios.MemberError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    portfolio = Portfolio(body.id, body.name, body.operator, wanted, who.name, now)
    if not await portfolios.create(parts.store, parts.audit_key, portfolio, now):
        raise HTTPException(status.HTTP_409_CONFLICT, f"portfolio {body.id} exists")
    return PortfolioOut.model_validate(portfolio)


async def _visible(portfolio_id: str, who: Caller, parts: Parts) -> Portfolio:
    found = await parts.store.portfolios.get(portfolio_id)
    if found is None or not who.sees_portfolio(portfolio_id):
        raise not_found(f"portfolio {portfolio_id}")
    return found


@router.get("/portfolios/{portfolio_id}", responses={404: {"description": "no such portfolio"}})
async def get_portfolio(portfolio_id: PortfolioId, who: Reader,
                        parts: PartsDep) -> PortfolioOut:
    return PortfolioOut.model_validate(await _visible(portfolio_id, who, parts))


@router.delete("/portfolios/{portfolio_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "no such portfolio"}})
async def remove_portfolio(portfolio_id: PortfolioId, who: Writer, parts: PartsDep) -> None:
    """Remove a portfolio (its sites stay); recorded in the audit log."""
    if not await portfolios.remove(parts.store, parts.audit_key, portfolio_id, who.name,
                                   parts.clock.now()):
        raise not_found(f"portfolio {portfolio_id}")


@router.get("/audit")
async def audit_log(
    who: Auditor, parts: PartsDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="entries after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    """The log in order. An aggregator's token sees the entries about its portfolios.
    Verify the whole chain with `csms audit verify`."""
    entries = await parts.store.audit.entries(after, limit)
    if who.role == "aggregator":
        entries = [e for e in entries if e.body.get("portfolio") in who.portfolios]
    return [AuditEntryOut(seq=e.seq, at=e.at, actor=e.actor, kind=e.kind, body=e.body,
                          hash=e.hash.hex()) for e in entries]
