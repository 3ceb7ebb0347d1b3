"""Flexibility forecasts of sites and portfolios (issue 14): the I/O around
`vpp.forecast`. It reads the plugged-in transactions, the site's past sessions and what the
grid side set (limits, tariff), and runs the pure forecast in a thread.

The baseline is the site's plan without any target: dispatches of the VPP itself are left
out, so a forecast during an event still shows the counterfactual. It is planned by the
scheduler's own rules (`[scheduler]`: the departure margin and overstay, and the departure
model learnt from the site's finished transactions), so the baseline is what the site's live
plan draws: with looser rules it sat 30-100% under it, and every dispatch's target
(baseline minus share) asked the site for more than its share. V2G cars get the terms the
scheduler plans them with (csms/v2g_ledger.py `lenders`), so what they can lend counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from csms.config import SchedulerConfig
from csms.scheduling.demand import SessionFacts, evse_index, session_for
from csms.scheduling.departures import learnt, learnt_drivers
from csms.scheduling.grid_inputs import plan_inputs
from csms.store import Store
from csms.store.portfolios import Member
from csms.store.transactions import Transaction
from csms.tariffs import TariffCatalog
from csms.v2g_ledger import Lenders, lenders, stored_devices
from smart_charging import PlanSettings, Prices, Session, Site, prices_from_dict
from vpp import ExpectedArrival, Flexibility, PastSession, expected, learn, site_flexibility


@dataclass(frozen=True)
class EngineInputs:
    """What a site's forecast was planned from: kept, so that an offer's share can be
    checked by the engine against the same cars (`vpp.share_holds`)."""

    site: Site
    plugged: list[Session]
    arrivals: list[ExpectedArrival]
    prices: Prices
    settings: PlanSettings


@dataclass(frozen=True)
class MemberForecast:
    """One portfolio member's forecast: `label` is "site" or "site/node"."""

    label: str
    site_id: str
    node: str  # the node its dispatch acts on (the root for a whole site)
    forecast: Flexibility
    inputs: EngineInputs


def label(member: Member) -> str:
    return member.site_id if member.node is None else f"{member.site_id}/{member.node}"


def members_once(members: tuple[Member, ...]) -> list[Member]:
    """A whole site covers its nodes: a node member of a site that is also a whole member
    is left out, so nothing is counted twice."""
    whole = {m.site_id for m in members if m.node is None}
    return [m for m in members if m.node is None or m.site_id not in whole]


def under(site: Site, node: str | None) -> Site:
    """The site cut to the EVSEs under `node` (the whole site for None)."""
    if node is None:
        return site
    return replace(site, evses=tuple(e for e in site.evses
                                     if node in site.path_to_root(e.node)))


def prices_of(tariffs: TariffCatalog, site_id: str) -> Prices:
    tariff_id = tariffs.by_site.get(site_id)
    tariff = tariffs.tariffs.get(tariff_id) if tariff_id else None
    return prices_from_dict(tariff) if tariff else Prices()


async def running(store: Store) -> list[Transaction]:
    return await store.transactions.list(active=True, limit=1_000_000)


async def station_versions(store: Store) -> dict[str, str | None]:
    """Each station's OCPP version as stored (V2G discharge needs 2.1)."""
    return {s.id: s.ocpp_version for s in await store.stations.list()}


def on_evses(site: Site, active: list[Transaction]) -> dict[str, Transaction]:
    """The running transaction on each of the site's EVSEs, by EVSE id (the newest:
    `active` is newest first, as the store lists it)."""
    by_key = evse_index(site)
    out: dict[str, Transaction] = {}
    for tx in active:
        if tx.evse_id is None or tx.started_at is None:
            continue
        evse = by_key.get((tx.station_id, tx.evse_id))
        if evse is not None and evse.id not in out:
            out[evse.id] = tx
    return out


def plugged(site: Site, records: dict[str, Transaction], now: datetime,
            rules: SchedulerConfig, v2g: Lenders | None = None) -> list[Session]:
    """The running transactions (by EVSE id) as engine sessions, as the scheduler makes
    them, with their V2G terms where they may discharge."""
    out = []
    for evse_id, tx in records.items():
        evse = site.evse(evse_id)
        assert tx.started_at is not None  # on_evses keeps started ones only
        facts = SessionFacts(tx.transaction_id, tx.started_at, tx.departure_time,
                             tx.energy_wanted_wh, tx.energy_wh, tx.charge_now)
        session = session_for(
            facts, evse, site, now, overstay=timedelta(seconds=rules.overstay_s),
            margin=timedelta(seconds=rules.departure_margin_s))[0]
        out.append(session if v2g is None else v2g.session(session, evse)[0])
    return out


async def history(store: Store, site: Site, now: datetime, days: int) -> list[PastSession]:
    """The site's finished sessions of the last `days` days (times and energy only)."""
    rows = await store.vpp.past_sessions(sorted({e.station_id for e in site.evses}),
                                         now - timedelta(days=days), now)
    return [PastSession(r["started_at"], r["ended_at"],
                        max(0.0, (r["energy_wh"] or 0.0) / 1000.0), bool(r["charge_now"]))
            for r in rows]


async def site_forecast(store: Store, site: Site, prices: Prices, now: datetime,
                        duration: timedelta, history_days: int, node: str | None = None,
                        active: list[Transaction] | None = None,
                        versions: dict[str, str | None] | None = None, *,
                        rules: SchedulerConfig) -> tuple[Flexibility, EngineInputs]:
    """The forecast of a site (or of the EVSEs under one of its nodes) from `now`;
    `active` and `versions` (OCPP, by station): the running transactions and the
    stations' versions, when the caller read them already; `rules`: the scheduler's
    settings the baseline is planned by. With the inputs it was planned from."""
    inputs = await plan_inputs(store, site, prices, now)
    part = under(inputs.site, node)
    ids = {e.id for e in part.evses}
    if active is None:
        active = await running(store)
    if versions is None:
        versions = await station_versions(store)
    records = {k: tx for k, tx in on_evses(site, active).items() if k in ids}
    v2g = await lenders(store, site, records, versions, stored_devices(store))
    part = v2g.site(part)  # V2G cars lend where they may discharge now, as planned
    cars = plugged(site, records, now, rules, v2g)
    past = await history(store, part, now, history_days)
    last_day = (now.astimezone(UTC) + site.utc_offset).date() - timedelta(days=1)
    model = learn(past, site.utc_offset, last_day - timedelta(days=history_days - 1), last_day)
    arrivals = expected(model, part, cars, now)
    settings = PlanSettings(slot_minutes=rules.slot_minutes, horizon_slots=rules.horizon_slots)
    stations = sorted({e.station_id for e in site.evses})  # as the site's scheduler learns
    leaving = await learnt(store, stations, now, rules.learn_departures_days)
    car_ids = {c.id for c in cars}
    token_of = {tx.transaction_id: tx.id_token for tx in active
                if tx.id_token and tx.transaction_id in car_ids}
    own = await learnt_drivers(store, stations, now, rules.learn_departures_days,
                               sorted(set(token_of.values())))
    drivers = {sid: own[t] for sid, t in token_of.items() if t in own}
    forecast = await asyncio.to_thread(site_flexibility, part, cars, inputs.prices, now,
                                       duration, arrivals, settings, leaving, drivers)
    return forecast, EngineInputs(part, cars, arrivals, inputs.prices, settings)


async def portfolio_forecast(store: Store, sites: dict[str, Site], tariffs: TariffCatalog,
                             members: tuple[Member, ...], now: datetime, duration: timedelta,
                             history_days: int, rules: SchedulerConfig
                             ) -> list[MemberForecast]:
    """Each member's forecast (one `now` for all, so their intervals line up); a member
    whose site is no longer configured is left out."""
    out = []
    active = await running(store)
    versions = await station_versions(store)
    for m in members_once(members):
        site = sites.get(m.site_id)
        if site is None:
            continue
        f, inputs = await site_forecast(store, site, prices_of(tariffs, m.site_id), now,
                                        duration, history_days, m.node, active, versions,
                                        rules=rules)
        out.append(MemberForecast(label(m), m.site_id, m.node or site.root.id, f, inputs))
    return out
