"""The cluster as the registry sees it: nodes, their workers, and which worker holds which
station (csms/cluster/). Empty outside a cluster: one process holds every socket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep
from csms.api.models import Model

router = APIRouter(tags=["cluster"])


class Worker(Model):
    node: str
    worker: int
    pid: int
    started_at: datetime
    seen_at: datetime
    stations: int


class Holding(Model):
    station_id: str
    node: str
    worker: int
    connected_at: datetime


class Cluster(Model):
    clustered: bool
    workers: list[Worker]
    stations: list[Holding]


@router.get("/api/cluster", dependencies=[require(Permission.READ)])
async def cluster(
    parts: PartsDep,
    limit: Annotated[int, Query(ge=0, le=10_000, description="stations listed, at most")]
    = 1000,
) -> Cluster:
    """Which node and worker holds each station's socket, and the workers alive."""
    if parts.cluster is None:
        return Cluster(clustered=False, workers=[], stations=[])
    workers = await parts.cluster.workers()
    holdings = await parts.cluster.holdings(limit) if limit else []
    return Cluster(
        clustered=True,
        workers=[Worker(node=w.node, worker=w.worker, pid=w.pid, started_at=w.started_at,
                        seen_at=w.seen_at, stations=w.stations) for w in workers],
        stations=[Holding(station_id=h.station_id, node=h.node, worker=h.worker,
                          connected_at=h.connected_at) for h in holdings])
