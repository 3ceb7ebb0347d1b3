"""CSMS load: N stations on one CSMS process, steady meter values, then reconnect storms.

    .venv/bin/python bench/csms_load.py --stations 100 1000 10000
    .venv/bin/python bench/csms_load.py --stations 1000 --repeat 3 --json out.json

For each N, on a fresh database:
1. The CSMS runs as its own process (`csms serve` on the embedded PostgreSQL of a temporary
   folder, or on DATABASE_URL), so its peak RSS and CPU are read from /proc apart from the
   load generator's. N stations and one id token are provisioned first through the CSMS's
   store API. scrypt is slow on purpose (~50 ms), so one password is hashed once and that
   hash is stored for all N stations; each station still costs the CSMS one scrypt
   verification the first time it connects (the cache is keyed by station).
2. Set-up: every station connects (ocpp2.0.1, Basic auth), sends BootNotification,
   StatusNotification and TransactionEvent Started (ramped, at most --ramp-concurrency at a
   time).
3. Steady load (--steady-s): each station sends one TransactionEvent Updated with meter
   values (energy register, power, current on 3 phases) per --meter-interval-s, plus
   Heartbeats at the interval the CSMS returned in its boot answer, phases spread evenly.
   Round trip = CALL sent -> CALLRESULT received, measured in the generator.
4. Capacity burst (--burst-s): every station sends TransactionEvent Updated back to back,
   to show the headroom over the steady rate (throughput only; its latencies are queueing).
5. Warm storm: every station's TCP connection is aborted at the same instant and each
   reconnects at once with BootNotification + StatusNotification. The CSMS process keeps
   running, so the password check hits its in-process cache.
6. Cold storm (--cold, default on): the CSMS is restarted, then every station reconnects at
   once; now the cache is empty and each handshake costs one scrypt verification.
   After each storm the database is checked: every station's last_boot_at and firmware
   version are from the storm, and its connector row was updated by it.

The load generator is a minimal OCPP-J client on `websockets` (one coroutine per station,
one CALL in flight, no reader task), in --workers processes. It speaks to 127.0.0.1 only.
Everything is bounded by timeouts and the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-station-password-0001"
CHOSEN_PASSWORDS = False  # set from --chosen-passwords
TOKEN = "BENCH-TOKEN-0001"
PREFIX = "BENCH"
CALL_TIMEOUT_S = 60.0


def station_id(i: int) -> str:
    return f"{PREFIX}{i:06d}"


def now_ocpp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# =========================================================================================
# Load generator (runs in worker processes: `csms_load.py --worker ...`)
# =========================================================================================


class CallRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class Sim:
    """One simulated station: its socket and counters. Calls are strictly sequential."""

    index: int
    sid: str
    ws: Any = None
    next_id: int = 0
    seq_no: int = 0
    energy_wh: float = 0.0
    tx_id: str = ""


@dataclass
class Tally:
    """Round trips (seconds) by action, errors by kind, for one phase."""

    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    answered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"latency": dict(self.latency), "errors": dict(self.errors), "sent": self.sent,
                "answered": self.answered}


class Generator:
    def __init__(self, url: str, first: int, count: int, total: int) -> None:
        self.url = url
        self.total = total
        self.sims = [Sim(i, station_id(i)) for i in range(first, first + count)]
        self.heartbeat_s = 300.0
        self.lag_max = 0.0

    # -- wire ------------------------------------------------------------------------------

    async def connect(self, sim: Sim, tally: Tally, open_timeout: float) -> None:
        from websockets.asyncio.client import connect

        raw = f"{sim.sid}:{PASSWORD}".encode()
        started = time.monotonic()
        sim.ws = await connect(
            f"{self.url}/{sim.sid}",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers={"Authorization": "Basic " + base64.b64encode(raw).decode()},
            compression=None,
            ping_interval=None,
            open_timeout=open_timeout,
            close_timeout=2,
            max_size=2**20,
            proxy=None,
        )
        tally.latency["handshake"].append(time.monotonic() - started)

    async def call(self, sim: Sim, action: str, payload: dict[str, Any], tally: Tally) -> Any:
        sim.next_id += 1
        message_id = str(sim.next_id)
        frame = json.dumps([2, message_id, action, payload], separators=(",", ":"))
        tally.sent += 1
        started = time.monotonic()
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await sim.ws.send(frame)
            while True:
                msg = json.loads(await sim.ws.recv())
                if msg[0] == 2:  # the CSMS calls us: not part of this benchmark
                    await sim.ws.send(json.dumps([4, msg[1], "NotImplemented", "", {}]))
                    continue
                if msg[1] == message_id:
                    break
        elapsed = time.monotonic() - started
        if msg[0] == 4:
            raise CallRefused(f"{action}:{msg[2]}")
        tally.answered += 1
        tally.latency[action].append(elapsed)
        return msg[2]

    # -- messages --------------------------------------------------------------------------

    async def boot(self, sim: Sim, tally: Tally, firmware: str) -> None:
        answer = await self.call(sim, "BootNotification", {
            "chargingStation": {"model": "Bench-22", "vendorName": "BenchCo",
                                "serialNumber": f"SN-{sim.sid}", "firmwareVersion": firmware},
            "reason": "PowerUp",
        }, tally)
        if answer.get("status") != "Accepted":
            raise CallRefused(f"boot:{answer.get('status')}")
        self.heartbeat_s = float(answer.get("interval") or self.heartbeat_s)

    async def status(self, sim: Sim, tally: Tally) -> None:
        await self.call(sim, "StatusNotification", {
            "timestamp": now_ocpp(), "connectorStatus": "Occupied", "evseId": 1,
            "connectorId": 1,
        }, tally)

    async def start_transaction(self, sim: Sim, tally: Tally) -> None:
        sim.tx_id = f"{sim.sid}-{uuid.uuid4().hex[:8]}"
        sim.seq_no = 0
        sim.energy_wh = 1000.0 + sim.index
        answer = await self.call(sim, "TransactionEvent", {
            "eventType": "Started", "timestamp": now_ocpp(), "triggerReason": "Authorized",
            "seqNo": sim.seq_no,
            "transactionInfo": {"transactionId": sim.tx_id, "chargingState": "Charging"},
            "idToken": {"idToken": TOKEN, "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": now_ocpp(), "sampledValue": [{
                "value": sim.energy_wh, "context": "Transaction.Begin",
                "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"},
            }]}],
        }, tally)
        if answer.get("idTokenInfo", {}).get("status") != "Accepted":
            raise CallRefused(f"token:{answer.get('idTokenInfo')}")

    async def meter_value(self, sim: Sim, tally: Tally) -> None:
        sim.seq_no += 1
        sim.energy_wh += 183.3  # 11 kW for a minute
        ts = now_ocpp()

        def sample(measurand: str, value: float, unit: str, phase: str | None = None) -> dict:
            s: dict[str, Any] = {"value": value, "context": "Sample.Periodic",
                                 "measurand": measurand, "unitOfMeasure": {"unit": unit}}
            if phase:
                s["phase"] = phase
            return s

        await self.call(sim, "TransactionEvent", {
            "eventType": "Updated", "timestamp": ts, "triggerReason": "MeterValuePeriodic",
            "seqNo": sim.seq_no,
            "transactionInfo": {"transactionId": sim.tx_id, "chargingState": "Charging"},
            "meterValue": [{"timestamp": ts, "sampledValue": [
                sample("Energy.Active.Import.Register", round(sim.energy_wh, 1), "Wh"),
                sample("Power.Active.Import", 11000.0, "W"),
                sample("Current.Import", 15.9, "A", "L1"),
                sample("Current.Import", 16.0, "A", "L2"),
                sample("Current.Import", 15.8, "A", "L3"),
            ]}],
        }, tally)

    async def heartbeat(self, sim: Sim, tally: Tally) -> None:
        await self.call(sim, "Heartbeat", {}, tally)

    # -- phases ----------------------------------------------------------------------------

    async def start_transactions(self, concurrency: int) -> dict[str, Any]:
        """Each connected station starts a transaction (ramped: not part of any storm)."""
        tally = Tally()
        gate = asyncio.Semaphore(concurrency)

        async def one(sim: Sim) -> None:
            async with gate:
                try:
                    await self.start_transaction(sim, tally)
                except Exception as exc:  # counted
                    tally.errors[kind(exc)] += 1

        started = time.monotonic()
        await asyncio.gather(*(one(s) for s in self.sims if s.ws is not None))
        return {"phase": "start", "elapsed": time.monotonic() - started, **tally.as_dict()}

    async def steady(self, t0: float, duration: float, meter_s: float) -> dict[str, Any]:
        """Open loop: each station sends on its own clock, whatever the answers' timing."""
        tally = Tally()
        loop = asyncio.get_running_loop()
        t_end = t0 + duration
        late: list[float] = []

        async def one(sim: Sim) -> None:
            share = sim.index / self.total
            next_meter = t0 + share * meter_s
            next_beat = t0 + ((sim.index + 0.5) / self.total) * self.heartbeat_s
            while True:
                due = min(next_meter, next_beat)
                if due >= t_end:
                    return
                await asyncio.sleep(max(0.0, due - loop.time()))
                late.append(loop.time() - due)
                try:
                    if next_meter <= next_beat:
                        next_meter += meter_s
                        await self.meter_value(sim, tally)
                    else:
                        next_beat += self.heartbeat_s
                        await self.heartbeat(sim, tally)
                except Exception as exc:  # counted
                    tally.errors[kind(exc)] += 1

        await asyncio.gather(*(one(s) for s in self.sims if s.ws is not None))
        late.sort()
        return {"phase": "steady", "send_late_p99": pct(late, 99), "send_late_max":
                late[-1] if late else 0.0, **tally.as_dict()}

    async def burst(self, t0: float, duration: float) -> dict[str, Any]:
        """Closed loop: every station sends meter values back to back until the end."""
        tally = Tally()
        loop = asyncio.get_running_loop()
        t_end = t0 + duration

        async def one(sim: Sim) -> None:
            await asyncio.sleep(max(0.0, t0 - loop.time()))
            while loop.time() < t_end:
                try:
                    await self.meter_value(sim, tally)
                except Exception as exc:  # counted
                    tally.errors[kind(exc)] += 1
                    return

        await asyncio.gather(*(one(s) for s in self.sims if s.ws is not None))
        return {"phase": "burst", "finished_at": loop.time(), **tally.as_dict()}

    async def storm(self, t0: float, abort: bool, firmware: str, timeout: float,
                    backoff: tuple[float, float, float]) -> dict:
        """Every station drops its connection at t0 and reconnects at once; a failed attempt
        is retried the way OCPP 2.0.1 stations do (B10, RetryBackOff*): wait the minimum,
        doubled at each attempt up to a cap, plus a random share."""
        tally = Tally()
        loop = asyncio.get_running_loop()
        done: list[float] = []
        retries = Counter[str]()
        wait_min, wait_max, spread = backoff

        async def one(sim: Sim) -> None:
            await asyncio.sleep(max(0.0, t0 - loop.time()))
            if abort and sim.ws is not None:
                sim.ws.transport.abort()  # network loss: no close handshake
            sim.ws = None
            deadline = t0 + timeout
            attempt = 0
            while loop.time() < deadline:
                try:
                    await self.connect(sim, tally, open_timeout=30.0)
                    await self.boot(sim, tally, firmware)
                    await self.status(sim, tally)
                    done.append(loop.time() - t0)
                    return
                except Exception as exc:  # counted, retried like a station
                    retries[kind(exc)] += 1
                    await close_quietly(sim)
                    wait = min(wait_max, wait_min * 2**attempt) + random.uniform(0, spread)
                    attempt += 1
                    await asyncio.sleep(wait)
            tally.errors["gave_up"] += 1

        await asyncio.gather(*(one(s) for s in self.sims))
        return {"phase": "storm", "done": done, "retries": dict(retries), **tally.as_dict()}

    async def close_all(self) -> None:
        await asyncio.gather(*(close_quietly(s) for s in self.sims))

    async def watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.1)
            self.lag_max = max(self.lag_max, loop.time() - before - 0.1)


async def close_quietly(sim: Sim) -> None:
    ws, sim.ws = sim.ws, None
    if ws is not None:
        with contextlib.suppress(Exception):
            ws.transport.abort()


def kind(exc: BaseException) -> str:
    if isinstance(exc, CallRefused):
        return exc.code
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"{type(exc).__name__}{f':{status}' if status else ''}"


async def worker_main(args: argparse.Namespace) -> None:
    gen = Generator(args.url, args.first, args.count, args.total)
    lag = asyncio.create_task(gen.watch_lag())
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        gen.lag_max = 0.0
        op = cmd["op"]
        if op == "start":
            result = await gen.start_transactions(cmd["concurrency"])
        elif op == "steady":
            result = await gen.steady(cmd["t0"], cmd["duration"], cmd["meter_s"])
        elif op == "burst":
            result = await gen.burst(cmd["t0"], cmd["duration"])
        elif op == "storm":
            result = await gen.storm(cmd["t0"], cmd["abort"], cmd["firmware"], cmd["timeout"],
                                     tuple(cmd["backoff"]))
        elif op == "quit":
            break
        else:
            result = {"error": f"unknown op {op}"}
        result["loop_lag_max"] = gen.lag_max
        # the generator's own heap (thousands of connections) must not pause its clock:
        # collect between phases, then keep it out of the collector during the next one
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    lag.cancel()
    await gen.close_all()


# =========================================================================================
# Orchestrator
# =========================================================================================


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def raise_open_files(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        print(f"warning: open-file limit {want} < {need} needed", file=sys.stderr)
    return want


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(run: Run) -> int | None:
    """The CSMS process's resident memory now (MB), None when it is not running."""
    return round(status_kb(run.csms.pid, "VmRSS") / 1024) if run.csms else None


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat, all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def postgres_pids(postmaster: int | None) -> list[int]:
    if postmaster is None:
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                pids.append(int(entry.name))
    return pids


class Meter:
    """CPU seconds used by the CSMS, PostgreSQL and the generators between two marks."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.t = time.monotonic()
        self.cpu = self._read()

    def _read(self) -> dict[str, float]:
        r = self.run
        return {
            "machine": machine_busy_seconds(),
            "csms": cpu_seconds(r.csms.pid) if r.csms else 0.0,
            "postgres": sum(cpu_seconds(p) for p in postgres_pids(r.postmaster)),
            "generator": sum(cpu_seconds(w.pid) for w in r.workers),
        }

    def done(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.t
        now = self._read()
        used = {k: 100 * (now[k] - self.cpu[k]) / elapsed for k in now}
        # what other processes on this machine took meanwhile (a noisy neighbour skews all)
        used["others"] = max(0.0, used.pop("machine") - used["csms"] - used["postgres"]
                             - used["generator"])
        return {f"cpu_{k}_pct": round(v, 1) for k, v in used.items()}


def gc_pauses(paths: list[str], phases: list[tuple[str, float]]) -> dict[str, Any]:
    """The CSMS's own log of collections of 100 ms or more and of the policy's full passes
    (csms/collector.py), by phase: a full pass is also logged as a slow generation-2
    collection, so `full_passes` tells the policy's pauses from CPython's own."""

    def phase_at(line: str) -> str:
        at = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        found = "before"
        for name, started in phases:
            if at >= started:
                found = name
        return found

    slow: list[tuple[str, str, float]] = []
    full: list[tuple[str, float]] = []
    for p in paths:
        for line in Path(p).open():
            if "csms.stopped" in line:
                break  # collections at exit (everything unfrozen) keep no station waiting
            secs = re.search(r"(?<![\w])seconds=([\d.]+)", line)
            if "gc.slow_collection" in line:
                gen = re.search(r"\bgeneration=(\d)", line)
                if gen and secs:
                    slow.append((phase_at(line), gen.group(1), float(secs.group(1))))
            elif "gc.full_collection" in line and secs:
                full.append((phase_at(line), float(secs.group(1))))
    by_phase: dict[str, dict[str, Any]] = {}

    def entry_for(phase: str) -> dict[str, Any]:
        return by_phase.setdefault(phase, {"count": 0, "max_s": 0.0, "total_s": 0.0,
                                           "by_generation": Counter(), "full_passes": 0})

    for phase, gen, secs in slow:
        entry = entry_for(phase)
        entry["count"] += 1
        entry["by_generation"][gen] += 1
        entry["max_s"] = max(entry["max_s"], secs)
        entry["total_s"] = round(entry["total_s"] + secs, 3)
    for phase, _ in full:
        entry_for(phase)["full_passes"] += 1
    for entry in by_phase.values():
        entry["by_generation"] = dict(entry["by_generation"])
    return {"slow_collections": len(slow),
            "max_pause_s": max((s for _, _, s in slow), default=0.0),
            "slow_by_generation": dict(Counter(g for _, g, _ in slow)),
            "full_passes": [(phase, secs) for phase, secs in full],
            "slow_by_phase": by_phase}


def keep_logs(paths: list[str], into: Path, prefix: str) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy(p, into / f"{prefix}-{Path(p).name}")


def open_log(path: Path) -> Any:
    return path.open("w")


def count_errors(paths: list[str]) -> int:
    return sum(1 for p in paths for line in Path(p).open() if "[error" in line.lower())


def save(path: str, results: list[dict[str, Any]]) -> None:
    Path(path).write_text(json.dumps(results, indent=1))


@dataclass
class Run:
    n: int
    url: str
    tmp: Path
    postmaster: int | None
    port: int = 0
    csms: asyncio.subprocess.Process | None = None
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)
    log_files: list[Any] = field(default_factory=list)


async def provision(url: str, n: int) -> float:
    """Stations and a token through the CSMS's own store (which also migrates the schema)."""
    from csms.passwords import hash_generated, hash_password
    from csms.store import Store, open_database

    started = time.monotonic()
    # Default: passwords as `csms stations add` generates them (fast salted SHA-256);
    # --chosen-passwords: as an operator types them (scrypt, ~50 ms each to verify).
    # Hashed once for all N: the hash is per password, the check per station.
    hashed = hash_password(PASSWORD) if CHOSEN_PASSWORDS else hash_generated(PASSWORD)
    db = await open_database(url, ROOT / "unused", min_size=8, max_size=8)
    try:
        store = Store(db.pool)
        now = datetime.now(UTC)
        await store.tokens.add(TOKEN, "ISO14443", now)
        for chunk in range(0, n, 500):
            await asyncio.gather(*(
                store.stations.add(station_id(i), hashed, now)
                for i in range(chunk, min(n, chunk + 500))
            ))
    finally:
        await db.close()
    return time.monotonic() - started


async def start_csms(run: Run, args: argparse.Namespace) -> None:
    config = run.tmp / "csms.toml"
    config.write_text(
        "[server]\n"
        f"max_message_bytes = 65536\ncall_timeout_s = 30.0\nping_interval_s = 60.0\n"
        "[boot]\n"
        f"heartbeat_interval_s = {args.heartbeat_s}\n"
        "[api]\nport = 0\n"
        "[log]\n"
        f'level = "{args.csms_log_level}"\n'
        + "[gc]\n"
        + ("" if args.gc_freeze_s is None else f"freeze_interval_s = {args.gc_freeze_s}\n")
        + ("" if args.gc_full_s is None else f"full_interval_s = {args.gc_full_s}\n")
    )
    log = open_log(run.tmp / f"csms-{len(run.log_files)}.log")
    run.log_files.append(log)
    run.csms = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms.cli", "serve", "--config", str(config),
        "--database-url", run.url, "--host", "127.0.0.1", "--port", str(run.port),
        cwd=run.tmp, stdout=asyncio.subprocess.PIPE, stderr=log,
    )
    assert run.csms.stdout is not None
    line = await asyncio.wait_for(run.csms.stdout.readline(), 60)
    if b"listening" not in line:
        raise RuntimeError(f"CSMS did not start: {line!r}; see {log.name}")


async def stop_csms(run: Run) -> float:
    if run.csms is None:
        return 0.0
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        run.csms.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(run.csms.wait(), 120)
    except TimeoutError:
        run.csms.kill()
        await run.csms.wait()
    run.csms = None
    return time.monotonic() - started


async def start_workers(run: Run, count: int) -> None:
    per = -(-run.n // count)
    for w in range(count):
        first = w * per
        size = min(per, run.n - first)
        if size <= 0:
            break
        run.workers.append(await asyncio.create_subprocess_exec(
            sys.executable, SCRIPT, "--worker",
            "--url", f"ws://127.0.0.1:{run.port}/ocpp", "--first", str(first),
            "--count", str(size), "--total", str(run.n),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=2**28,
        ))


async def ask(run: Run, cmd: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    label = cmd.get("firmware", "").split("-")[0]
    print(f"   {cmd['op']} {label} (CSMS pid {run.csms.pid if run.csms else '-'})",
          file=sys.stderr, flush=True)
    line = (json.dumps(cmd) + "\n").encode()
    for w in run.workers:
        assert w.stdin is not None
        w.stdin.write(line)
        await w.stdin.drain()

    async def answer(w: asyncio.subprocess.Process) -> dict[str, Any]:
        assert w.stdout is not None
        raw = await w.stdout.readline()
        if not raw:
            raise RuntimeError("a load generator died")
        return json.loads(raw)

    return await asyncio.wait_for(asyncio.gather(*(answer(w) for w in run.workers)), timeout)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    latency: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for r in results:
        for action, values in r["latency"].items():
            latency[action].extend(values)
        errors.update(r["errors"])
    everything = sorted(v for action, vs in latency.items() if action != "handshake" for v in vs)
    summary: dict[str, Any] = {
        "sent": sum(r["sent"] for r in results),
        "answered": sum(r["answered"] for r in results),
        "errors": dict(errors),
        "p50_ms": round(1000 * pct(everything, 50), 1),
        "p99_ms": round(1000 * pct(everything, 99), 1),
        "max_ms": round(1000 * everything[-1], 1) if everything else None,
        "generator_loop_lag_max_ms": round(1000 * max(r["loop_lag_max"] for r in results), 1),
        "by_action": {},
    }
    for action, values in sorted(latency.items()):
        values.sort()
        summary["by_action"][action] = {
            "n": len(values), "p50_ms": round(1000 * pct(values, 50), 1),
            "p99_ms": round(1000 * pct(values, 99), 1),
        }
    return summary


async def verify_storm(url: str, n: int, since: datetime, firmware: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        booted = await conn.fetchval(
            "SELECT count(*) FROM stations WHERE id LIKE $1 AND last_boot_at >= $2"
            " AND firmware_version = $3", PREFIX + "%", since, firmware)
        status = await conn.fetchval(
            "SELECT count(*) FROM connectors WHERE station_id LIKE $1 AND updated_at >= $2",
            PREFIX + "%", since)
        online = await conn.fetchval(
            "SELECT count(*) FROM stations WHERE id LIKE $1 AND online", PREFIX + "%")
    finally:
        await conn.close()
    return {"boot_persisted": booted, "status_persisted": status, "online": online,
            "all_persisted": booted == n and status == n}


async def count_meter_rows(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM meter_values"))
    finally:
        await conn.close()


async def run_storm(run: Run, label: str, abort: bool, timeout: float,
                    args: argparse.Namespace) -> dict[str, Any]:
    firmware = f"{label}-{uuid.uuid4().hex[:6]}"
    since = datetime.now(UTC)
    meter = Meter(run)
    t0 = time.monotonic() + 0.5
    backoff = (args.retry_min_s, args.retry_max_s, args.retry_random_s)
    results = await ask(run, {"op": "storm", "t0": t0, "abort": abort, "firmware": firmware,
                              "timeout": timeout, "backoff": backoff}, timeout + 120)
    done = sorted(t for r in results for t in r["done"])
    retries: Counter[str] = Counter()
    for r in results:
        retries.update(r["retries"])
    out = {
        "answered_stations": len(done),
        "time_all_answered_s": round(done[-1], 2) if len(done) == run.n else None,
        "time_p50_station_s": round(pct(done, 50), 2),
        "time_p99_station_s": round(pct(done, 99), 2),
        "retries": dict(retries),
        **merge(results),
        **meter.done(),
    }
    out["csms_rss_mb"] = rss_mb(run)
    out.update(await verify_storm(run.url, run.n, since, firmware))
    return out


async def one_size(n: int, args: argparse.Namespace, base_url: str, postmaster: int | None,
                   tmp: Path) -> dict[str, Any]:
    import asyncpg

    name = f"bench_{n}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = with_database(base_url, name)
    run = Run(n, url, tmp, postmaster, port=free_port())
    result: dict[str, Any] = {"stations": n, "workers": args.workers}
    phases: list[tuple[str, float]] = []  # (phase, wall clock at its start), for the CSMS log
    try:
        result["provision_s"] = round(await provision(url, n), 1)
        await start_csms(run, args)
        await start_workers(run, min(args.workers, n))

        # the first connection of every station, all at once, to a fresh CSMS process:
        # a storm with an empty password cache (one scrypt verification per station)
        phases.append(("first_connect", time.time()))
        result["storm_first_connect"] = await run_storm(
            run, "first", False, args.cold_timeout_s, args)
        phases.append(("start", time.time()))
        meter = Meter(run)
        start = await ask(run, {"op": "start", "concurrency": args.ramp_concurrency}, 900)
        result["start_transactions"] = {
            "elapsed_s": round(max(r["elapsed"] for r in start), 1), **merge(start),
            **meter.done()}
        rows_before = await count_meter_rows(url)

        phases.append(("steady", time.time()))
        rss_before = rss_mb(run) or 0
        meter = Meter(run)
        steady, windows = [], []
        window_s = args.steady_s / args.steady_windows
        for _ in range(args.steady_windows):  # back to back; one window unless soaking
            t0 = time.monotonic() + 1.0
            part = await ask(run, {"op": "steady", "t0": t0, "duration": window_s,
                                   "meter_s": args.meter_interval_s}, window_s + 300)
            steady.extend(part)
            one = merge(part)
            windows.append({
                "p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"], "max_ms": one["max_ms"],
                "messages_per_s": round(one["answered"] / window_s, 1),
                "errors": sum(one["errors"].values()),
                "csms_rss_mb": rss_mb(run) or 0})
        merged = merge(steady)
        ta = merged["by_action"].get("TransactionEvent", {}).get("n", 0)
        rows_after = await count_meter_rows(url)
        result["steady"] = {
            "duration_s": args.steady_s,
            "messages_per_s": round(merged["answered"] / args.steady_s, 1),
            "offered_per_s": round(n / args.meter_interval_s
                                   + n / float(args.heartbeat_s), 1),
            "meter_rows_persisted": rows_after - rows_before,
            "meter_rows_expected": ta * 5,
            "send_late_max_ms": round(1000 * max(r["send_late_max"] for r in steady), 1),
            **merged, **meter.done(),
            "csms_rss_mb_before": rss_before,  # growth over the phase: memory kept
            "csms_rss_mb": rss_mb(run) or 0,
        }
        if len(windows) > 1:
            result["steady"]["windows"] = windows

        phases.append(("burst", time.time()))
        if args.burst_s > 0:
            meter = Meter(run)
            t0 = time.monotonic() + 0.5
            burst = await ask(run, {"op": "burst", "t0": t0, "duration": args.burst_s},
                              args.burst_s + 300)
            merged = merge(burst)
            elapsed = max(r["finished_at"] for r in burst) - t0
            result["burst"] = {"messages_per_s": round(merged["answered"] / elapsed, 1),
                               "elapsed_s": round(elapsed, 1), "answered": merged["answered"],
                               "errors": merged["errors"], "p50_ms": merged["p50_ms"],
                               **meter.done()}

        phases.append(("storm_warm", time.time()))
        result["storm_warm"] = await run_storm(run, "warm", True, args.storm_timeout_s, args)
        assert run.csms is not None
        result["csms_peak_rss_mb"] = round(status_kb(run.csms.pid, "VmHWM") / 1024)

        if args.restart_storm if args.restart_storm is not None else n <= 1000:
            phases.append(("storm_restart", time.time()))
            result["csms_stop_s"] = round(await stop_csms(run), 1)
            await start_csms(run, args)
            result["storm_restart"] = await run_storm(
                run, "restart", False, args.cold_timeout_s, args)
            assert run.csms is not None
            result["csms_peak_rss_mb_after_restart"] = round(
                status_kb(run.csms.pid, "VmHWM") / 1024)
        phases.append(("end", time.time()))
        with contextlib.suppress(Exception):
            await ask(run, {"op": "quit"}, 60)
    finally:
        for w in run.workers:
            if w.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.kill()
                await w.wait()
        await stop_csms(run)
        for f in run.log_files:
            f.close()
        result["csms_log_errors"] = count_errors([f.name for f in run.log_files])
        result["csms_gc"] = gc_pauses([f.name for f in run.log_files], phases)
        if args.keep_logs:
            keep_logs([f.name for f in run.log_files], Path(args.keep_logs), name)
        admin = await asyncpg.connect(base_url)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    return result


def with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def headline(r: dict[str, Any]) -> str:
    s, w, f = r["steady"], r["storm_warm"], r["storm_first_connect"]
    c = r.get("storm_restart")
    parts = [
        f"N={r['stations']}: steady {s['messages_per_s']} msg/s, p50 {s['p50_ms']} ms,"
        f" p99 {s['p99_ms']} ms, errors {sum(s['errors'].values())},"
        f" CSMS CPU {s['cpu_csms_pct']}%, peak RSS {r['csms_peak_rss_mb']} MB",
        f"GC pauses >= 100 ms: {r['csms_gc']['slow_collections']}"
        f" (max {r['csms_gc']['max_pause_s']} s; in the steady phase:"
        f" {r['csms_gc']['slow_by_phase'].get('steady', {}).get('count', 0)})",
    ]
    if "burst" in r:
        parts.append(f"capacity {r['burst']['messages_per_s']} msg/s")
    parts.append(f"first-connect storm {f['time_all_answered_s']} s ({f['answered_stations']}"
                 f" answered, persisted: {f['all_persisted']})")
    parts.append(f"warm storm {w['time_all_answered_s']} s"
                 f" (persisted: {w['all_persisted']})")
    if c:
        parts.append(f"restart storm {c['time_all_answered_s']} s ({c['answered_stations']}"
                     f" answered, persisted: {c['all_persisted']})")
    return "; ".join(parts)


async def main(args: argparse.Namespace) -> int:
    global CHOSEN_PASSWORDS
    CHOSEN_PASSWORDS = args.chosen_passwords
    limit = raise_open_files(max(args.stations) + 2048)
    base_url = os.environ.get("DATABASE_URL", "")
    results = []
    with tempfile.TemporaryDirectory(prefix="csms-load-") as tmp_name:
        tmp = Path(tmp_name)
        server = None
        postmaster = None
        if not base_url:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
            base_url = server.get_uri()
            postmaster = int((tmp / "pg" / "postmaster.pid").read_text().split()[0])
        try:
            for n in args.stations:
                for rep in range(args.repeat):
                    print(f"-- N={n} run {rep + 1}/{args.repeat}", file=sys.stderr, flush=True)
                    r = await one_size(n, args, base_url, postmaster, tmp)
                    r["run"] = rep + 1
                    r["open_file_limit"] = limit
                    results.append(r)
                    print(headline(r), file=sys.stderr, flush=True)
                    if args.json:
                        save(args.json, results)
        finally:
            if server is not None:
                server.cleanup()
    print(json.dumps(results, indent=1))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stations", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--repeat", type=int, default=1, help="runs per N (quote the median)")
    p.add_argument("--workers", type=int, default=1, help="load generator processes")
    p.add_argument("--steady-s", type=float, default=120.0)
    p.add_argument("--steady-windows", type=int, default=1,
                   help="split the steady phase into this many windows, each reported with"
                   " its p99 and the CSMS's RSS at its end (a soak)")
    p.add_argument("--meter-interval-s", type=float, default=60.0)
    p.add_argument("--heartbeat-s", type=int, default=300,
                   help="interval the CSMS returns in its boot answer")
    p.add_argument("--burst-s", type=float, default=10.0, help="capacity burst (0 = skip)")
    p.add_argument("--ramp-concurrency", type=int, default=200)
    p.add_argument("--storm-timeout-s", type=float, default=180.0)
    p.add_argument("--restart-storm", action=argparse.BooleanOptionalAction, default=None,
                   help="also restart the CSMS and measure the storm once more with an empty"
                   " password cache (default: only for N <= 1000)")
    p.add_argument("--cold-timeout-s", type=float, default=420.0,
                   help="time bound of a storm with an empty password cache")
    p.add_argument("--retry-min-s", type=float, default=2.0,
                   help="storm: a station's first reconnect back-off (doubles per attempt)")
    p.add_argument("--retry-max-s", type=float, default=60.0, help="storm: back-off cap")
    p.add_argument("--retry-random-s", type=float, default=5.0,
                   help="storm: random share added to each back-off")
    p.add_argument("--chosen-passwords", action="store_true",
                   help="store station passwords as operator-chosen ones (scrypt) instead of"
                   " generated ones (salted SHA-256, the default of `csms stations add`)")
    p.add_argument("--csms-log-level", default="info")
    p.add_argument("--keep-logs", metavar="DIR", help="copy the CSMS's log files here")
    p.add_argument("--gc-freeze-s", type=float,
                   help="the CSMS's [gc] freeze_interval_s (0 = CPython's default collector)")
    p.add_argument("--gc-full-s", type=float,
                   help="the CSMS's [gc] full_interval_s: how much garbage a full pass finds")
    p.add_argument("--json", help="also write the results to this file")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--total", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        asyncio.run(worker_main(arguments))
        sys.exit(0)
    sys.path.insert(0, str(ROOT))
    sys.exit(asyncio.run(main(arguments)))
