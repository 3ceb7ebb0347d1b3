"""The dashboard's routes: sign-in, the overview, a site's page, and the HTML fragments
the page's script swaps in when something changes.

Pages are rendered on the server with Jinja2 (templates/), which escapes every value; the
browser only adds the live parts (static/dashboard.js: charts from the JSON API, fragments
refreshed on the live feed). Sign-in keeps the API token in an HttpOnly cookie that the
API accepts too (docs/decisions/dashboard.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from csms import grid
from csms.api.auth import COOKIE, CSRF_HEADER, Caller, Permission, lookup
from csms.api.deps import Parts, parts
from csms.api.sites import may_see
from csms.dashboard import views
from smart_charging.model import Site

HERE = Path(__file__).parent
STATIC = "/static"
COOKIE_MAX_AGE_S = 12 * 3600
# Everything from this server; no inline script. uPlot sets element styles from script,
# which a style-src policy does not govern; the pages themselves have no inline style.
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none';"
       " form-action 'self'; frame-ancestors 'none'")

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


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


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    parts_: Parts = request.app.state.parts
    zone = views.display_zone(dict(parts_.sites))
    response = templates.TemplateResponse(
        request, name, {"zone": zone, "zone_name": _zone_name(zone),
                        "offset_s": int(zone.utcoffset(None).total_seconds()), **context},
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


templates.env.filters["t"] = _fmt_time


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
                      error="Unknown or revoked API token.")
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


# ----------------------------------------------------------------------- pages


@router.get("/")
async def overview(request: Request, who: Visitor, parts: PartsDep,
                   refresh: Refresh = 5) -> Response:
    reads = who.may(Permission.READ)
    return render(
        request, "overview.html", who=who, refresh=refresh, reads=reads,
        sites=await views.site_cards(parts, who),
        stations=await views.stations(parts) if reads else [],
        sessions=await views.sessions(parts) if reads else [],
        errors=await views.errors(parts, who),
    )


@router.get("/sites/{site_id}")
async def site_page(site_id: str, request: Request, who: Visitor, parts: PartsDep,
                    refresh: Refresh = 5) -> Response:
    site = parts.sites.get(site_id)
    if site is None or not who.may(Permission.SITES) or not may_see(who, site_id):
        return render(request, "missing.html", status_code=404, who=who,
                      what=f"site {site_id}")
    planned_at, evses = await views.schedules(parts, site)
    return render(
        request, "site.html", who=who, refresh=refresh, reads=who.may(Permission.READ),
        site=site, planned_at=planned_at, evses=evses,
        events=await views.grid_events(parts, site), limit_nodes=_limit_nodes(who, site),
        csrf_header=CSRF_HEADER,
    )


def _limit_nodes(who: Caller, site: Site) -> list[str]:
    """The nodes this caller may put a temporary limit on (a grid token: its nodes and
    those beneath them)."""
    if not who.may(Permission.LIMITS):
        return []
    return [n.id for n in site.nodes if who.role != "grid" or grid.covers(who.nodes, site, n.id)]


# ----------------------------------------------------------------------- fragments


@router.get("/fragments/stations")
async def stations_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    rows = await views.stations(parts) if who.may(Permission.READ) else []
    return render(request, "_stations.html", stations=rows)


@router.get("/fragments/sessions")
async def sessions_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    rows = await views.sessions(parts) if who.may(Permission.READ) else []
    return render(request, "_sessions.html", sessions=rows)


@router.get("/fragments/errors")
async def errors_fragment(request: Request, who: Visitor, parts: PartsDep) -> Response:
    return render(request, "_errors.html", errors=await views.errors(parts, who))


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
