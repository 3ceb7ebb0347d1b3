"""The OpenAPI document, the interactive docs served offline, and the metrics endpoint."""

from __future__ import annotations

import re

from tests.api.conftest import Client

EXTERNAL = re.compile(r"""(?:https?:)?//(?!127\.0\.0\.1|localhost)[\w.-]+\.[a-z]{2,}""", re.I)


async def test_openapi_document_lists_every_resource(client: Client) -> None:
    spec = (await client(None).get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    paths = set(spec["paths"])
    for path in ("/api/stations", "/api/stations/{station_id}", "/api/id-tokens",
                 "/api/id-tokens/{type}/{id_token}", "/api/transactions",
                 "/api/transactions/{station_id}/{transaction_id}", "/api/sessions",
                 "/api/sessions/{station_id}/{transaction_id}", "/api/events", "/metrics",
                 "/api/stations/{station_id}/commands/reset",
                 "/api/stations/{station_id}/commands/set-charging-profile",
                 "/api/sites", "/api/sites/{site_id}/plan", "/api/sites/{site_id}/plans"):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "StationDetail" in spec["components"]["schemas"]


async def test_docs_pages_work_offline(client: Client) -> None:
    http = client(None)
    for page in ("/docs", "/redoc"):
        reply = await http.get(page)
        assert reply.status_code == 200
        html = reply.text
        assert EXTERNAL.findall(html) == [], page  # no CDN, no web font, no outside favicon
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert assets, page
        for asset in assets:
            assert asset.startswith("/"), asset
            assert (await http.get(asset)).status_code == 200, asset
    swagger = (await http.get("/docs")).text
    assert "/openapi.json" in swagger and "swagger-ui-bundle.js" in swagger


async def test_metrics_in_prometheus_text(client: Client) -> None:
    reply = await client("viewer").get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert "csms_connected_stations" in reply.text
