"""Grid emission factors per site, and a session's energy, emissions and emissions avoided
(issue 14): what an aggregator reports for carbon trading.

Factors come from the site file (`[carbon] kg_per_kwh_daily`, a typical day) or are set
here per interval by a grid company (on the sites of its nodes), an aggregator (on the
sites of its portfolios) or an admin; stored intervals hold over the site file's and
reach the next plan. Every refused body is counted (`csms_rejected_inputs_total`) and
logged (`carbon.factors_rejected`), so a feed sending garbage shows up on a dashboard.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AwareDatetime, Field

from csms import carbon, ledger, metrics
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.grid import configured
from csms.api.models import Body, Model
from csms.events import SiteSettingsChanged
from csms.store.carbon import FactorInterval
from smart_charging.model import Site

log = structlog.get_logger()
router = APIRouter(prefix="/api/sites", tags=["carbon"])

Reader = Annotated[Caller, require(Permission.CARBON)]
Writer = Annotated[Caller, require(Permission.CARBON_WRITE)]
SessionReader = Annotated[Caller, require(Permission.READ)]
SiteId = Annotated[str, Path(max_length=64)]  # not csms.api.sites': that needs sites:read

MAX_INTERVALS = 2000
MIN_INTERVAL = timedelta(minutes=1)
MAX_INTERVAL = timedelta(hours=24)
MAX_SPAN = timedelta(days=31)  # one request: at most a month of factors
MAX_PAST = timedelta(days=400)  # published actual factors may come a year late
MAX_AHEAD = timedelta(days=31)


class FactorIn(Body):
    # plain floats: the bounds are checked below, so every refusal is counted and logged
    start: AwareDatetime
    end: AwareDatetime
    kg_per_kwh: float = Field(description=f"kgCO2 per kWh drawn, 0 to {carbon.MAX_KG_PER_KWH}")


class FactorsIn(Body):
    intervals: list[FactorIn] = Field(min_length=1, max_length=MAX_INTERVALS * 2)


class FactorOut(Model):
    start: datetime
    end: datetime
    kg_per_kwh: float | None = Field(description="null: unknown (neither set nor configured)")
    source: str | None = Field(description="api, site_file, or null")


class CarbonWeightOut(Model):
    site_id: str
    weight_per_kg: float = Field(description="what the plan weighs a kg at, beside price "
                                 "(site file `[carbon] weight_per_kg`)")
    factors: list[FactorOut]


def check_intervals(intervals: list[FactorIn], now: datetime) -> tuple[str, str] | None:
    """(reason, message) for the first bound a body breaks, None if it keeps them all."""
    if len(intervals) > MAX_INTERVALS:
        return "too_many", f"at most {MAX_INTERVALS} intervals per request"
    ordered = sorted(intervals, key=lambda i: i.start)
    for k, i in enumerate(ordered):
        if not math.isfinite(i.kg_per_kwh) or not 0 <= i.kg_per_kwh <= carbon.MAX_KG_PER_KWH:
            return "factor_out_of_range", (f"kg_per_kwh must be 0 to {carbon.MAX_KG_PER_KWH},"
                                           f" got {i.kg_per_kwh}")
        if not MIN_INTERVAL <= i.end - i.start <= MAX_INTERVAL:
            return "bad_interval", "each interval is 1 minute to 24 hours long"
        if i.start < now - MAX_PAST or i.end > now + MAX_AHEAD:
            return "out_of_window", "intervals lie within 400 days back and 31 days ahead"
        if k and i.start < ordered[k - 1].end:
            return "overlap", f"intervals overlap at {i.start.isoformat()}"
    if ordered[-1].end - ordered[0].start > MAX_SPAN:
        return "span_too_long", "one request covers at most 31 days"
    return None


async def in_scope(who: Caller, site: Site, parts: Parts) -> bool:
    """A grid token: a site it was given a node of; an aggregator: a site of its
    portfolios; any other role: every site. Outside it a site is a 404, as if it did
    not exist (as for portfolios and grid events)."""
    if who.role == "grid":
        return any(g.split("/", 1)[0] == site.id for g in who.nodes)
    if who.role == "aggregator":
        mine = await parts.store.portfolios.list(who.portfolios)
        return any(m.site_id == site.id for p in mine for m in p.members)
    return True


def rejected(what: str, reason: str, message: str, **context: object) -> HTTPException:
    """Count, log and answer 422 for an input refused at the edge."""
    metrics.rejected_inputs.labels(what, reason).inc()
    log.warning(f"{what}.rejected", reason=reason, detail=message, **context)
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


async def factor_view(parts: Parts, site: Site, start: datetime, end: datetime,
                      step: timedelta) -> list[FactorOut]:
    stored = await parts.store.carbon.factors(site.id, start, end)
    configured = parts.carbon.get(site.id)
    times: list[datetime] = []
    t = start
    while t < end:
        times.append(t)
        t += step
    values = carbon.factor_at(times, None if configured is None else configured.factors,
                              stored)
    out = []
    for t, v in zip(times, values, strict=True):
        from_api = any(i.start <= t < i.end for i in stored)
        out.append(FactorOut(start=t, end=t + step, kg_per_kwh=None if math.isnan(v) else v,
                             source="api" if from_api else None if math.isnan(v)
                             else "site_file"))
    return out


@router.get("/{site_id}/emission-factors", responses={404: {"description": "no such site"}})
async def get_factors(
    site_id: SiteId, who: Reader, parts: PartsDep,
    start: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
    hours: Annotated[int, Query(ge=1, le=168)] = 24,
    step_minutes: Annotated[int, Query(ge=5, le=60)] = 15,
) -> CarbonWeightOut:
    """The factor in each interval from `start`, and where it comes from."""
    site = configured(parts, site_id)
    if not await in_scope(who, site, parts):
        raise not_found(f"site {site_id}")
    now = parts.clock.now()
    begin = (start or now).replace(second=0, microsecond=0)
    configured_carbon = parts.carbon.get(site.id)
    return CarbonWeightOut(
        site_id=site.id,
        weight_per_kg=0.0 if configured_carbon is None else configured_carbon.weight_per_kg,
        factors=await factor_view(parts, site, begin, begin + timedelta(hours=hours),
                                  timedelta(minutes=step_minutes)))


@router.put("/{site_id}/emission-factors", responses={
    404: {"description": "no such site (or not one of this token's nodes or portfolios)"},
    422: {"description": "a factor or interval out of bounds (counted and logged)"}})
async def set_factors(site_id: SiteId, body: FactorsIn, who: Writer,
                      parts: PartsDep) -> list[FactorOut]:
    """Set the site's emission factors per interval (replacing what was stored over the
    span they cover); the site re-plans at once."""
    site = configured(parts, site_id)
    if not await in_scope(who, site, parts):
        raise not_found(f"site {site_id}")
    now = parts.clock.now()
    problem = check_intervals(body.intervals, now)
    if problem is not None:
        raise rejected("emission_factors", *problem, site=site.id, by=who.name)
    intervals = sorted((FactorInterval(i.start, i.end, i.kg_per_kwh) for i in body.intervals),
                       key=lambda i: i.start)
    await parts.store.carbon.set_factors(site.id, intervals, who.name, now)
    log.info("carbon.factors_set", site=site.id, by=who.name, intervals=len(intervals))
    parts.events.publish(SiteSettingsChanged(site.id, "emission factors", now))
    stored = await parts.store.carbon.factors(site.id, intervals[0].start, intervals[-1].end)
    return [FactorOut(start=i.start, end=i.end, kg_per_kwh=i.kg_per_kwh, source="api")
            for i in stored]


class SessionCarbonOut(Model):
    """A session's energy and emissions against charging uncontrolled from plug-in."""

    session: str = Field(description="a pseudonymous session id (no station, no id token)")
    driver: str | None = Field(description="the driver's pseudonym, as in the ledger")
    opted_out: bool
    energy_kwh: float
    emissions_kg: float | None
    baseline_kwh: float
    baseline_emissions_kg: float | None
    avoided_kg: float | None


@router.get("/{site_id}/sessions/{station_id}/{transaction_id}/carbon", responses={
    404: {"description": "no such site, or no such transaction at its stations"},
    409: {"description": "the transaction has not started"}})
async def session_carbon(site_id: SiteId, station_id: str, transaction_id: str,
                         who: SessionReader, parts: PartsDep) -> SessionCarbonOut:
    """Energy, emissions and emissions avoided of one session, against its uncontrolled
    counterfactual (its highest metered power from plug-in until it had what it drew)."""
    site = configured(parts, site_id)
    if station_id not in {e.station_id for e in site.evses}:
        raise not_found(f"station {station_id} in site {site_id}")
    tx = await parts.store.carbon.session(station_id, transaction_id)
    if tx is None:
        raise not_found(f"transaction {transaction_id} on station {station_id}")
    if tx.started_at is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "the transaction has not started")
    now = parts.clock.now()
    start = tx.started_at.replace(second=0, microsecond=0)
    end = min(tx.ended_at or now, now)
    n = max(1, min(math.ceil((end - start) / carbon.MINUTE), 7 * 24 * 60))
    minutes = [start + k * carbon.MINUTE for k in range(n)]
    stored = await parts.store.carbon.factors(site.id, start, minutes[-1] + carbon.MINUTE)
    configured_carbon = parts.carbon.get(site.id)
    factors = carbon.factor_at(minutes, None if configured_carbon is None
                               else configured_carbon.factors, stored)
    samples = await parts.store.carbon.session_samples(station_id, transaction_id, now)
    figures = carbon.session_window(samples, tx.started_at, tx.ended_at, start, now, factors)
    key = ledger.key_from(parts.audit_key)
    e = figures.emissions
    return SessionCarbonOut(
        session=ledger.session_pseudonym(key, station_id, transaction_id),
        driver=None if tx.id_token is None else ledger.pseudonym(key, tx.id_token),
        opted_out=tx.charge_now, energy_kwh=e.energy_kwh, emissions_kg=e.emissions_kg,
        baseline_kwh=e.baseline_kwh, baseline_emissions_kg=e.baseline_emissions_kg,
        avoided_kg=e.avoided_kg)

