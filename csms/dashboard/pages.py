"""The dashboard's routes: sign-in, the overview, a site's page, and the HTML fragments
the page's script swaps in when something changes.

Pages are rendered on the server with Jinja2 (templates/), which escapes every value; the
browser only adds the live parts (static/dashboard.js: charts from the JSON API, fragments
refreshed on the live feed). Sign-in keeps the API token in an HttpOnly cookie that the
API accepts too (docs/decisions/0012-dashboard.md).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from csms import grid
from csms.api import event_log
from csms.api.auth import COOKIE, CSRF_HEADER, Caller, Permission, lookup
from csms.api.deps import Parts, parts
from csms.api.sites import may_see
from csms.dashboard import i18n, portfolio, views
from csms.dashboard.energy import energy_rows
from csms.store.driver_tariffs import TransactionCost
from csms.store.transactions import Transaction
from csms.v2g import Accounting
from csms.v2g_ledger import v2g_facts
from smart_charging.model import Site

HERE = Path(__file__).parent
STATIC = "/static"
COOKIE_MAX_AGE_S = 12 * 3600
# Everything from this server; no inline script. uPlot sets element styles from script,
# which a style-src policy does not govern; the pages themselves have no inline style.
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
       " form-action 'self'; frame-ancestors 'none'")

templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
    extensions=["jinja2.ext.i18n"]))
router = APIRouter(include_in_schema=False)
# The script's own words (chart legends, command answers), in the page's language.
JS_STRINGS = (
    i18n._("limit kW"), i18n._("load (measured)"), i18n._("load (plan)"),
    i18n._("household"), i18n._("EV (measured)"), i18n._("EV (plan)"),
    i18n._("reserved"), i18n._("total (measured)"), i18n._("total (plan)"),
    i18n._("sending…"), i18n._("answered"), i18n._("failed"), i18n._("limit set"),
    i18n._("V2G terms saved"),
    i18n._("now"),
)
# Query text is bounded before it is used; longer is cut, never an error page.
Text = Annotated[str, Query(max_length=64)]


class SignIn(Exception):
    """Raised by a page whose visitor is not signed in: answered with a redirect."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


async def visitor(request: Request) -> Caller:
    """The caller, by API token (as for the API: bearer header, else the sign-in cookie);
    without one, off to the sign-in page."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    token = bearer.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE)
    who = await lookup(request, token) if token else None
    if who is None:
        query = request.url.query
        raise SignIn(request.url.path + (f"?{query}" if query else ""))
    return who


Visitor = Annotated[Caller, Depends(visitor)]
PartsDep = Annotated[Parts, Depends(parts)]
Refresh = Annotated[int, Query(ge=1, le=300, description="seconds between chart polls")]


def language(request: Request) -> str:
    return i18n.choose(request.cookies.get(i18n.COOKIE),
                       request.headers.get("accept-language"))


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    parts_: Parts = request.app.state.parts
    zone = views.display_zone(dict(parts_.sites))
    lang = language(request)
    translations = i18n.translations(lang)
    # Rendering is synchronous, so no other request renders between this and the render.
    templates.env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    query = request.url.query
    response = templates.TemplateResponse(
        request, name, {
            "zone": zone, "zone_name": _zone_name(zone),
            "offset_s": int(zone.utcoffset(None).total_seconds()), "now": parts_.clock.now(),
            "lang": lang, "languages": i18n.LANGUAGES,
            "here": request.url.path + (f"?{query}" if query else ""),
            "js_strings": {s: translations.gettext(s) for s in JS_STRINGS},
            "kind_names": views.KIND_NAMES, "v2g_modes": views.V2G_MODES,
            **context},
        status_code=status_code)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def _zone_name(zone: timezone) -> str:
    name = zone.tzname(None)
    return "UTC" if name in ("UTC", "UTC+00:00") else name


def _fmt_time(value: datetime | None, zone: timezone, seconds: bool = False) -> str:
    if value is None:
        return "\u2013"
    return value.astimezone(zone).strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def _fmt_hm(value: datetime, zone: timezone) -> str:
    return value.astimezone(zone).strftime("%H:%M")


templates.env.filters["t"] = _fmt_time
templates.env.filters["hm"] = _fmt_hm


def _safe_next(path: str | None) -> str:
    """Only a path on this server (no open redirect to another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


# ----------------------------------------------------------------------- sign-in


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    """A form post (no multipart library needed for two fields)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    next_path = _safe_next((form.get("next") or ["/"])[0])
    who = await lookup(request, token) if token else None
    if who is None:
        return render(request, "login.html", status_code=401, next=next_path,
                      error="Unknown or revoked API token.")  # in views.WORDS
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


@router.get("/language")
async def set_language(request: Request, set: str = "", next: str = "/") -> Response:
    """The language switch: remembered in a cookie for a year (a preference, no secret)."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if set in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, set, max_age=365 * 86400, samesite="lax",
                            secure=request.url.scheme == "https")
    return response


FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           '<rect width="16" height="16" rx="3" fill="#1f2937"/>'
           '<path d="M9 2 4 9h3l-1 5 5-7H8z" fill="#4ade80"/></svg>')


@router.get("/favicon.ico")
async def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml",
                    headers={"Cache-Control": "max-age=86400"})


# ----------------------------------------------------------------------- pages


@router.get("/")
async def overview(request: Request, who: Visitor, parts: PartsDep,
                   refresh: Refresh = 5) -> Response:
    reads = who.may(Permission.READ)
    return render(
        request, "overview.html", who=who, refresh=refresh, reads=reads,
        sites=await views.site_cards(parts, who),
        counts=views.station_counts(await views.stations(parts) if reads else []),
        sessions=await views.sessions(parts) if reads else [],
        errors=await views.errors(parts, who, views.display_zone(dict(parts.sites))),
        portfolios=await portfolio.visible(parts, who),
    )


@router.get("/stations")
async def stations_page(request: Request, who: Visitor, parts: PartsDep, q: Text = "",
                        state: Text = "", status: Text = "", site: Text = "",
                        page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    if not who.may(Permission.READ):
        return render(request, "missing.html", status_code=404, who=who,
                      what="station list")
    rows = await views.stations(parts)
    query = {"q": q, "state": state, "status": status, "site": site}
    shown, paging = views.page_of(views.filter_stations(rows, **query), page, query)
    return render(request, "stations.html", who=who, reads=True, stations=shown,
                  page=paging, query=query, counts=views.station_counts(rows),
                  statuses=views.STATUS_ORDER, site_ids=sorted(parts.sites))


@router.get("/stations/{station_id}")
async def station_page(station_id: str, request: Request, who: Visitor,
                       parts: PartsDep) -> Response:
    station = await parts.store.stations.get(station_id) if who.may(Permission.READ) \
        else None
    if station is None:
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"station {station_id}")
    connectors = await parts.store.devices.connectors(station_id)
    sessions = [s for s in await views.sessions(parts) if s.station_id == station_id]
    since, until = event_log.window(parts, None, None)
    events, _total = await event_log.find(
        parts, since, until, station_id, None, 10, 0, event_log.NON_COMPLIANCE_MARGIN_W,
        event_log.NON_COMPLIANCE_GRACE_S)
    zone = views.display_zone(dict(parts.sites))
    return render(
        request, "station.html", who=who, reads=True, station=station,
        online=parts.connections.is_connected(station_id),
        site=views.site_of_station(dict(parts.sites)).get(station_id),
        evses=views.evse_states(connectors), connectors=connectors, sessions=sessions,
        transactions=(recent := await parts.store.transactions.list(station_id, None, 20)),
        costs=await _costs(parts, recent), v2g=await _v2g(parts, recent),
        errors=[views.event_row(e, zone) for e in events],
        commands=who.may(Permission.COMMANDS), v2g_terms=who.may(Permission.SESSIONS),
        csrf_header=CSRF_HEADER)


@router.get("/events")
async def events_page(request: Request, who: Visitor, parts: PartsDep, station_id: Text = "",
                      kind: Text = "", page: Annotated[int, Query(ge=1, le=100_000)] = 1,
                      tolerance_w: event_log.Tolerance = event_log.NON_COMPLIANCE_MARGIN_W,
                      grace_s: event_log.Grace = event_log.NON_COMPLIANCE_GRACE_S,
                      ) -> Response:
    """Errors and events at the stations (the event log, as `GET /api/event-log`), by
    station and kind, a page at a time; `tolerance_w` and `grace_s` as for the API."""
    if not who.may(Permission.READ):
        return render(request, "missing.html", status_code=404, who=who, what="event log")
    since, until = event_log.window(parts, None, None)
    kinds = [kind] if kind in views.KIND_NAMES else None
    size = views.PAGE_SIZE
    station = station_id.strip() or None
    found, total = await event_log.find(parts, since, until, station, kinds, size,
                                        (page - 1) * size, tolerance_w, grace_s)
    if page > (last := max(1, -(-total // size))):  # past the end: the last page
        page = last
        found, total = await event_log.find(parts, since, until, station, kinds, size,
                                            (page - 1) * size, tolerance_w, grace_s)
    query = {"station_id": station_id, "kind": kind}
    if tolerance_w != event_log.NON_COMPLIANCE_MARGIN_W:
        query["tolerance_w"] = f"{tolerance_w:g}"
    if grace_s != event_log.NON_COMPLIANCE_GRACE_S:
        query["grace_s"] = f"{grace_s:g}"
    zone = views.display_zone(dict(parts.sites))
    return render(request, "events.html", who=who, reads=True, query=query,
                  errors=[views.event_row(e, zone) for e in found],
                  page=views.Page(page, size, total, query), kinds=views.KIND_NAMES,
                  days=event_log.DEFAULT_DAYS, tolerance_kw=f"{tolerance_w / 1000:g}",
                  grace_s=f"{grace_s:g}")


TRANSACTIONS_LIMIT = 500


async def _transactions(parts: Parts, station_id: str, id_token: str, active: str,
                        since: str, until: str, limit: int) -> list[Transaction]:
    zone = views.display_zone(dict(parts.sites))
    return await parts.store.transactions.list(
        station_id or None, {"true": True, "false": False}.get(active), limit,
        id_token=id_token or None, since=_day(since, zone),
        until=_day(until, zone, next_day=True))


def _day(value: str, zone: timezone, next_day: bool = False) -> datetime | None:
    """A date from a form (YYYY-MM-DD, the display zone) as the start of that day (or of
    the next); anything else is no filter."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=zone)
    except ValueError:
        return None
    return day + timedelta(days=1) if next_day else day


@router.get("/transactions")
async def transactions_page(request: Request, who: Visitor, parts: PartsDep,
                            station_id: Text = "", id_token: Text = "", active: Text = "",
                            since: Text = "", until: Text = "") -> Response:
    if not who.may(Permission.READ):
        return render(request, "missing.html", status_code=404, who=who,
                      what="transaction list")
    query = {"station_id": station_id, "id_token": id_token, "active": active,
             "since": since, "until": until}
    found = await _transactions(parts, limit=TRANSACTIONS_LIMIT + 1, **query)
    shown = found[:TRANSACTIONS_LIMIT]
    return render(request, "transactions.html", who=who, reads=True,
                  transactions=shown, costs=await _costs(parts, shown), query=query,
                  v2g=await _v2g(parts, shown),
                  truncated=len(found) > TRANSACTIONS_LIMIT, limit=TRANSACTIONS_LIMIT,
                  csv_query=urlencode({k: v for k, v in query.items() if v}))


async def _costs(parts: Parts, found: list[Transaction]
                 ) -> dict[tuple[str, str], TransactionCost]:
    """The driver's cost of each transaction that has one (block I), by (station, id)."""
    return await parts.store.driver_tariffs.costs(
        [(t.station_id, t.transaction_id) for t in found])


async def _v2g(parts: Parts, found: list[Transaction]) -> dict[tuple[str, str], Accounting]:
    """What each transaction's car discharged (V2G), its cycles and what it is owed."""
    return {key: f.account for key, f in (await v2g_facts(parts.store, found)).items()}


CSV_COLUMNS = ("station_id", "evse_id", "transaction_id", "id_token", "started_at",
               "ended_at", "energy_kwh", "stopped_reason", "cost", "currency", "cost_final",
               "discharged_kwh", "v2g_cycles", "v2g_compensation")


@router.get("/transactions.csv")
async def transactions_csv(who: Visitor, parts: PartsDep, station_id: Text = "",
                           id_token: Text = "", active: Text = "", since: Text = "",
                           until: Text = "") -> Response:
    """The filtered transactions as CSV (UTF-8 with a BOM, so spreadsheet programs read
    Chinese text right), times in UTC (ISO 8601)."""
    if not who.may(Permission.READ):
        return Response("not allowed", status_code=403)
    found = await _transactions(parts, station_id, id_token, active, since, until, 100_000)
    costs = await _costs(parts, found)
    accounts = await _v2g(parts, found)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for t in found:
        writer.writerow([
            t.station_id, t.evse_id, t.transaction_id, _csv_text(t.id_token),
            _iso(t.started_at), _iso(t.ended_at),
            "" if t.energy_wh is None else f"{t.energy_wh / 1000:.3f}", t.stopped_reason or "",
            *_cost_cells(costs.get((t.station_id, t.transaction_id))),
            *_v2g_cells(accounts.get((t.station_id, t.transaction_id)))])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="transactions.csv"'})


def _cost_cells(cost: TransactionCost | None) -> list[str]:
    if cost is None:
        return ["", "", ""]
    return [str(cost.cost), cost.currency, "true" if cost.final else "false"]


def _v2g_cells(account: Accounting | None) -> list[str]:
    if account is None:
        return ["0.000", "", "0.00"]
    return [f"{account.discharged_kwh:.3f}",
            "" if account.cycles is None else f"{account.cycles:.4f}",
            f"{account.compensation:.2f}"]


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def _csv_text(value: str | None) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/sites/{site_id}")
async def site_page(site_id: str, request: Request, who: Visitor, parts: PartsDep,
                    refresh: Refresh = 5) -> Response:
    site = parts.sites.get(site_id)
    if site is None or not who.may(Permission.SITES) or not may_see(who, site_id):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"site {site_id}")
    planned_at, evses = await views.schedules(parts, site)
    batteries, plants = await energy_rows(parts, site)
    return render(
        request, "site.html", who=who, refresh=refresh, reads=who.may(Permission.READ),
        site=site, planned_at=planned_at, evses=evses, batteries=batteries, plants=plants,
        events=await views.grid_events(parts, site), limit_nodes=_limit_nodes(who, site),
        csrf_header=CSRF_HEADER,
    )


@router.get("/portfolios/{portfolio_id}")
async def portfolio_page(portfolio_id: str, request: Request, who: Visitor,
                         parts: PartsDep) -> Response:
    """Issue 14: the portfolio's latest dispatch (committed, baseline, metered; each
    member's share) and its invitations; an aggregator sees its own portfolios only."""
    found = await parts.store.portfolios.get(portfolio_id[:64])
    if (found is None or not who.may(Permission.PORTFOLIOS)
            or not who.sees_portfolio(found.id)):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"portfolio {portfolio_id[:64]}")
    return render(request, "portfolio.html", who=who, reads=who.may(Permission.READ),
                  portfolio=found, dispatch=await portfolio.dispatch_view(parts, found),
                  invitations=await portfolio.invitation_rows(parts, found))


def _limit_nodes(who: Caller, site: Site) -> list[str]:
    """The nodes this caller may put a temporary limit on (a grid token: its nodes and
    those beneath them)."""
    if not who.may(Permission.LIMITS):
        return []
    return [n.id for n in site.nodes if who.role != "grid" or grid.covers(who.nodes, site, n.id)]


# ----------------------------------------------------------------------- fragments


@router.get("/fragments/stations")
async def stations_fragment(request: Request, who: Visitor, parts: PartsDep, q: Text = "",
                            state: Text = "", status: Text = "", site: Text = "",
                            page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """The stations page's table, refreshed live with its filter and page kept."""
    rows = await views.stations(parts) if who.may(Permission.READ) else []
    query = {"q": q, "state": state, "status": status, "site": site}
    shown, _paging = views.page_of(views.filter_stations(rows, **query), page, query)
    return render(request, "_stations.html", stations=shown)


@router.get("/fragments/station-counts")
async def station_counts_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    rows = await views.stations(parts) if who.may(Permission.READ) else []
    return render(request, "_station_counts.html", counts=views.station_counts(rows))


@router.get("/fragments/sessions")
async def sessions_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    rows = await views.sessions(parts) if who.may(Permission.READ) else []
    return render(request, "_sessions.html", sessions=rows)


@router.get("/fragments/errors")
async def errors_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    return render(request, "_errors.html", errors=await views.errors(
        parts, who, views.display_zone(dict(parts.sites))))


@router.get("/fragments/sites/{site_id}/schedules")
async def schedules_fragment(site_id: str, request: Request, who: Visitor,
                             parts: PartsDep) -> Response:
    site = parts.sites.get(site_id)
    if site is None or not who.may(Permission.SITES) or not may_see(who, site_id):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"site {site_id}")
    planned_at, evses = await views.schedules(parts, site)
    return render(request, "_schedules.html", planned_at=planned_at, evses=evses)


@router.get("/fragments/sites/{site_id}/events")
async def events_fragment(site_id: str, request: Request, who: Visitor,
                          parts: PartsDep) -> Response:
    site = parts.sites.get(site_id)
    if site is None or not who.may(Permission.SITES) or not may_see(who, site_id):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"site {site_id}")
    return render(request, "_events.html", events=await views.grid_events(parts, site))


@router.get("/fragments/sites/{site_id}/energy")
async def energy_fragment(site_id: str, request: Request, who: Visitor,
                          parts: PartsDep) -> Response:
    """The site's battery and solar card, refreshed live (issue 15)."""
    site = parts.sites.get(site_id)
    if site is None or not who.may(Permission.SITES) or not may_see(who, site_id):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"site {site_id}")
    batteries, plants = await energy_rows(parts, site)
    return render(request, "_energy.html", batteries=batteries, plants=plants)


def install(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to the API's application."""
    for route in router.routes:  # on the app itself: its route table lists the pages
        assert isinstance(route, APIRoute)
        app.add_api_route(route.path, route.endpoint, methods=sorted(route.methods),
                          name=route.name, include_in_schema=False)
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="dashboard-static")

    @app.exception_handler(SignIn)
    async def sign_in(request: Request, exc: SignIn) -> Response:
        if request.url.path.startswith("/fragments/"):  # a script asked: no redirect
            return Response("sign in again", status_code=401)
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}",
                                status_code=303)
