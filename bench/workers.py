"""Scale-out (issue 13): what `csms serve --workers 2` gives over `--workers 1`, and what a
CALL routed to another node costs.

    .venv/bin/python bench/workers.py                  # both parts, under 2 min
    .venv/bin/python bench/workers.py --part throughput --stations 200 --seconds 15
    .venv/bin/python bench/workers.py --part cross --calls 500

throughput: for each worker count, `csms serve --workers W` runs as its own process tree
on one PostgreSQL (embedded in a temporary folder, or DATABASE_URL) with the scheduler
and API off; --stations stations (no password: no scrypt in the way) connect through the
one port, boot (and with `--message meter` start a transaction), then each sends its
message back to back (one CALL in flight) for --seconds: a TransactionEvent Updated with 5
sampled values (`meter`, the default) or a Heartbeat. Messages/s over the window, the
round-trip p50/p99 seen by the generator, and the CPU the CSMS (its workers and
nats-server), PostgreSQL and the generator took in it. The generator is lean (plain
sockets on one epoll, see LeanStation) and runs in --generators processes of its own on
the same machine: on two cores every microsecond it spends is one the workers lack.

cross: two CSMS nodes in this process on one database and one nats-server (as the tests
run them); one station, on node b, answers TriggerMessage. --calls CALLs through node b
(local: the socket is there) and through node a (routed over NATS), one at a time;
p50/p99 of each, and of a bare NATS request/reply on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from csms.cluster.broker import EmbeddedBroker, free_port

CSMS = [sys.executable, "-m", "csms.cli"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def database() -> tuple[str, Any]:
    if url := os.environ.get("DATABASE_URL"):
        return url, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="bench-workers-")),
                                     cleanup_mode="delete")
    return server.get_uri(), server


async def fresh_database(admin_url: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


# -- throughput --------------------------------------------------------------------------


TOKEN = "BENCH-TOKEN-0001"
START_TX = ('{{"eventType":"Started","timestamp":"{ts}","triggerReason":"Authorized","seqNo":0,'
            '"transactionInfo":{{"transactionId":"{tx}","chargingState":"Charging"}},'
            '"idToken":{{"idToken":"' + TOKEN + '","type":"ISO14443"}},'
            '"evse":{{"id":1,"connectorId":1}}}}')
METER_TX = ('{{"eventType":"Updated","timestamp":"{ts}","triggerReason":"MeterValuePeriodic",'
            '"seqNo":{seq},"transactionInfo":{{"transactionId":"{tx}","chargingState":"Charging"}},'
            '"meterValue":[{{"timestamp":"{ts}","sampledValue":['
            '{{"value":{wh},"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
            '"unitOfMeasure":{{"unit":"Wh"}}}},'
            '{{"value":11000.0,"context":"Sample.Periodic","measurand":"Power.Active.Import",'
            '"unitOfMeasure":{{"unit":"W"}}}},'
            '{{"value":15.9,"context":"Sample.Periodic","measurand":"Current.Import",'
            '"unitOfMeasure":{{"unit":"A"}},"phase":"L1"}},'
            '{{"value":16.0,"context":"Sample.Periodic","measurand":"Current.Import",'
            '"unitOfMeasure":{{"unit":"A"}},"phase":"L2"}},'
            '{{"value":15.8,"context":"Sample.Periodic","measurand":"Current.Import",'
            '"unitOfMeasure":{{"unit":"A"}},"phase":"L3"}}]}}]}}')


class LeanStation:
    """One station's socket, driven by `generator`: frames built from templates and masked
    with one key per station (the server cannot tell), answers matched by their message id
    without parsing the JSON. A Python WebSocket client costs about as much CPU per
    Heartbeat as the CSMS does to answer it (measured: 2026-12-06), so on two cores it,
    not the CSMS, would set the figure."""

    def __init__(self, sid: str, host: str, port: int, path: str) -> None:
        self.sid = sid
        self.sock = socket.create_connection((host, port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path}/{sid} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           "Sec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{sid}: closed during the handshake")
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"{sid}: {head.splitlines()[0]!r}")
        self.mask = os.urandom(4)
        self.counter = 0
        self.seq = 0
        self.wh = 1000.0
        self.tx = f"{sid}-tx"
        self.pending = ""
        self.sent_at = 0.0

    def send(self, action: str, payload: str) -> None:
        self.counter += 1
        self.pending = str(self.counter)
        data = f'[2,"{self.pending}","{action}",{payload}]'.encode()
        n = len(data)
        header = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
        key = (self.mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
            n, "little")
        self.sent_at = time.perf_counter()
        self.sock.sendall(header + self.mask + masked)

    def frames(self, chunk: bytes) -> list[bytes]:
        """Complete frames' payloads in what arrived (the server does not mask)."""
        self.buffer += chunk
        out = []
        while len(self.buffer) >= 2:
            n, at = self.buffer[1] & 0x7F, 2
            if n == 126:
                if len(self.buffer) < 4:
                    break
                n, at = struct.unpack_from("!H", self.buffer, 2)[0], 4
            elif n == 127:
                if len(self.buffer) < 10:
                    break
                n, at = struct.unpack_from("!Q", self.buffer, 2)[0], 10
            if len(self.buffer) < at + n:
                break
            if self.buffer[0] & 0x0F == 1:  # text; pings are off, nothing else comes
                out.append(self.buffer[at:at + n])
            self.buffer = self.buffer[at + n:]
        return out

    def answer(self, timeout: float = 60) -> bytes:
        """Blocking, for the set-up: the answer to the CALL just sent."""
        self.sock.settimeout(timeout)
        while True:
            for frame in self.frames(self.sock.recv(65536)):
                if frame.startswith(b"[3,") or frame.startswith(b"[4,"):
                    if frame.split(b'"', 2)[1].decode() == self.pending:
                        return frame

    def next_message(self, message: str) -> None:
        if message == "heartbeat":
            self.send("Heartbeat", "{}")
            return
        self.seq += 1
        self.wh += 183.3
        self.send("TransactionEvent", METER_TX.format(
            ts=now_ocpp(), seq=self.seq, tx=self.tx, wh=round(self.wh, 1)))


def now_ocpp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def generator(url: str, ids: list[str], seconds: float, start_at: float, message: str,
              out: Any) -> None:
    """One load-generator process: its stations' round trips in the window, one CALL in
    flight per station, every socket on one epoll (no event loop, no JSON parse)."""
    parts = urlsplit(url)
    stations: dict[int, LeanStation] = {}
    errors: list[str] = []
    for sid in ids:
        try:
            st = LeanStation(sid, parts.hostname or "127.0.0.1", parts.port or 80, parts.path)
            st.send("BootNotification", '{"reason":"PowerUp","chargingStation":'
                    '{"model":"bench","vendorName":"bench"}}')
            assert b'"Accepted"' in st.answer(), f"{sid}: boot not accepted"
            if message == "meter":
                st.send("TransactionEvent", START_TX.format(ts=now_ocpp(), tx=st.tx))
                assert b'"Accepted"' in st.answer(), f"{sid}: transaction not accepted"
            st.sock.setblocking(False)
            stations[st.sock.fileno()] = st
        except Exception as exc:  # counted: a station that could not start
            errors.append(repr(exc))
    poller = select.epoll()
    for fd in stations:
        poller.register(fd, select.EPOLLIN)
    time.sleep(max(0.0, start_at - time.time()))  # all start together
    end = time.perf_counter() + seconds
    rtts: list[float] = []
    refused = 0
    cpu_start = time.process_time()
    for st in stations.values():
        st.next_message(message)
    while time.perf_counter() < end:
        for fd, _ in poller.poll(0.5):
            st = stations[fd]
            try:
                chunk = st.sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                poller.unregister(fd)
                errors.append(f"{st.sid}: closed by the CSMS")
                continue
            for frame in st.frames(chunk):
                if frame.split(b'"', 2)[1].decode() != st.pending:
                    continue  # a CALL from the CSMS: not answered (the API and scheduler are off)
                rtts.append(time.perf_counter() - st.sent_at)
                refused += frame.startswith(b"[4,")
                if time.perf_counter() < end:
                    st.next_message(message)
    cpu = time.process_time() - cpu_start
    for st in stations.values():
        st.sock.close()
    out.put({"rtts": rtts, "errors": errors[:3], "failed": len(errors), "refused": refused,
             "cpu_s": cpu})


async def throughput(admin_url: str, workers: int, stations: int, seconds: float,
                     generators: int, message: str) -> dict[str, Any]:
    url = await fresh_database(admin_url)
    ids = [f"B{i:05}" for i in range(stations)]
    conn = await asyncpg.connect(url)
    proc = None
    port = free_port()
    try:
        proc = await asyncio.create_subprocess_exec(
            *CSMS, "migrate", "--database-url", url, stdout=asyncio.subprocess.DEVNULL)
        await proc.wait()
        await conn.executemany("INSERT INTO stations (id, created_at) VALUES ($1, now())",
                               [(i,) for i in ids])
        await conn.execute("INSERT INTO id_tokens (id_token, type, status, created_at)"
                           " VALUES ($1, 'ISO14443', 'Accepted', now())", TOKEN)
        config = Path(tempfile.mkdtemp()) / "bench.toml"
        config.write_text("[api]\nenabled = false\n[log]\nlevel = \"warning\"\n"
                          "[server]\nping_interval_s = 0\n")
        proc = await asyncio.create_subprocess_exec(
            *CSMS, "serve", "--workers", str(workers), "--config", str(config),
            "--database-url", url, "--host", "127.0.0.1", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        assert "CSMS listening" in line, line
        start_at = time.time() + 10 + stations / 100  # every station connected by then
        queue: Any = multiprocessing.get_context("spawn").Queue()
        chunks = [ids[g::generators] for g in range(generators)]
        procs = [multiprocessing.get_context("spawn").Process(
            target=generator, args=(f"ws://127.0.0.1:{port}/ocpp", chunk, seconds, start_at,
                                    message, queue)) for chunk in chunks]
        for p in procs:
            p.start()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_start, programs_start = tree_cpu_seconds(proc.pid), cpu_by_program()
        await asyncio.sleep(seconds)
        cpu_used = tree_cpu_seconds(proc.pid) - cpu_start
        programs = cpu_by_program()
        other = {name: round(programs[name] - programs_start.get(name, 0.0), 1)
                 for name in ("postgres", "nats-server") if name in programs}
        results = [await asyncio.to_thread(queue.get, True, 300) for _ in procs]
        for p in procs:
            p.join(30)
        rtts = [r for res in results for r in res["rtts"]]
        return {"workers": workers, "stations": stations, "seconds": seconds,
                "message": message,
                "messages": len(rtts), "per_s": round(len(rtts) / seconds),
                "p50_ms": round(pct(rtts, 50) * 1000, 2), "p99_ms": round(pct(rtts, 99) * 1000, 2),
                "csms_cpu_s": round(cpu_used, 1),
                "csms_cpu_us_per_message": round(cpu_used / max(1, len(rtts)) * 1e6),
                "generator_cpu_s": round(sum(r["cpu_s"] for r in results), 1),
                **{f"{name}_cpu_s": cpu for name, cpu in other.items()},
                "refused": sum(r["refused"] for r in results),
                "failed_stations": sum(r["failed"] for r in results),
                "errors": [e for r in results for e in r["errors"]][:3]}
    finally:
        await conn.close()
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)


def processes() -> list[tuple[int, int, str, float]]:
    """(pid, parent pid, program name, CPU seconds: user + system) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        found.append((int(entry.name), int(fields[1]), head.split("(", 1)[1],
                      (int(fields[11]) + int(fields[12])) / tick))
    return found


def cpu_by_program() -> dict[str, float]:
    """CPU of every process on the machine, summed by program name: what PostgreSQL's
    backends and nats-server took from the two cores."""
    total: dict[str, float] = {}
    for _, _, name, cpu in processes():
        total[name] = total.get(name, 0.0) + cpu
    return total


def tree_cpu_seconds(root: int) -> float:
    """CPU of `root` and its children: the CSMS workers (nats-server too)."""
    return sum(cpu for pid, ppid, _, cpu in processes() if root in (pid, ppid))


# -- cross-node command cost -------------------------------------------------------------


async def cross(admin_url: str, calls: int) -> dict[str, Any]:
    from csms.app import Csms
    from csms.config import ApiConfig, ClusterConfig, ServerConfig, load

    url = await fresh_database(admin_url)
    broker = await EmbeddedBroker.start()
    nodes: list[Any] = []
    try:
        import nats

        nc = await nats.connect(broker.url)

        async def echo(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.echo", cb=echo)
        bare = []
        for _ in range(calls):
            t = time.perf_counter()
            await nc.request("bench.echo", b'{"outcome":"ok","payload":{}}', timeout=5)
            bare.append(time.perf_counter() - t)
        await nc.close()
        # a data folder of its own: the CSMS makes its CA beside it (not in the repository)
        base = load(None, database_url=url,
                    data_dir=str(Path(tempfile.mkdtemp(prefix="bench-cross-")) / "pg"))
        for name in ("a", "b"):
            nodes.append(await Csms.start(replace(
                base, server=ServerConfig(host="127.0.0.1", port=0),
                api=ApiConfig(enabled=False),
                cluster=ClusterConfig(broker_url=broker.url, node=name))))
        a, b = nodes
        await b.store.stations.add("X1", None, b.clock.now())
        ws = await websockets.connect(f"ws://127.0.0.1:{b.ocpp.port}/ocpp/X1",
                                      subprotocols=["ocpp2.0.1"], ping_interval=None)  # type: ignore[list-item]

        async def answer() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

        answering = asyncio.create_task(answer())
        deadline = time.monotonic() + 30
        while not a.connections.is_connected("X1"):
            assert time.monotonic() < deadline, "node a never learnt of X1"
            await asyncio.sleep(0.05)
        timings: dict[str, list[float]] = {"local": [], "routed": []}
        for _ in range(calls):
            for kind, node in (("local", b), ("routed", a)):
                t = time.perf_counter()
                await node.commands.trigger_message("X1", "Heartbeat")
                timings[kind].append(time.perf_counter() - t)
        answering.cancel()
        await ws.close()
        summary = {k: {"p50_ms": round(pct(v, 50) * 1000, 3),
                       "p99_ms": round(pct(v, 99) * 1000, 3)} for k, v in timings.items()}
        summary["nats_echo"] = {"p50_ms": round(pct(bare, 50) * 1000, 3),
                                "p99_ms": round(pct(bare, 99) * 1000, 3)}
        return {"calls": calls, **summary}
    finally:
        for node in nodes:
            await node.stop()
        await broker.stop()


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["throughput", "cross", "both"], default="both")
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--generators", type=int, default=1)
    parser.add_argument("--message", choices=["heartbeat", "meter"], default="meter",
                        help="Heartbeats, or TransactionEvent Updated with 5 sampled values")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--json", help="write the results here too (--json=FILE)")
    args = parser.parse_args()
    if not (1 <= args.stations <= 5000 and 1 <= args.seconds <= 120
            and 1 <= args.calls <= 10_000 and 1 <= args.generators <= 8):
        parser.error("bounds: stations 1-5000, seconds 1-120, calls 1-10000, generators 1-8")
    admin_url, server = database()
    results: dict[str, Any] = {"cores": os.cpu_count(),
                               "load_before": os.getloadavg()[0]}
    try:
        if args.part in ("throughput", "both"):
            runs = [await throughput(admin_url, w, args.stations, args.seconds,
                                     args.generators, args.message) for w in (1, 2)]
            results["throughput"] = runs
            results["speedup"] = round(runs[1]["per_s"] / max(1, runs[0]["per_s"]), 2)
        if args.part in ("cross", "both"):
            results["cross"] = await cross(admin_url, args.calls)
    finally:
        results["load_after"] = os.getloadavg()[0]
        if server is not None:
            server.cleanup()
    return results


if __name__ == "__main__":
    found = asyncio.run(main())
    print(json.dumps(found, indent=2))
    if (target := next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--json=")),
                       None)):
        Path(target).write_text(json.dumps(found, indent=2))
