"""Prometheus metrics (csms/metrics.py): scrape with `authorization: {credentials: <token>}`.

Under `csms serve --workers N` every worker writes its counters to a shared folder
(prometheus_client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR), so whichever worker
answers a scrape reports them all: counters and histograms summed, gauges per pid. In a
cluster, which node and worker hold each station comes from the registry (all nodes).
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from csms import metrics as counters
from csms.api.auth import Permission, require
from csms.api.deps import PartsDep
from csms.cluster.registry import Registry

router = APIRouter(tags=["metrics"])
MAX_STATION_SERIES = 100_000  # one series per connected station, at most


@router.get("/metrics", dependencies=[require(Permission.METRICS)],
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})
async def metrics(parts: PartsDep) -> Response:
    now = parts.clock.now()
    counters.grid_events_active.set(await parts.store.grid.count_active(now))
    text = generate_latest(_process_registry())
    if parts.cluster is not None:
        text += await _cluster(parts.cluster)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def _process_registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return merged


async def _cluster(registry: Registry) -> bytes:
    """Read at scrape time from the registry: every node's stations, not only this one's."""
    out = CollectorRegistry()
    holder = Gauge("csms_station_worker", "1 for the node and worker holding a station's "
                   "socket", ["node", "station_id", "worker"], registry=out)
    workers = Gauge("csms_worker_stations", "Stations a worker holds, by node and worker",
                    ["node", "worker", "pid"], registry=out)
    for w in await registry.workers():
        workers.labels(w.node, str(w.worker), str(w.pid)).set(w.stations)
    for h in await registry.holdings(MAX_STATION_SERIES):
        holder.labels(h.node, h.station_id, str(h.worker)).set(1)
    return generate_latest(out)
