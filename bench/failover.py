"""Failover (issue 13): kill -9 the node that holds half the stations and plans the site;
how long until its stations are back on the other node, the site's lease is taken over and
re-planned, and every charging station has its profiles again; nothing acknowledged lost
or stored twice.

    .venv/bin/python bench/failover.py --stations 1000
    .venv/bin/python bench/failover.py --stations 200 --after 40     # a quick look

Two `csms serve --workers 1` nodes (a, b) on one PostgreSQL (embedded in a temporary
folder, or DATABASE_URL) and one nats-server, with their default cluster and scheduler
settings (`[cluster] heartbeat_s` 5, `worker_ttl_s` 20; `[scheduler] lease_retry_s` 5).
--sites sites share the stations (one 7 kW EVSE each), each under a feeder that fits a
third of its stations at full power, so the plan shapes every session. Node a starts
first and takes every site; once b is up, a gives b its share (the site leases).

The stations are plain WebSocket clients in --generators processes of their own; even ids
connect to a, odd to b. Half of them (every other pair) charge: TransactionEvent Started,
then an Updated with a meter value every --tx-every seconds (seqNo + 1 each). A station
whose socket closes does what a load balancer in front of the nodes makes it do: after a
random back-off in [0, --backoff] s it connects to the other node, boots, and re-sends its
unacknowledged event (the same seqNo: the offline queue). Every CALL from the CSMS gets
{"status": "Accepted"}; each SetChargingProfile's arrival time is recorded.

After --warmup seconds (all booted, the sites shared, plans sent), node a gets SIGKILL
(`--signal term`: SIGTERM, the stop of a rolling restart) at T0. Reported, from T0:
every one of a's stations booted on b (p50, max); b holds every site's lease; b stored a
plan of every site; every charging station that was on a got a SetChargingProfile on b
after its reconnect. "On a" is where a station last booted before T0: when all connect
at once at the start, one node's handshake cap (HTTP 503) sends some to the other.
Then, from the
database: events acknowledged to a station but not stored (lost) and events stored twice
(the key makes that impossible; counted anyway from `transactions.event_count` against
the rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workers import database, fresh_database, now_ocpp, pct
from csms.cluster.broker import EmbeddedBroker, free_port
from csms.scheduling.leases import holders

CSMS = [sys.executable, "-m", "csms.cli"]
SITE = "failover"


def site_file(folder: Path, name: str, prefix: str, stations: int) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"""[site]
utc_offset = "+08:00"
default_departure = "07:30"
default_energy_kwh = 20.0

[[nodes]]
id = "feeder"
kind = "transformer"
limit_kw = {max(10.0, stations * 7.4 / 3):.1f}

[[evse_groups]]
count = {stations}
id_prefix = "{prefix}"
node = "feeder"
wiring = "wye"
phases = "rotate"
voltage_v = 230
min_current_a = 6
max_current_a = 32
rate_unit = "A"
ocpp_evse_id = 1
""")
    return path


def sites_of(stations: int, sites: int) -> dict[str, list[str]]:
    """Site id -> its station ids (as the site file's evse_groups name them)."""
    out = {}
    for k in range(sites):
        count = stations // sites + (1 if k < stations % sites else 0)
        out[f"{SITE}-{k + 1}"] = [f"F{k + 1}x{i + 1:03d}" for i in range(count)]
    return out


# -- the stations (in generator processes) -------------------------------------------------


class Link:
    """One socket: our CALLs one at a time, the CSMS's CALLs answered Accepted."""

    def __init__(self, ws: Any, record: dict[str, Any]) -> None:
        self.ws, self.record = ws, record
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            await self._answer()
        except websockets.ConnectionClosed:
            pass

    async def _answer(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                if frame[2] == "SetChargingProfile":
                    self.record["profiles"].append(time.time())
                await self.ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            elif frame[0] in (3, 4) and frame[1] in self.waiting:
                self.waiting.pop(frame[1]).set_result(frame)

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        message_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = future
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        done, _ = await asyncio.wait({future, self.reader}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if future not in done:
            raise ConnectionError(f"{action}: no answer")
        frame = future.result()
        if frame[0] != 3:
            raise ConnectionError(f"{action}: {frame}")
        return frame[2]


async def run_station(sid: str, index: int, urls: list[str], t_end: float,
                      args: dict[str, Any], record: dict[str, Any]) -> None:
    node = index % 2
    charging = index % 4 < 2
    seq, started, pending = 0, False, None  # pending: the event sent, not yet acknowledged
    tx = f"T-{sid}"
    while time.time() < t_end:
        try:
            async with websockets.connect(f"{urls[node]}/{sid}", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                                          open_timeout=30, ping_interval=None,
                                          close_timeout=1) as ws:
                link = Link(ws, record)
                await link.call("BootNotification", {"reason": "PowerUp", "chargingStation": {
                    "model": "bench", "vendorName": "bench"}})
                record["booted"].append((time.time(), "ab"[node]))
                await link.call("StatusNotification", {
                    "timestamp": now_ocpp(), "evseId": 1, "connectorId": 1,
                    "connectorStatus": "Occupied" if charging else "Available"})
                while time.time() < t_end:
                    if charging and pending is None:
                        event = "Updated" if started else "Started"
                        pending = {"eventType": event, "timestamp": now_ocpp(),
                                   "triggerReason": "MeterValuePeriodic" if started
                                   else "CablePluggedIn", "seqNo": seq,
                                   "transactionInfo": {"transactionId": tx,
                                                       "chargingState": "Charging"},
                                   "evse": {"id": 1, "connectorId": 1},
                                   "meterValue": [{"timestamp": now_ocpp(), "sampledValue": [
                                       {"value": 1000.0 * seq,
                                        "measurand": "Energy.Active.Import.Register"}]}]}
                    if pending is not None:
                        await link.call("TransactionEvent", pending)
                        record["acked"].append(pending["seqNo"])
                        started, seq, pending = True, seq + 1, None
                    else:
                        await link.call("Heartbeat", {})
                    # as firmware does, notice a closed socket at once, not at the next send
                    await asyncio.wait({link.reader},
                                       timeout=args["tx_every"] if charging else 30)
                    if link.reader.done():
                        raise ConnectionError("socket closed")
        except Exception as exc:  # any failure: the load balancer tries the other node
            record["dropped"].append(time.time())
            record["errors"].append(type(exc).__name__)
            node ^= 1  # the load balancer sends it to the node that is alive
            await asyncio.sleep(random.uniform(0, args["backoff"]))


def generator(urls: list[str], ids: list[tuple[int, str]], t_end: float,
              args: dict[str, Any], out: Any) -> None:
    async def main() -> dict[str, Any]:
        records = {sid: {"booted": [], "dropped": [], "profiles": [], "acked": [], "errors": []}
                   for _, sid in ids}
        await asyncio.gather(*(run_station(sid, i, urls, t_end, args, records[sid])
                               for i, sid in ids), return_exceptions=True)
        return records

    out.put(asyncio.run(main()))


# -- the nodes ------------------------------------------------------------------------------


async def start_node(name: str, config: Path, url: str, broker: str,
                     port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *CSMS, "serve", "--workers", "1", "--config", str(config), "--database-url", url,
        "--broker-url", broker, "--node", name, "--host", "127.0.0.1", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    assert "CSMS listening" in line, line
    return proc


async def main(args: argparse.Namespace) -> dict[str, Any]:
    admin_url, _server = database()
    return await run(admin_url, args)


async def run(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One failover on a fresh database of the PostgreSQL at `admin_url`
    (tests/cluster/test_failover.py runs it small)."""
    url = await fresh_database(admin_url)
    folder = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    by_site = sites_of(args.stations, args.sites)
    ids = [sid for members in by_site.values() for sid in members]
    files = [site_file(folder, site, f"F{k + 1}x", len(members))
             for k, (site, members) in enumerate(by_site.items())]
    proc = await asyncio.create_subprocess_exec(*CSMS, "migrate", "--database-url", url,
                                                stdout=asyncio.subprocess.DEVNULL)
    await proc.wait()
    db = await asyncpg.connect(url)
    await db.executemany("INSERT INTO stations (id, created_at) VALUES ($1, now())",
                         [(i,) for i in ids])
    config = folder / "csms.toml"
    config.write_text(f'[api]\nenabled = false\n[log]\nlevel = "warning"\n'
                      f'[server]\nping_interval_s = 0\n'
                      f'[scheduler]\nsites = {json.dumps([str(f) for f in files])}\n')
    broker = await EmbeddedBroker.start()
    ports = [free_port(), free_port()]
    nodes = [await start_node("a", config, url, broker.url, ports[0])]
    nodes.append(await start_node("b", config, url, broker.url, ports[1]))
    try:
        t_end = time.time() + args.warmup + args.after
        queue: Any = multiprocessing.get_context("spawn").Queue()
        indexed = list(enumerate(ids))
        procs = [multiprocessing.get_context("spawn").Process(target=generator, args=(
            [f"ws://127.0.0.1:{p}/ocpp" for p in ports], indexed[g::args.generators], t_end,
            {"tx_every": args.tx_every, "backoff": args.backoff}, queue))
            for g in range(args.generators)]
        for p in procs:
            p.start()
        await asyncio.sleep(args.warmup)
        leases = await holders(db, list(by_site))
        plans_before = await db.fetchval("SELECT count(*) FROM plans")
        t0 = time.time()
        nodes[0].send_signal(signal.SIGKILL if args.signal == "kill" else signal.SIGTERM)
        await nodes[0].wait()
        t_lease = t_plan = None
        while time.time() < t_end and (t_lease is None or t_plan is None):
            now = await holders(db, list(by_site))
            if t_lease is None and all(h is not None and h.node.startswith("b/")
                                       for h in now.values()):
                t_lease = time.time() - t0
            planned = await db.fetch(
                "SELECT site_id, extract(epoch FROM min(planned_at)) AS at FROM plans"
                " WHERE planned_at > to_timestamp($1) GROUP BY site_id", t0)
            if t_plan is None and len(planned) == len(by_site):
                t_plan = max(float(r["at"]) for r in planned) - t0
            await asyncio.sleep(0.1)
        records: dict[str, Any] = {}
        for _ in procs:
            records.update(queue.get(timeout=args.after + 120))
        for p in procs:
            p.join()
        stored = {(r["transaction_id"], r["seq_no"]) for r in await db.fetch(
            "SELECT transaction_id, seq_no FROM transaction_events")}
        counts = await db.fetch("SELECT t.transaction_id, t.event_count, (SELECT count(*) FROM"
                                " transaction_events e WHERE e.transaction_id ="
                                " t.transaction_id) AS rows FROM transactions t")
    finally:
        for n in nodes:
            if n.returncode is None:
                n.send_signal(signal.SIGTERM)
                await n.wait()
        await broker.stop()
    # on a at the kill: its last boot before T0 was there (a station refused by one node's
    # handshake cap while all connect at the start goes to the other, as it would in life)
    on_a = [sid for sid in ids
            if max(((t, n) for t, n in records[sid]["booted"] if t <= t0), default=(0, ""))[1]
            == "a"]
    back = [min((t for t, _ in records[s]["booted"] if t > t0), default=None) for s in on_a]
    missing = sum(1 for t in back if t is None)
    delays = sorted(t - t0 for t in back if t is not None)
    moved = set(on_a)
    charging_all = [sid for i, sid in enumerate(ids) if i % 4 < 2]
    charging = [sid for sid in charging_all if sid in moved]
    profile_delays = []
    for sid in charging:
        rec = records[sid]
        since = min((t for t, _ in rec["booted"] if t > t0), default=t0)
        got = [t for t in rec["profiles"] if t >= since]
        profile_delays.append(min(got) - t0 if got else None)
    acked = {(f"T-{sid}", seq) for sid in charging_all for seq in records[sid]["acked"]}
    return {
        "signal": args.signal, "stations": args.stations, "sites": args.sites,
        "planners_before_kill": sorted({h.node for h in leases.values() if h}),
        "sites_on_a": sum(1 for h in leases.values() if h and h.node.startswith("a/")),
        "plans_before_kill": plans_before,
        "a_stations": len(on_a), "a_stations_not_back": missing,
        "reconnected_p50_s": round(pct(delays, 50), 2) if delays else None,
        "reconnected_max_s": round(delays[-1], 2) if delays else None,
        "lease_taken_s": None if t_lease is None else round(t_lease, 2),
        "replanned_s": None if t_plan is None else round(t_plan, 2),
        "charging_stations_moved": len(charging),
        "profiles_again_max_s": None if None in profile_delays
        else round(max(profile_delays), 2),
        "charging_without_profile_after_kill": sum(1 for d in profile_delays if d is None),
        "errors_seen": dict(Counter(e for s in ids for e in records[s]["errors"])),
        "a_stations_never_dropped": sum(
            1 for s in on_a if not any(t > t0 for t in records[s]["dropped"])),
        "events_acked": len(acked), "acked_not_stored": len(acked - stored),
        "stored_twice": sum(max(0, int(r["rows"]) - int(r["event_count"])) for r in counts),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--sites", type=int, default=4, help="the stations split over this many")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the kill")
    p.add_argument("--after", type=float, default=60.0, help="seconds watched after it")
    p.add_argument("--generators", type=int, default=2)
    p.add_argument("--tx-every", type=float, default=10.0)
    p.add_argument("--backoff", type=float, default=2.0)
    p.add_argument("--signal", choices=["kill", "term"], default="kill",
                   help="kill: SIGKILL (a crash); term: SIGTERM (a rolling restart's stop)")
    return p


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parser().parse_args())), indent=2))
