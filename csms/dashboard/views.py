"""What the dashboard's pages show, read from the store and the configured sites.

Plain dataclasses for the templates: the pages read the CSMS's parts directly (one
process), while the browser's live parts use the JSON API.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

from csms.api.auth import Caller, Permission
from csms.api.deps import Parts
from csms.api.sites import may_see
from csms.dashboard import holds
from csms.dashboard.holds import Hold
from csms.dashboard.i18n import _
from csms.scheduling.grid_inputs import with_grid
from csms.store.devices import ConnectorStatus
from csms.store.event_log import EventLogRepo, LoggedEvent
from csms.store.transactions import Transaction
from csms.v2g_ledger import v2g_facts
from smart_charging import prices_from_dict
from smart_charging.model import Site

# An EVSE's connectors, worst first: the one status shown for the EVSE.
STATUS_ORDER = ("Faulted", "Unavailable", "Occupied", "Reserved", "Available")
# Words the pages show that come from OCPP or the store, marked here for the catalogue.
WORDS = (
    _("Faulted"), _("Unavailable"), _("Occupied"), _("Reserved"), _("Available"),
    _("online"), _("offline"), _("Accepted"), _("Pending"), _("Rejected"),
    _("Charging"), _("EVConnected"), _("SuspendedEV"), _("SuspendedEVSE"), _("Idle"),
    _("limit"), _("target"), _("active"), _("scheduled"), _("ended"), _("cancelled"),
    _("optimal"), _("fallback"), _("empty"), _("solved"), _("solved inaccurate"),
    _("DeAuthorized"), _("EmergencyStop"), _("EnergyLimitReached"), _("EVDisconnected"),
    _("GroundFault"), _("ImmediateReset"), _("Local"), _("LocalOutOfCredit"),
    _("MasterPass"), _("Other"), _("OvercurrentFault"), _("PowerLoss"), _("PowerQuality"),
    _("Reboot"), _("Remote"), _("SOCLimitReached"), _("StoppedByEV"), _("TimeLimitReached"),
    _("Timeout"), _("Unknown or revoked API token."),
)
PAGE_SIZE = 50
T = TypeVar("T")


@dataclass(frozen=True)
class EvseState:
    id: int
    status: str


@dataclass(frozen=True)
class StationRow:
    id: str
    online: bool
    last_seen: datetime | None
    evses: list[EvseState]
    site: str | None


@dataclass(frozen=True)
class SessionRow:
    station_id: str
    evse_id: int | None
    transaction_id: str
    started_at: datetime | None
    charging_state: str | None
    energy_kwh: float
    wanted_kwh: float | None
    departure: datetime | None
    charge_now: bool
    v2g_mode: str | None = None  # the V2G mode in force when opted in (not charge only)
    discharged_kwh: float = 0.0

    @property
    def percent(self) -> int | None:
        if not self.wanted_kwh:
            return None
        return min(100, round(100 * self.energy_kwh / self.wanted_kwh))


@dataclass(frozen=True)
class ErrorRow:
    at: datetime
    source: str
    text: str  # a catalogue message with %(name)s fields, filled from `args` once translated
    args: dict[str, Any] = field(default_factory=dict)
    station_id: str | None = None
    kind: str | None = None  # the event log's kind, where it came from there
    site_id: str | None = None  # a site's row (no station): shown as "site <id>", translated


@dataclass(frozen=True)
class StationCounts:
    total: int
    online: int
    offline: int
    by_status: dict[str, int]  # EVSEs by their shown status, worst first


@dataclass(frozen=True)
class Page:
    """One page of a list, and the links to its neighbours (the filter kept)."""

    number: int
    size: int
    total: int
    query: dict[str, str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return min(self.total, (self.number - 1) * self.size + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.number * self.size)

    def link(self, number: int) -> str:
        return urlencode({**{k: v for k, v in self.query.items() if v}, "page": number})


@dataclass(frozen=True)
class SiteCard:
    id: str
    root: str
    limit_kw: float | None
    evses: int
    planned_at: datetime | None
    plan_status: str | None
    sessions: int


@dataclass(frozen=True)
class GridEventRow:
    id: int
    node: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    status: str
    created_by: str


@dataclass(frozen=True)
class EvseSchedule:
    evse_id: str
    station_id: str
    ocpp_evse_id: int
    node: str
    transaction_id: str | None
    needed_kwh: float | None
    planned_kwh: float | None
    profile: str | None
    now_kw: float | None
    changes: list[tuple[datetime, float]]  # (from, kW), the first few
    svg_path: str  # the setpoints over the horizon, for a small step chart
    max_kw: float
    holds: list[Hold] = field(default_factory=list)  # why the plan holds the car, if it does

    @property
    def short(self) -> bool:
        """The plan leaves this car more than 0.1 kWh short of what it needs."""
        return (self.needed_kwh is not None
                and (self.planned_kwh or 0.0) < self.needed_kwh - 0.1)


def display_zone(sites: dict[str, Site]) -> timezone:
    """Times are shown in the first site's local time (UTC if there is none)."""
    for _site_id, site in sorted(sites.items()):
        return timezone(site.utc_offset)
    return UTC


def visible_sites(parts: Parts, who: Caller) -> list[Site]:
    if not who.may(Permission.SITES):
        return []
    return [s for sid, s in sorted(parts.sites.items()) if may_see(who, sid)]


def site_of_station(sites: dict[str, Site]) -> dict[str, str]:
    return {e.station_id: sid for sid, s in sites.items() for e in s.evses}


def evse_states(connectors: list[ConnectorStatus]) -> list[EvseState]:
    by_evse: dict[int, list[str]] = {}
    for c in connectors:
        by_evse.setdefault(c.evse_id, []).append(c.status)

    def rank(status: str) -> int:
        return STATUS_ORDER.index(status) if status in STATUS_ORDER else 0

    return [EvseState(e, min(statuses, key=rank)) for e, statuses in sorted(by_evse.items())]


async def stations(parts: Parts) -> list[StationRow]:
    connectors = await parts.store.devices.all_connectors()
    where = site_of_station(dict(parts.sites))
    return [StationRow(s.id, parts.connections.is_connected(s.id), s.last_seen,
                       evse_states(connectors.get(s.id, [])), where.get(s.id))
            for s in await parts.store.stations.list()]


def station_counts(rows: list[StationRow]) -> StationCounts:
    online = sum(r.online for r in rows)
    statuses = Counter(e.status for r in rows for e in r.evses)
    order = {s: i for i, s in enumerate(STATUS_ORDER)}
    return StationCounts(len(rows), online, len(rows) - online, dict(
        sorted(statuses.items(), key=lambda kv: order.get(kv[0], -1))))


def filter_stations(rows: list[StationRow], q: str = "", state: str = "", status: str = "",
                    site: str = "") -> list[StationRow]:
    """Stations whose id contains `q` (any case), online/offline, with an EVSE in
    `status`, on `site`; empty criteria match all."""
    needle = q.strip().lower()
    return [r for r in rows
            if (not needle or needle in r.id.lower())
            and (not state or r.online == (state == "online"))
            and (not status or any(e.status == status for e in r.evses))
            and (not site or r.site == site)]


def page_of(rows: list[T], number: int, query: dict[str, str],
               size: int = PAGE_SIZE) -> tuple[list[T], Page]:
    page = Page(1, size, len(rows), query)
    page = Page(min(max(1, number), page.pages), size, len(rows), query)
    return rows[(page.number - 1) * size:page.number * size], page


async def sessions(parts: Parts, limit: int = 200) -> list[SessionRow]:
    found = await parts.store.transactions.list(None, True, limit)
    facts = await v2g_facts(parts.store, found)

    def v2g(t: Transaction) -> tuple[str | None, float]:
        f = facts[(t.station_id, t.transaction_id)]
        return (f.terms.mode if f.terms.may_discharge else None), f.account.discharged_kwh

    return [SessionRow(
        t.station_id, t.evse_id, t.transaction_id, t.started_at, t.charging_state,
        (t.energy_wh or 0.0) / 1000.0,
        None if t.energy_wanted_wh is None else t.energy_wanted_wh / 1000.0,
        t.departure_time, t.charge_now, *v2g(t),
    ) for t in sorted(found, key=lambda t: (t.station_id, t.evse_id or 0))]


async def errors(parts: Parts, who: Caller, zone: timezone,
                 limit: int = 15) -> list[ErrorRow]:
    """The newest errors of the last day: from the event log for those who may see
    stations (each names its station, EVSE and reason); for a grid company, its sites'
    troubled plans only. The overview asks every few seconds: no count, a short window."""
    if who.may(Permission.READ):
        now = parts.clock.now()
        found, _total = await EventLogRepo(parts.store.pool).list(
            now - timedelta(days=1), now + timedelta(minutes=1), kinds=list(ERROR_KINDS),
            limit=limit, count=False)
        return [event_row(e, zone) for e in found]
    out: list[ErrorRow] = []
    for site in visible_sites(parts, who):
        for p in await parts.store.plans.troubled(site.id, limit):
            source = f"site {site.id}"
            if p.fallback_used:
                out.append(ErrorRow(p.planned_at, source, _("fallback plan (%(reason)s)"),
                                    {"reason": p.fallback_reason or "-"}, site_id=site.id))
            if p.profiles_rejected:
                out.append(ErrorRow(p.planned_at, source, _("%(n)s profile(s) rejected"),
                                    {"n": p.profiles_rejected}, site_id=site.id))
            if p.profiles_failed:
                out.append(ErrorRow(p.planned_at, source, _("%(n)s profile(s) not delivered"),
                                    {"n": p.profiles_failed}, site_id=site.id))
    return sorted(out, key=lambda e: e.at, reverse=True)[:limit]


# V2G modes as the pages name them
V2G_MODES = {"backup_only": _("V2G: backup only"), "export_allowed": _("V2G: export allowed")}


# The event log's kinds as the pages name them; those that are errors (the overview's).
KIND_NAMES = {
    "profile": _("profile rejected"), "call": _("call failed"),
    "non-compliance": _("non-compliance"), "security": _("security event"),
    "alert": _("alert"), "firmware": _("firmware failed"), "fault": _("fault"),
    "boot": _("boot"), "disconnect": _("disconnect"), "plan": _("fallback plan"),
}
ERROR_KINDS = ("profile", "call", "non-compliance", "security", "alert", "firmware", "fault",
               "plan")


def event_row(e: LoggedEvent, zone: timezone) -> ErrorRow:
    """A logged event as a row: where (station / EVSE, or site) and what, in words."""
    d = e.detail
    if e.station_id is None:
        source = f"site {e.site_id}" if e.site_id else "CSMS"
    elif e.evse_id is not None:
        source = f"{e.station_id} / EVSE {e.evse_id}"
    else:
        source = e.station_id
    args: dict[str, Any] = {"reason": e.reason, "tx": d.get("transaction_id") or "-"}
    if e.kind == "profile" and d.get("outcome") == "unsupported":
        text = _("profile not sent: the station supports no charging rate unit we can use "
                 "(transaction %(tx)s)")
    elif e.kind == "profile":
        text = _("charging profile rejected by the station: %(reason)s (transaction %(tx)s)")
    elif e.kind == "call":
        text = _("charging profile not delivered: no answer, a CALLERROR or offline "
                 "(transaction %(tx)s)")
    elif e.kind == "non-compliance":
        since = datetime.fromisoformat(d["from"]).astimezone(zone).strftime("%H:%M:%S")
        text = _("drew %(kw)s kW against a limit of %(limit)s kW (%(n)s samples since "
                 "%(since)s)")
        args |= {"kw": f"{d['power_w'] / 1000:.1f}", "limit": f"{d['limit_w'] / 1000:.1f}",
                 "n": d["samples"], "since": since}
    elif e.kind == "security":
        text = _("security event %(reason)s%(info)s")
        args["info"] = f": {d['tech_info']}" if d.get("tech_info") else ""
    elif e.kind == "alert":
        text = _("%(reason)s = %(value)s (%(trigger)s)%(info)s")
        info = " ".join(str(x) for x in (d.get("tech_code"), d.get("tech_info")) if x)
        args |= {"value": d.get("value"), "trigger": d.get("trigger"),
                 "info": f": {info}" if info else ""}
    elif e.kind == "firmware":
        text = _("firmware update failed: %(reason)s%(info)s")
        args["info"] = f" ({d['reply_reason']})" if d.get("reply_reason") else ""
    elif e.kind == "fault":
        text = _("EVSE %(evse)s connector %(connector)s Faulted")
        args |= {"evse": e.evse_id, "connector": d.get("connector")}
    elif e.kind == "boot":
        text = _("booted (%(reason)s), %(status)s")
        args["status"] = d.get("status") or "-"
    elif e.kind == "disconnect":
        text = _("disconnected")
    else:
        text = _("fallback plan (%(reason)s)")
    return ErrorRow(e.at, source, text, args, e.station_id, e.kind,
                    None if e.station_id else e.site_id)


async def site_cards(parts: Parts, who: Caller) -> list[SiteCard]:
    cards = []
    for site in visible_sites(parts, who):
        plan = await parts.store.plans.latest(site.id)
        cards.append(SiteCard(
            site.id, site.root.id, site.root.limit_kw, len(site.evses),
            plan.planned_at if plan else None, plan.status if plan else None,
            plan.sessions if plan else 0))
    return cards


async def schedules(parts: Parts, site: Site) -> tuple[datetime | None, list[EvseSchedule]]:
    """Each EVSE's setpoints in the newest plan (None where it has no session), and why
    the plan holds its car back where it does."""
    plan = await parts.store.plans.latest(site.id)
    if plan is None:
        return None, [_schedule(site, e.id, None, None, None) for e in site.evses]
    starts = [datetime.fromisoformat(t) for t in plan.inputs.get("slot_starts", [])]
    if not starts:
        return plan.planned_at, []
    end = starts[-1] + (starts[-1] - starts[-2] if len(starts) > 1 else timedelta(minutes=15))
    now = parts.clock.now()
    why = await hold_reasons(parts, site, plan.inputs, plan.schedule, now)
    return plan.planned_at, [
        _schedule(site, e.id, plan.schedule.get(e.id), (starts[0], end), now, why.get(e.id))
        for e in site.evses
    ]


async def hold_reasons(parts: Parts, site: Site, inputs: dict[str, Any],
                       schedule: dict[str, Any], now: datetime) -> dict[str, list[Hold]]:
    """holds.explain with what the plan was made from: the node limits and grid events of
    the store, and the site's tariff (the one set through the API, else its file's)."""
    starts, ends = holds.slots(inputs)
    if not starts or not schedule:
        return {}
    limits, events, stored = await asyncio.gather(
        parts.store.grid.node_limits(site.id),
        parts.store.grid.events(site.id, now, since=starts[0], limit=200),
        parts.store.grid.tariff(site.id))
    tariff = stored or parts.tariffs.tariffs.get(parts.tariffs.by_site.get(site.id) or "")
    prices = prices_from_dict(tariff) if tariff else None
    live = [e for e in events if e.effective_end > e.start]
    return holds.explain(
        with_grid(site, limits, live), inputs, schedule,
        None if prices is None else prices.energy_price(starts, ends), live, now,
        display_zone(dict(parts.sites)), prices.currency if prices else "")


def _schedule(site: Site, evse_id: str, entry: dict[str, Any] | None,
              span: tuple[datetime, datetime] | None, now: datetime | None,
              held: list[Hold] | None = None) -> EvseSchedule:
    evse = site.evse(evse_id)
    base = EvseSchedule(evse.id, evse.station_id, evse.ocpp_evse_id, evse.node, None, None,
                        None, None, None, [], "", evse.max_kw)
    if entry is None or span is None or now is None:
        return base
    t0, t1 = span
    points = [(t0 + timedelta(seconds=off), w / 1000.0) for off, _a, w in entry["setpoints"]]
    now_kw = next((kw for t, kw in reversed(points) if t <= now), None)
    upcoming = [(t, kw) for t, kw in points if t > now]
    return EvseSchedule(
        evse.id, evse.station_id, evse.ocpp_evse_id, evse.node, entry.get("transaction_id"),
        entry.get("energy_needed_kwh"), entry.get("energy_planned_kwh"), entry.get("profile"),
        now_kw, upcoming[:4], step_path(points, t0, t1, evse.max_kw), evse.max_kw, held or [])


def step_path(points: list[tuple[datetime, float]], t0: datetime, t1: datetime,
              top_kw: float, width: int = 240, height: int = 40) -> str:
    """An SVG path of a step function over [t0, t1], scaled to width x height."""
    if not points or t1 <= t0 or top_kw <= 0:
        return ""
    span = (t1 - t0).total_seconds()

    def x(t: datetime) -> float:
        return round(width * min(max((t - t0).total_seconds() / span, 0.0), 1.0), 1)

    def y(kw: float) -> float:
        return round(height * (1 - min(max(kw / top_kw, 0.0), 1.0)), 1)

    parts = [f"M{x(points[0][0])},{y(points[0][1])}"]
    for t_next, kw_next in points[1:]:
        parts.append(f"H{x(t_next)}V{y(kw_next)}")
    parts.append(f"H{width}")
    return "".join(parts)


async def grid_events(parts: Parts, site: Site, hours: float = 12.0) -> list[GridEventRow]:
    """The site's limit and target events still running, or ended in the last `hours`."""
    now = parts.clock.now()
    found = await parts.store.grid.events(site.id, now, since=now - timedelta(hours=hours),
                                          limit=50)
    return [GridEventRow(e.id, e.node, e.kind, e.kw, e.start, e.effective_end, e.status(now),
                         e.created_by) for e in found]
