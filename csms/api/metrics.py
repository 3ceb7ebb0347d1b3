"""Prometheus metrics (csms/metrics.py): scrape with `authorization: {credentials: <token>}`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from csms import metrics as counters
from csms.api.auth import Permission, require
from csms.api.deps import PartsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", dependencies=[require(Permission.METRICS)],
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})
async def metrics(parts: PartsDep) -> Response:
    now = parts.clock.now()
    counters.grid_events_active.set(await parts.store.grid.count_active(now))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
