"""Revenue shares per portfolio (and programme) and the revenue-split ledger of settled
events (issue 14), as JSON or CSV.

Shares are set by whoever manages portfolios (operator, admin), each change audited.
The ledger is written by a site event's settlement that names the portfolio
(csms/api/settlements.py) or a dispatch's settlement asked for it
(csms/api/dispatch_settlements.py), and read here; an aggregator token reads the ledgers
of its own portfolios only. Drivers appear by pseudonym only (csms/ledger.py).
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import Response
from pydantic import Field

from csms import ledger
from csms.api.auth import Caller, Permission, require
from csms.api.carbon import rejected
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Body, Model
from csms.portfolios import PORTFOLIO_ID
from csms.store.portfolios import Portfolio

router = APIRouter(prefix="/api/portfolios", tags=["portfolios"])

PortfolioId = Annotated[str, Path(pattern=PORTFOLIO_ID)]
Reader = Annotated[Caller, require(Permission.PORTFOLIOS)]
Writer = Annotated[Caller, require(Permission.PORTFOLIOS_WRITE)]
CSV_COLUMNS = ("id", "recorded_at", "portfolio_id", "programme", "site_id", "event_id",
               "dispatch_id", "settlement_seq", "party", "payee", "contribution_kwh", "amount",
               "currency", "audit_seq")


class SharesIn(Body):
    programme: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$",
                           description="'': the portfolio's default")
    # plain floats: checked below, so every refusal is counted and logged
    aggregator: float
    site_operator: float
    drivers: float = Field(description="split among participating drivers by each "
                           "session's measured contribution")


class SharesOut(Model):
    portfolio_id: str
    programme: str
    aggregator: float
    site_operator: float
    drivers: float


class LedgerEntryOut(Model):
    id: int
    recorded_at: datetime
    portfolio_id: str
    programme: str
    site_id: str
    event_id: int | None = Field(description="the site event settled, or")
    dispatch_id: int | None = Field(description="the portfolio dispatch settled")
    settlement_seq: int
    party: str
    payee: str
    contribution_kwh: float | None
    amount: Decimal
    currency: str
    audit_seq: int


async def _visible(portfolio_id: str, who: Caller, parts: Parts) -> Portfolio:
    found = await parts.store.portfolios.get(portfolio_id)
    if found is None or not who.sees_portfolio(portfolio_id):
        raise not_found(f"portfolio {portfolio_id}")
    return found


@router.put("/{portfolio_id}/revenue-shares", responses={
    404: {"description": "no such portfolio"},
    422: {"description": "shares not 0-1 or not adding up to 1 (counted and logged)"}})
async def set_shares(portfolio_id: PortfolioId, body: SharesIn, who: Writer,
                     parts: PartsDep) -> SharesOut:
    """How the portfolio's settled events are split (for one programme, or by default);
    recorded in the audit log."""
    await _visible(portfolio_id, who, parts)
    values = (body.aggregator, body.site_operator, body.drivers)
    if not all(math.isfinite(v) for v in values):
        raise rejected("revenue_shares", "not_finite", "shares must be finite numbers",
                       portfolio=portfolio_id, by=who.name)
    try:
        ledger.Shares(*values)
    except ValueError as exc:
        raise rejected("revenue_shares", "bad_shares", str(exc), portfolio=portfolio_id,
                       by=who.name) from None
    now = parts.clock.now()
    async with parts.store.pool.acquire() as conn, conn.transaction():
        await parts.store.carbon.set_shares(portfolio_id, body.programme, *values, who.name,
                                            now, conn)
        await parts.store.audit.append(parts.audit_key, who.name, "revenue_shares.set", {
            "portfolio": portfolio_id, "programme": body.programme,
            "aggregator": body.aggregator, "site_operator": body.site_operator,
            "drivers": body.drivers}, now, conn)
    return SharesOut(portfolio_id=portfolio_id, programme=body.programme,
                     aggregator=body.aggregator, site_operator=body.site_operator,
                     drivers=body.drivers)


@router.get("/{portfolio_id}/revenue-shares", responses={
    404: {"description": "no such portfolio, or no shares for the programme"}})
async def get_shares(portfolio_id: PortfolioId, who: Reader, parts: PartsDep,
                     programme: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{0,64}$")] = ""
                     ) -> SharesOut:
    """The shares that apply to the programme (its own, else the portfolio's default)."""
    await _visible(portfolio_id, who, parts)
    found = await parts.store.carbon.shares(portfolio_id, programme)
    if found is None:
        raise not_found(f"revenue shares of portfolio {portfolio_id}")
    return SharesOut(portfolio_id=portfolio_id, programme=programme, aggregator=found[0],
                     site_operator=found[1], drivers=found[2])


@router.get("/{portfolio_id}/ledger", response_model=list[LedgerEntryOut], responses={
    200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"},
    404: {"description": "no such portfolio"}})
async def get_ledger(
    portfolio_id: PortfolioId, who: Reader, parts: PartsDep,
    event_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    dispatch_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response | list[LedgerEntryOut]:  # CSV bypasses the response model
    """The revenue-split ledger in the order recorded: one row per payee of each settled
    site event and of each site of a settled dispatch, each with the audit entry that
    records it."""
    await _visible(portfolio_id, who, parts)
    entries = [LedgerEntryOut.model_validate(e)
               for e in await parts.store.carbon.ledger(portfolio_id, event_id, dispatch_id)]
    if format == "json":
        return entries
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        row = e.model_dump()
        writer.writerow(["" if row[c] is None else
                         row[c].isoformat() if isinstance(row[c], datetime) else row[c]
                         for c in CSV_COLUMNS])
    return Response(out.getvalue(), status_code=status.HTTP_200_OK, media_type="text/csv",
                    headers={"Content-Disposition":
                             f'attachment; filename="ledger-{portfolio_id}.csv"'})
