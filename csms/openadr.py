"""An OpenADR 2.0b VEN (issue 14): the aggregator's side of a utility's demand-response
server (VTN), built on `openleadr` (why: docs/decisions/0030-openadr-carbon-ledger.md).

With `[openadr] vtn_url` set, the CSMS registers `ven_name` with the VTN, polls it, and
turns each oadrDistributeEvent into grid events on the member sites of `portfolio`:

| VTN signal (name, type)               | what the portfolio does                    |
| ------------------------------------- | ------------------------------------------ |
| LOAD_DISPATCH, delta (kW, - = reduce) | an invitation, its offer accepted: a VPP dispatch |
| LOAD_DISPATCH, setpoint (kW)          | `target` grid events: the EV load follows it |
| LOAD_CONTROL, x-loadControlSetpoint   | `limit` grid events: the node carries at most it |

A delta is a change against the portfolio's baseline, so it is what an invitation asks:
it is answered under `[openadr] programme`, split by each site's flexibility, tracked,
re-split and settled as any dispatch (csms/dispatch.py).
A delta is answered with the offer the programme allows (what the portfolio holds for the
whole window at its confidence, up to the largest |delta|); none eligible: optOut. A price
comes from the event's ELECTRICITY_PRICE signal, if any. For a setpoint or a limit, the
portfolio's kW is divided among its sites by `split` (`split_by_capacity`, each site's EV
capacity).
Anything else (SIMPLE levels, deltas, prices, an ended event, a malformed interval) is
answered optOut, counted (`csms_openadr_events_total`, `csms_rejected_inputs_total`) and
logged. A modified event replaces its grid events; a cancelled one cancels them. Every
grid event is a `dispatch.created` in the audit log, every answer an `openadr.answered`.
Events are found again by their reference (`openadr:<event id>#<modification number>`),
so a restart that receives the same events does not dispatch them twice, and one that
receives a modification it had not seen still replaces them.

The VEN reports the portfolio's metered EV load (kW, from Power.Active.Import samples) per
interval as TELEMETRY_USAGE, when the VTN asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from csms import dispatch, grid, invitations, metrics
from csms.clock import Clock
from csms.config import OpenAdrConfig
from csms.events import EventBus, GridEventChanged
from csms.scheduling.leases import Leases
from csms.store import Store
from csms.store.grid import GridEvent
from csms.store.portfolios import Portfolio
from csms.store.vpp import StoredInvitation
from smart_charging.model import Site

log = structlog.get_logger()

OPT_IN, OPT_OUT = "optIn", "optOut"
MAX_INTERVALS = 288  # a day of 5-minute intervals
MAX_INTERVAL = timedelta(hours=24)
MAX_KW = 1e6
Kind = Literal["limit", "target", "delta"]
SIGNALS: dict[tuple[str, str], Kind] = {
    ("LOAD_DISPATCH", "delta"): "delta",
    ("LOAD_DISPATCH", "setpoint"): "target",
    ("LOAD_CONTROL", "x-loadControlSetpoint"): "limit",
}
TO_KW = {"none": 1e-3, "k": 1.0, "M": 1e3}  # a power item's SI scale, in W
MAX_PRICE = 1e4  # per kWh


@dataclass(frozen=True)
class MemberSite:
    """One member of the portfolio as the split sees it."""

    site_id: str
    node: str
    capacity_kw: float  # the EV capacity under the node: the sum of its EVSEs' maxima


Split = Callable[[float, Sequence[MemberSite]], list[float]]


def split_by_capacity(total_kw: float, members: Sequence[MemberSite]) -> list[float]:
    """The one place a portfolio's kW is divided among its sites: in proportion to each
    site's EV capacity, for now. The VPP's dispatch split (by forecast flexibility) takes
    its place by being passed to `Ven(split=...)`; it must return one kW per member."""
    total_cap = sum(m.capacity_kw for m in members)
    if total_cap <= 0:
        return [total_kw / len(members) for _ in members]
    return [total_kw * m.capacity_kw / total_cap for m in members]


def member_sites(portfolio: Portfolio, sites: Mapping[str, Site],
                 kind: Literal["limit", "target"]) -> list[MemberSite]:
    """The portfolio's members the CSMS plans, with their EV capacity. A target needs a
    node holding all of its site's EVSEs (the engine follows a target for the site)."""
    out = []
    for m in portfolio.members:
        site = sites.get(m.site_id)
        if site is None:
            continue
        node = m.node or site.root.id
        if kind == "target" and not grid.holds_all_evses(site, node):
            continue
        cap = sum(e.max_kw for e in site.evses if node in site.path_to_root(e.node))
        out.append(MemberSite(site.id, node, cap))
    return out


class Refused(ValueError):
    """An event the VEN answers optOut, with the reason counted."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Instruction:
    """What a VTN event asks of the portfolio: a kind, and kW per interval."""

    kind: Kind
    intervals: tuple[tuple[datetime, datetime, float], ...]


def instruction(event: Mapping[str, Any], now: datetime) -> Instruction:
    """The event's first supported signal, bounded; Refused when there is none."""
    signals = event.get("event_signals") or []
    for signal in signals:
        kind = SIGNALS.get((str(signal.get("signal_name")), str(signal.get("signal_type"))))
        if kind is None:
            continue
        scale = TO_KW.get(str((signal.get("measurement") or {}).get("scale") or "k"))
        if scale is None:
            raise Refused("unit", "a power scale other than none, k or M")
        raw = signal.get("intervals") or []
        if not 1 <= len(raw) <= MAX_INTERVALS:
            raise Refused("intervals", f"1 to {MAX_INTERVALS} intervals")
        out = []
        for i in raw:
            start, duration, value = i.get("dtstart"), i.get("duration"), i.get("signal_payload")
            if not isinstance(start, datetime) or start.tzinfo is None or \
                    not isinstance(duration, timedelta):
                raise Refused("intervals", "an interval without a start or duration")
            if not timedelta(minutes=1) <= duration <= MAX_INTERVAL:
                raise Refused("intervals", "an interval shorter than a minute or over 24 h")
            low = -MAX_KW if kind == "delta" else 0.0
            if not isinstance(value, int | float) or not math.isfinite(value) or \
                    not low <= value * scale <= MAX_KW:
                raise Refused("value", f"a payload out of {low:.0f} to {MAX_KW:.0f} kW: "
                              f"{value!r}")
            out.append((start, start + duration, float(value) * scale))
        if kind == "delta" and not (all(v < 0 for *_, v in out) or all(v > 0 for *_, v in out)):
            raise Refused("value", "a delta that is zero or changes sign")
        out.sort()
        if any(b[0] < a[1] for a, b in itertools.pairwise(out)):
            raise Refused("intervals", "overlapping intervals")
        if out[-1][1] <= now:
            raise Refused("ended", "the event has ended")
        return Instruction(kind, tuple(out))
    names = sorted({f"{s.get('signal_name')}/{s.get('signal_type')}" for s in signals})
    raise Refused("signal", f"no supported signal in {', '.join(names) or 'the event'}")


def event_price(event: Mapping[str, Any]) -> float:
    """The highest ELECTRICITY_PRICE payload of the event (per kWh), 0 without one."""
    best = 0.0
    for signal in event.get("event_signals") or []:
        if (signal.get("signal_name"), signal.get("signal_type")) != ("ELECTRICITY_PRICE",
                                                                      "price"):
            continue
        for i in (signal.get("intervals") or [])[:MAX_INTERVALS]:
            v = i.get("signal_payload")
            if isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= MAX_PRICE:
                best = max(best, float(v))
    return best


class Ven:
    """The VEN inside the CSMS: one openleadr client, restarted while the VTN is away."""

    def __init__(self, config: OpenAdrConfig, store: Store, clock: Clock, events: EventBus,
                 sites: Mapping[str, Site], audit_key: Ed25519PrivateKey,
                 split: Split = split_by_capacity,
                 answer: invitations.Context | None = None,
                 lease: Leases | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.events = events
        self.sites = sites
        self.audit_key = audit_key
        self.split = split
        self.answer = answer  # how deltas become invitations; None: refused
        # in a cluster, the lock that makes this the one VEN: every planning process
        # waits for it, the holder registers and answers; None: alone, no lock
        self.lease = lease
        self.actor = f"openadr:{config.ven_name}"
        self.registered = asyncio.Event()
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one event at a time: no double dispatch

    async def start(self) -> None:
        """Register and poll in the background: a VTN that is away does not stop the CSMS."""
        self._task = asyncio.create_task(self._run(), name="openadr-ven")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()
        if self.lease is not None:
            await self.lease.close()

    async def _run(self) -> None:
        while True:
            if self.lease is not None:
                await self._poll(self._take, True)
                log.info("openadr.lease_taken", ven=self.config.ven_name)
            await self._register()
            if self.lease is None:
                return  # openleadr polls and reports on its own scheduler from here
            await self._poll(self.lease.check, False)  # the one VEN until the lock goes
            log.warning("openadr.lease_lost", ven=self.config.ven_name)
            self.registered.clear()
            await self._close()

    async def _poll(self, ask: Callable[[], Awaitable[bool]], until: bool) -> None:
        """Ask every `retry_s` until the answer is `until` (a lock is polled: PostgreSQL
        does not tell a waiting session when an advisory lock comes free)."""
        while True:
            if await ask() == until:
                return
            await asyncio.sleep(self.config.retry_s)

    async def _take(self) -> bool:
        assert self.lease is not None
        return await self.lease.take(f"openadr:{self.config.ven_name}")

    async def _register(self) -> None:
        while True:
            self._client = self._new_client()
            try:
                await self._client.run()
            except Exception as exc:  # openleadr logs most failures itself and returns
                log.warning("openadr.run_failed", error=f"{type(exc).__name__}: {exc}")
            if self._client.registration_id:
                self.registered.set()
                log.info("openadr.registered", ven_id=self._client.ven_id,
                         vtn=self.config.vtn_url)
                return
            log.warning("openadr.not_registered", vtn=self.config.vtn_url,
                        retry_s=self.config.retry_s)
            await self._close()
            await asyncio.sleep(self.config.retry_s)

    def _new_client(self) -> Any:
        from openleadr import OpenADRClient  # imported where a VEN is configured

        c = self.config
        client = OpenADRClient(
            ven_name=c.ven_name, vtn_url=c.vtn_url, ven_id=c.ven_id or None,
            cert=c.cert or None, key=c.key or None, ca_file=c.ca_file or None,
            vtn_fingerprint=c.vtn_fingerprint or None, show_fingerprint=False,
            disable_signature=not c.cert)
        client.add_handler("on_event", self.on_event)
        client.add_handler("on_update_event", self.on_update_event)
        interval = timedelta(seconds=c.report_interval_s)
        client.add_report(self.metered_load, resource_id=c.portfolio, measurement="RealPower",
                          unit="W", scale="k", data_collection_mode="full",
                          sampling_rate=interval, report_duration=interval,
                          report_specifier_id=f"csms-{c.portfolio}-load", r_id="ev-load")
        return client

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if client.scheduler.running:
            client.scheduler.shutdown(wait=False)
        if client.report_queue_task:
            client.report_queue_task.cancel()
        if client.client_session is not None:
            await client.client_session.close()

    # ------------------------------------------------------------------ events

    async def on_event(self, event: dict[str, Any]) -> str:
        return await self._answer(event)

    async def on_update_event(self, event: dict[str, Any]) -> str:
        """A modified event replaces its grid events; a cancelled one cancels them."""
        return await self._answer(event)

    async def _answer(self, event: dict[str, Any]) -> str:
        descriptor = event.get("event_descriptor") or {}
        event_id = str(descriptor.get("event_id", ""))[:100]
        async with self._lock:
            try:
                if descriptor.get("event_status") == "cancelled":
                    n = await self._cancel(event_id)
                    opt, reason = OPT_IN, f"cancelled {n}"
                else:
                    opt, reason = await self._dispatch(event_id, event)
            except Refused as exc:
                metrics.rejected_inputs.labels("openadr_event", exc.reason).inc()
                log.warning("openadr.event_refused", vtn_event=event_id, reason=exc.reason,
                            detail=str(exc))
                opt, reason = OPT_OUT, exc.reason
            except Exception:
                log.exception("openadr.event_failed", vtn_event=event_id)
                opt, reason = OPT_OUT, "error"
            metrics.openadr_events.labels(opt, reason.split(" ")[0]).inc()
            await self.store.audit.append(self.audit_key, self.actor, "openadr.answered", {
                "portfolio": self.config.portfolio, "vtn_event": event_id,
                "modification": descriptor.get("modification_number"), "opt": opt,
                "reason": reason}, self.clock.now())
            log.info("openadr.answered", vtn_event=event_id, opt=opt, reason=reason)
            return opt

    def _reference(self, event_id: str, modification: object = "") -> str:
        return f"openadr:{event_id}#{modification}"

    async def _portfolio(self) -> Portfolio:
        found = await self.store.portfolios.get(self.config.portfolio)
        if found is None:
            raise Refused("portfolio", f"no portfolio {self.config.portfolio}")
        return found

    async def _ours(self, event_id: str) -> list[GridEvent]:
        """The grid events dispatched for a VTN event, not cancelled, on the portfolio."""
        now = self.clock.now()
        portfolio = await self._portfolio()
        out: list[GridEvent] = []
        for site_id in sorted({m.site_id for m in portfolio.members}):
            out += [e for e in await self.store.grid.events(site_id, now, since=now)
                    if (e.reference or "").startswith(self._reference(event_id))
                    and e.cancelled_at is None]
        return out

    async def _dispatch(self, event_id: str, event: dict[str, Any]) -> tuple[str, str]:
        """Grid events for the event's modification, replacing those of an earlier one."""
        now = self.clock.now()
        order = instruction(event, now)
        reference = self._reference(
            event_id, (event.get("event_descriptor") or {}).get("modification_number", 0))
        if order.kind == "delta":
            return await self._invited(event_id, reference, order, event_price(event), now)
        existing = await self._ours(event_id)
        if existing and all(e.reference == reference for e in existing):
            return OPT_IN, "already dispatched"
        portfolio = await self._portfolio()
        members = member_sites(portfolio, self.sites, order.kind)  # type: ignore[arg-type]
        if not members:
            raise Refused("members", f"no member of {portfolio.id} can take a {order.kind}")
        if existing:
            await self._cancel(event_id)
        made: list[GridEvent] = []
        async with self.store.pool.acquire() as conn, conn.transaction():
            for start, end, kw in order.intervals:
                if end <= now:
                    continue
                for m, share in zip(members, self.split(kw, members), strict=True):
                    e = await self.store.grid.add_event(
                        m.site_id, m.node, order.kind, round(share, 3), start, end,
                        reference, self.actor, now, conn)
                    await self.store.audit.append(self.audit_key, self.actor,
                                                  "dispatch.created", grid.audited(e) | {
                                                      "portfolio": portfolio.id}, now, conn)
                    made.append(e)
        for e in made:
            self._published(e, "created")
        return OPT_IN, f"dispatched {len(made)}"

    async def _invited(self, event_id: str, reference: str, order: Instruction, price: float,
                       now: datetime) -> tuple[str, str]:
        """A delta as an invitation of the programme, its offer accepted: a dispatch."""
        if self.answer is None:
            raise Refused("programme", "deltas are not answered here")
        portfolio = await self._portfolio()
        earlier = await self._invitations(portfolio.id, event_id)
        if any(i.reference == reference and i.dispatch_id is not None for i in earlier):
            return OPT_IN, "already dispatched"
        await self._withdraw(portfolio.id, earlier)  # an earlier modification's dispatch
        start, end = max(order.intervals[0][0], now), order.intervals[-1][1]
        values = [v for *_, v in order.intervals]
        try:
            inv = await invitations.invite(
                self.answer, portfolio, self.config.programme,
                "down" if values[0] < 0 else "up", start, end, max(abs(v) for v in values),
                price, start, reference, self.actor, now)
        except invitations.InvalidInvitation as e:
            raise Refused("programme" if e.field == "programme" else "window", str(e)) from None
        except invitations.NoMembers as e:
            raise Refused("members", str(e)) from None
        if not inv.offer["eligible"]:
            raise Refused("offer", "; ".join(inv.offer["reasons"]))
        made = await dispatch.accept(self.store, self.audit_key, self.events, self.sites, inv,
                                     float(inv.offer["quantity_kw"]), self.actor, now)
        if made is None:
            return OPT_IN, "already dispatched"
        return OPT_IN, f"dispatched {made[0].id} at {inv.offer['quantity_kw']} kW"

    async def _invitations(self, portfolio_id: str, event_id: str) -> list[StoredInvitation]:
        prefix = self._reference(event_id)
        return [i for i in await self.store.vpp.invitations(portfolio_id, limit=100)
                if (i.reference or "").startswith(prefix)]

    async def _withdraw(self, portfolio_id: str, found: list[StoredInvitation]) -> int:
        n = 0
        for inv in found:
            d = None if inv.dispatch_id is None else await self.store.vpp.dispatch(
                portfolio_id, inv.dispatch_id)
            if d is not None:
                n += await dispatch.withdraw(self.store, self.audit_key, self.events, d,
                                             self.actor, self.clock.now())
        return n

    async def _cancel(self, event_id: str) -> int:
        now = self.clock.now()
        portfolio = await self.store.portfolios.get(self.config.portfolio)
        withdrawn = 0 if portfolio is None else await self._withdraw(
            portfolio.id, await self._invitations(portfolio.id, event_id))
        cancelled = []
        async with self.store.pool.acquire() as conn, conn.transaction():
            for e in await self._ours(event_id):
                done = await self.store.grid.cancel(e.site_id, e.id, now, conn)
                if done is not None:
                    await self.store.audit.append(self.audit_key, self.actor,
                                                  "dispatch.cancelled", grid.audited(done) | {
                                                      "portfolio": self.config.portfolio},
                                                  now, conn)
                    cancelled.append(done)
        for e in cancelled:
            self._published(e, "cancelled")
        return withdrawn + len(cancelled)

    def _published(self, e: GridEvent, change: str) -> None:
        now = self.clock.now()
        self.events.publish(GridEventChanged(e.site_id, e.id, e.node, e.kind, e.kw, e.start,
                                             e.end, e.status(now), change, now))

    # ------------------------------------------------------------------ reports

    async def metered_load(self, date_from: datetime, date_to: datetime,
                           sampling_interval: timedelta) -> list[tuple[datetime, float]]:
        """The portfolio's metered EV load (kW) per interval in [date_from, date_to): the
        mean of the load at six points of each interval."""
        metrics.openadr_reports.inc()
        step = sampling_interval if sampling_interval > timedelta(0) else \
            timedelta(seconds=self.config.report_interval_s)
        portfolio = await self.store.portfolios.get(self.config.portfolio)
        if portfolio is None:
            log.warning("openadr.no_portfolio", portfolio=self.config.portfolio)
            return []
        evses: list[tuple[str, int]] = []
        for m in portfolio.members:
            site = self.sites.get(m.site_id)
            if site is not None:
                evses += grid.evses_under(site, m.node or site.root.id)
        samples = await self.store.grid.power_samples(
            sorted({s for s, _ in evses}), date_from - grid.MAX_HOLD, date_to)
        out, t = [], date_from
        while t < date_to:
            points = [t + step * k / 6 for k in range(6)]
            load = grid.ev_load(samples, evses, points)
            out.append((t, round(sum(load) / len(load), 3)))
            t += step
        return out
