"""Dispatch of a portfolio (issue 14): an accepted offer becomes per-site grid events, the
portfolio's metered response is followed minute by minute, and a site that falls short hands
its share to the others (re-split). The decisions are `vpp`'s; this module does the I/O.

A member's share becomes a `target` on its node (the EV load to follow: its baseline minus
the share for a reduction) where the node holds all the site's EVSEs, else a `limit` (that
EV load plus the node's non-EV load), one event per interval the baseline changes in. Every
event, its cancellation on a re-split and the accepted offer go to the audit log in the
transaction that makes them. Why: docs/decisions/0029-vpp.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from csms import grid, metrics
from csms.clock import Clock
from csms.config import VppConfig, programme_of
from csms.events import EventBus, GridEventChanged
from csms.scheduling.leases import Leases
from csms.store import Store
from csms.store.grid import GridEvent
from csms.store.vpp import StoredDispatch, StoredInvitation
from smart_charging import Site
from smart_charging.model import sample
from vpp import Programme, SiteDelivery, TrackingPoint, resplit, short_sites, split

log = structlog.get_logger()
STEP = timedelta(minutes=1)
MERGE_KW = 0.05  # consecutive intervals closer than this share one event
MIN_SHARE_KW = 0.1  # a smaller share makes no event: under what a meter resolves
NOISE_KW = 0.05  # a target this little under 0 is 0 (the forecast's rounding)
TRACKER_LOCK = "vpp-tracker"  # the lock of the cluster's one tracker


def programmes(config: VppConfig) -> dict[str, Programme]:
    """The configured programmes as `vpp` rules."""
    return {name: programme_of(name, r) for name, r in config.programmes.items()}


# --------------------------------------------------------------------------- placing events


@dataclass(frozen=True)
class Placed:
    member: str
    event: GridEvent


def audited(portfolio_id: str, dispatch_id: int, event: GridEvent) -> dict[str, Any]:
    """What the log keeps of one dispatch command: the grid event and whose it is."""
    return {"portfolio": portfolio_id, "dispatch": dispatch_id, "site": event.site_id,
            "event": event.id, "node": event.node, "kind": event.kind, "kw": event.kw,
            "start": event.start.isoformat(), "end": event.end.isoformat(),
            "reference": event.reference}


def target_kw(baseline_kw: float, share: float, direction: str) -> float:
    """The EV load a member is to follow in an interval: its baseline moved by its share,
    below 0 only where V2G cars lend (the forecast's shed past the baseline), never below
    0 by the forecast's rounding."""
    kw = baseline_kw + (-share if direction == "down" else share)
    return round(kw if kw < -NOISE_KW else max(0.0, kw), 3)


def member_steps(offer: dict[str, Any], member: str, share: float, direction: str,
                 since: datetime) -> list[tuple[datetime, datetime, float]]:
    """(start, end, EV kW) for the member from `since`: its baseline moved by its share,
    consecutive intervals within MERGE_KW merged."""
    info = offer["members"][member]
    out: list[tuple[datetime, datetime, float]] = []
    for (a, b), base in zip(intervals(offer), info["baseline_kw"], strict=True):
        if b <= since:
            continue
        kw = target_kw(base, share, direction)
        a = max(a, since)
        if out and abs(out[-1][2] - kw) < MERGE_KW and out[-1][1] == a:
            out[-1] = (out[-1][0], b, out[-1][2])
        else:
            out.append((a, b, kw))
    return out


def intervals(offer: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    return [(datetime.fromisoformat(a), datetime.fromisoformat(b))
            for a, b in offer["intervals"]]


async def place(store: Store, key: Ed25519PrivateKey, sites: Mapping[str, Site],
                d: StoredDispatch, offer: dict[str, Any], shares: dict[str, float],
                since: datetime, actor: str, now: datetime,
                conn: asyncpg.Connection) -> list[Placed]:
    """The grid events carrying `shares` from `since`, stored, linked and audited."""
    placed: list[Placed] = []
    for member, share in sorted(shares.items()):
        info = offer["members"][member]
        site = sites.get(info["site_id"])
        if site is None or share < MIN_SHARE_KW:
            continue
        node = info["node"]
        as_target = grid.holds_all_evses(site, node)
        for a, b, kw in member_steps(offer, member, share, d.direction, since):
            if b <= a:
                continue
            kind, value = "target", kw
            if not as_target:  # a node under the root: its EV load plus its non-EV load
                n = site.node(node)
                value = max(0.0, kw) + float(sample(n.load_kw, [a], [b], "max", 0.0)[0])
                kind = "limit"
            event = await store.grid.add_event(
                site.id, node, kind, round(value, 3), a, b,
                f"vpp:{d.portfolio_id}:{d.id}", actor, now, conn)
            await store.vpp.link_event(d.id, member, event.id, conn)
            await store.audit.append(key, actor, "dispatch.created",
                                     audited(d.portfolio_id, d.id, event), now, conn)
            placed.append(Placed(member, event))
    return placed


def published(events: EventBus, placed: list[Placed] | list[GridEvent], change: str,
              now: datetime) -> None:
    """Each site re-plans at once (as for a grid event made through the API)."""
    for p in placed:
        e = p.event if isinstance(p, Placed) else p
        events.publish(GridEventChanged(e.site_id, e.id, e.node, e.kind, e.kw, e.start,
                                        e.end, e.status(now), change, now))


async def accept(store: Store, key: Ed25519PrivateKey, events: EventBus,
                 sites: Mapping[str, Site], inv: StoredInvitation, quantity_kw: float,
                 actor: str, now: datetime) -> tuple[StoredDispatch, list[Placed]] | None:
    """The offer accepted at `quantity_kw`: the dispatch, its shares (in proportion to what
    each member holds at the programme's confidence) and its grid events, audited in one
    transaction. None when the invitation was accepted already."""
    offer = inv.offer
    caps = {m: float(info["capacity_kw"]) for m, info in offer["members"].items()}
    shares = {m: round(v, 3) for m, v in split(quantity_kw, caps).items()}
    async with store.pool.acquire() as conn, conn.transaction():
        d = await store.vpp.add_dispatch(inv, quantity_kw, shares, actor, now, conn)
        if d is None:
            return None
        await store.audit.append(key, actor, "offer.accepted", {
            "portfolio": inv.portfolio_id, "invitation": inv.id, "dispatch": d.id,
            "programme": inv.programme, "direction": inv.direction,
            "start": inv.start.isoformat(), "end": inv.end.isoformat(),
            "price_per_kwh": inv.price_per_kwh, "proposed_kw": offer["quantity_kw"],
            "committed_kw": quantity_kw, "shares": shares, "reference": inv.reference},
            now, conn)
        placed = await place(store, key, sites, d, offer, shares, max(now, inv.start), actor,
                             now, conn)
    published(events, placed, "created", now)
    return d, placed


async def cancel_events(store: Store, key: Ed25519PrivateKey, d: StoredDispatch,
                        since: datetime, actor: str, now: datetime,
                        conn: asyncpg.Connection) -> list[GridEvent]:
    """The dispatch's grid events ended at `since` (those not yet started: cancelled),
    each audited, in the caller's transaction."""
    cancelled = []
    for _, event_id in await store.vpp.event_ids(d.id):
        site_id = await conn.fetchval("SELECT site_id FROM grid_events WHERE id = $1",
                                      event_id)
        gone = await store.grid.cancel(site_id, event_id, since, conn)
        if gone is not None:
            cancelled.append(gone)
            await store.audit.append(key, actor, "dispatch.cancelled",
                                     audited(d.portfolio_id, d.id, gone), now, conn)
    return cancelled


async def withdraw(store: Store, key: Ed25519PrivateKey, events: EventBus, d: StoredDispatch,
                   actor: str, now: datetime) -> int:
    """The dispatch called off (the grid cancelled its event): its grid events end now."""
    async with store.pool.acquire() as conn, conn.transaction():
        cancelled = await cancel_events(store, key, d, now, actor, now, conn)
    published(events, cancelled, "cancelled", now)
    return len(cancelled)


# --------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class MemberMinute:
    share_kw: float
    baseline_kw: float
    metered_kw: float


@dataclass(frozen=True)
class Minute:
    at: datetime
    point: TrackingPoint
    members: dict[str, MemberMinute]


def shares_at(d: StoredDispatch, resplits: list[dict[str, Any]], t: datetime
              ) -> dict[str, float]:
    shares = d.first_shares
    for r in resplits:
        if r["at"] <= t:
            shares = r["after"]
    return shares


async def tracking(store: Store, sites: Mapping[str, Site], inv: StoredInvitation,
                   d: StoredDispatch, now: datetime,
                   since: datetime | None = None) -> list[Minute]:
    """Minute by minute from the window's start (or the minute of it at or before `since`)
    to now (or its end): the commitment, the baseline and the metered EV load of the
    portfolio and of each member. Computed from stored meter values each time, so it is
    reproducible."""
    end = min(d.end, now)
    times: list[datetime] = []
    t = d.start
    if since is not None and since > d.start:
        t += ((since - d.start) // STEP) * STEP
    while t < end:
        times.append(t)
        t += STEP
    if not times:
        return []
    offer = inv.offer
    spans = intervals(offer)
    evses: dict[str, list[tuple[str, int]]] = {}
    for member, info in offer["members"].items():
        site = sites.get(info["site_id"])
        evses[member] = grid.evses_under(site, info["node"]) if site else []
    stations = sorted({s for e in evses.values() for s, _ in e})
    samples = await store.grid.power_samples(stations, times[0] - grid.MAX_HOLD, end)
    metered = {m: grid.ev_load(samples, e, times) for m, e in evses.items()}
    resplits = await store.vpp.resplits(d.id)
    out = []
    for k, t in enumerate(times):
        i = next((j for j, (a, b) in enumerate(spans) if a <= t < b), len(spans) - 1)
        shares = shares_at(d, resplits, t)
        members = {m: MemberMinute(float(shares.get(m, 0.0)),
                                   float(info["baseline_kw"][i]), metered[m][k])
                   for m, info in offer["members"].items()}
        out.append(Minute(t, TrackingPoint(
            d.committed_kw, sum(x.baseline_kw for x in members.values()),
            sum(x.metered_kw for x in members.values())), members))
    return out


def worst_window(minutes: list[Minute], direction: str, width: int = 5) -> float:
    """The largest mean shortfall over any `width` consecutive minutes (kW)."""
    errors = [m.point.error_kw(direction) for m in minutes]
    if len(errors) < width:
        return max(0.0, sum(errors) / len(errors)) if errors else 0.0
    return max(0.0, max(sum(errors[i:i + width]) / width
                        for i in range(len(errors) - width + 1)))


class Tracker:
    """Follows every running dispatch each `track_interval_s`: exports the tracking error
    and re-splits a dispatch whose member has been short for `resplit_after_minutes`.

    In a cluster every planning process has one, and `lease` (a PostgreSQL lock, as a
    site's) lets one of them track at a time; the others take over when its session ends.
    A re-split is also row-locked, so two trackers could never re-split one dispatch."""

    def __init__(self, store: Store, key: Ed25519PrivateKey, sites: Mapping[str, Site],
                 events: EventBus, clock: Clock, config: VppConfig,
                 lease: Leases | None = None) -> None:
        self.store, self.key, self.sites = store, key, sites
        self.events, self.clock, self.config = events, clock, config
        self.lease = lease
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="vpp-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.lease is not None:
            await self.lease.close()

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.config.track_interval_s)
            try:
                if self.lease is not None and not await self.lease.take(TRACKER_LOCK):
                    continue  # another process tracks
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("vpp.track_failed")

    async def tick(self) -> list[int]:
        """One pass over the running dispatches; the ids of those re-split."""
        now = self.clock.now()
        done = []
        for d in await self.store.vpp.dispatches(running_at=now, limit=1000):
            inv = await self.store.vpp.invitation(d.portfolio_id, d.invitation_id)
            if inv is None:
                continue
            back = timedelta(minutes=self.config.resplit_after_minutes + 1)
            minutes = await tracking(self.store, self.sites, inv, d, now, since=now - back)
            if not minutes:
                continue
            last = minutes[-1].point
            metrics.vpp_tracking_error.labels(d.portfolio_id).set(
                round(last.error_kw(d.direction), 3))
            metrics.vpp_tracking_abs_error.labels(d.portfolio_id).observe(
                abs(last.error_kw(d.direction)))
            if await self._maybe_resplit(d, inv, minutes, now):
                done.append(d.id)
        return done

    async def _maybe_resplit(self, d: StoredDispatch, inv: StoredInvitation,
                             minutes: list[Minute], now: datetime) -> bool:
        cfg = self.config
        n = cfg.resplit_after_minutes
        settled = d.start + timedelta(minutes=cfg.grace_minutes)
        done = await self.store.vpp.resplits(d.id)
        if done:  # judged again only on minutes under the last re-split's shares
            settled = max(settled, done[-1]["at"])
        recent = [m for m in minutes if m.at >= settled]
        if len(recent) < n:
            return False
        recent = recent[-n:]
        sign = 1.0 if d.direction == "down" else -1.0
        caps = {m: float(info["capacity_kw"]) for m, info in inv.offer["members"].items()}
        shares = recent[-1].members
        # short in every one of the last n minutes, not on one noisy sample
        short_each = [set(short_sites([SiteDelivery(
            m, x.share_kw, sign * (x.baseline_kw - x.metered_kw), caps[m])
            for m, x in minute.members.items()])) for minute in recent]
        short = set.intersection(*short_each)
        if not short:
            return False
        mean = {m: sum(sign * (minute.members[m].baseline_kw - minute.members[m].metered_kw)
                       for minute in recent) / n for m in shares}
        deliveries = [SiteDelivery(m, x.share_kw, mean[m] if m in short else x.share_kw,
                                   caps[m]) for m, x in shares.items()]
        after = {m: round(v, 3) for m, v in resplit(d.committed_kw, deliveries).items()}
        before = {m: x.share_kw for m, x in shares.items()}
        if all(abs(after[m] - before[m]) < MERGE_KW for m in before):
            return False
        since = now  # the old events end and the new ones start together
        async with self.store.pool.acquire() as conn, conn.transaction():
            locked = await self.store.vpp.lock(d.id, conn)
            if locked is None or locked.shares != d.shares:
                return False  # another process re-split it meanwhile
            cancelled = await cancel_events(self.store, self.key, d, since, "vpp-tracker", now,
                                            conn)
            await self.store.vpp.resplit(d.id, since, sorted(short), before, after, conn)
            await self.store.audit.append(self.key, "vpp-tracker", "dispatch.resplit", {
                "portfolio": d.portfolio_id, "dispatch": d.id, "at": since.isoformat(),
                "short": sorted(short), "before": before, "after": after}, now, conn)
            placed = await place(self.store, self.key, self.sites, d, inv.offer, after, since,
                                 "vpp-tracker", now, conn)
        metrics.vpp_resplits.labels(d.portfolio_id).inc()
        log.info("vpp.resplit", portfolio=d.portfolio_id, dispatch=d.id, short=sorted(short),
                 after=after)
        published(self.events, cancelled, "cancelled", now)
        published(self.events, placed, "created", now)
        return True
