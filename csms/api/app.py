"""The FastAPI application: routers, auth, error bodies, and the docs served offline.

The docs page (Swagger UI at /docs, ReDoc at /redoc) loads its scripts from this server,
not from a CDN, so it works on a site network with no internet. The files come from the
`fastapi-offline` package, which ships a current Swagger UI (able to read OpenAPI 3.1, as
FastAPI writes it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from csms.api import (
    carbon,
    charging,
    cluster,
    commands,
    diagnostics,
    dispatch_settlements,
    display,
    driver_tariffs,
    event_log,
    events,
    firmware,
    grid,
    guard,
    iso15118,
    ledger,
    local_lists,
    metrics,
    network_profiles,
    portfolios,
    reports,
    reservations,
    scheduler_leases,
    security,
    sessions,
    settlements,
    site_load,
    sites,
    stations,
    storage,
    tariffs,
    tokens,
    transactions,
    v2g,
    vpp,
)
from csms.api.auth import ROLES, Caller, caller
from csms.api.commands import CommandFailed
from csms.api.deps import Parts
from csms.api.models import CommandError, Model, WhoAmI
from csms.dashboard import install as install_dashboard

DESCRIPTION = """\
Operate the CSMS: stations, id tokens, transactions, drivers' charging needs, commands to
stations, a live feed and metrics.

Every call but `/api/health` needs an API token: `csms api-tokens add NAME --role ROLE`
prints one. Send it as `Authorization: Bearer <token>` (the Authorize button here).
Roles: `admin` (everything), `operator` (stations, id tokens, transactions, sessions,
commands, site tariffs), `grid` (site load, limits and events on its nodes), `aggregator`
(its portfolios: forecasts, invitations, offers, dispatches), `viewer` (read only).
"""


class Health(Model):
    status: str


def build_app(parts: Parts) -> FastAPI:
    app = FastAPIOffline(
        title="ocpp-csms", version="0.1.0", description=DESCRIPTION,
        static_url="/docs-assets",
        # no validator badge: it would send the spec to an outside service
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    app.state.parts = parts
    guard.install(app)  # hostile input is a 422, never a 500 (csms/api/guard.py)
    for module in (stations, tokens, transactions, sessions, commands, sites, site_load,
                   grid, tariffs, events, metrics, security, reports, local_lists,
                   network_profiles, firmware, diagnostics, display, charging,
                   iso15118, event_log, scheduler_leases):
        app.include_router(module.router)
    for module in (reservations, driver_tariffs):  # blocks H and I
        app.include_router(module.router)
    app.include_router(portfolios.router)  # issue 14: aggregators
    app.include_router(settlements.router)
    app.include_router(storage.router)  # issue 15: a site's battery and solar
    app.include_router(carbon.router)  # emission factors, a session's emissions
    app.include_router(ledger.router)  # revenue shares and the revenue-split ledger
    app.include_router(vpp.router)  # forecasts, invitations, offers, dispatches
    app.include_router(dispatch_settlements.router)  # a dispatch settled for its portfolio
    app.include_router(cluster.router)  # scale-out: nodes, workers, stations
    app.include_router(v2g.router)  # issue 15: vehicles' and sessions' V2G terms

    @app.exception_handler(CommandFailed)
    async def command_failed(request: Request, exc: CommandFailed) -> JSONResponse:
        body = CommandError(detail=exc.detail, code=exc.code)
        return JSONResponse(body.model_dump(), status_code=exc.status_code)

    @app.get("/api/health", tags=["meta"])
    async def health() -> Health:
        """Is the API up? (no token needed)"""
        return Health(status="ok")

    @app.get("/api/whoami", tags=["meta"])
    async def whoami(who: Annotated[Caller, Depends(caller)]) -> WhoAmI:
        """The token's name, role and what the role may do."""
        return WhoAmI(name=who.name, role=who.role, nodes=list(who.nodes),
                      permissions=sorted(p.value for p in ROLES.get(who.role, ())))

    install_dashboard(app)  # the web pages, on the same port (csms/dashboard/)
    return app
