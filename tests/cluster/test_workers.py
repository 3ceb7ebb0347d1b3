"""`csms serve --workers 2` as an operator runs it: two processes behind one OCPP port and
one HTTP port, a nats-server started and stopped with them, every station reachable
through either process, and `csms status` saying which worker holds which station."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from csms.api.auth import new_token
from csms.cluster.broker import free_port
from csms.store import open_database
from csms.store.api_tokens import ApiTokenRepo
from csms.store.stations import StationRepo
from simulators.station import Station, StationSpec
from tests.e2e.conftest import _HASH, PASSWORD
from tests.support import eventually

CSMS = [sys.executable, "-m", "csms.cli"]
STATIONS = 16  # SO_REUSEPORT spreads by hash: all 16 on one worker is a 1 in 32,768 chance


async def provision(database_url: str, private_dir: Path) -> str:
    db = await open_database(database_url, private_dir)
    try:
        stations = StationRepo(db.pool)
        for i in range(STATIONS):
            await stations.add(f"W{i:02}", _HASH, _now())
        await stations.close()
        token, hashed = new_token()
        await ApiTokenRepo(db.pool).add("ops", "operator", hashed, _now())
        return token
    finally:
        await db.close()


def _now() -> datetime:
    return datetime.now(UTC)


async def worker_pids(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT worker_id, pid FROM cluster_workers")
    finally:
        await conn.close()
    return {r["worker_id"]: r["pid"] for r in rows}


async def test_two_workers_serve_stations_through_one_port(
    database_url: str, private_dir: Path,
) -> None:
    token = await provision(database_url, private_dir)
    port, api_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        *CSMS, "serve", "--workers", "2", "--database-url", database_url,
        "--host", "127.0.0.1", "--port", str(port), "--api-port", str(api_port),
        "--node", "here", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    stations: list[Station] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        assert "CSMS listening" in line and "2 workers" in line, line
        for i in range(STATIONS):
            station = Station(StationSpec(f"W{i:02}", password=PASSWORD),
                              url=f"ws://127.0.0.1:{port}/ocpp")
            await station.start()
            assert station.boot_status == "Accepted"
            stations.append(station)

        async def spread() -> list[int] | None:
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch("SELECT worker_id, count(*) AS n FROM station_sockets"
                                        " GROUP BY worker_id ORDER BY worker_id")
            finally:
                await conn.close()
            counts = [r["n"] for r in rows]
            return counts if sum(counts) == STATIONS else None

        counts = await eventually(spread, timeout=30)
        assert len(counts) == 2 and min(counts) >= 1, counts  # both workers hold stations
        status = await asyncio.create_subprocess_exec(
            *CSMS, "status", "--stations", "--database-url", database_url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        listed = (await asyncio.wait_for(status.communicate(), 60))[0].decode()
        assert status.returncode == 0
        assert listed.count("\nhere ") == 2 and "W00" in listed, listed
        # every station answers through the one HTTP port, whichever worker takes it
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            for i in range(STATIONS):
                reply = await http.post(f"/api/stations/W{i:02}/commands/trigger-message",
                                        json={"requested_message": "Heartbeat"})
                assert reply.status_code == 200, reply.text
            metrics = (await http.get("/metrics")).text
            assert 'csms_station_worker{node="here",station_id="W00"' in metrics
            # every worker's own gauges, whichever answers the scrape (multiprocess mode)
            assert metrics.count('csms_connected_stations{pid="') == 2, metrics[:2000]
        # a worker that dies is restarted, under the same name
        pids = await worker_pids(database_url)
        os.kill(pids["here/1"], signal.SIGKILL)

        async def restarted() -> bool:
            now = await worker_pids(database_url)
            return now.get("here/1", pids["here/1"]) != pids["here/1"]

        await eventually(restarted, timeout=60)
    finally:
        for station in stations:
            await station.stop()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
