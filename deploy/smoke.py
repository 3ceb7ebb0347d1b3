"""Run the reference setup's HAProxy config (deploy/haproxy.cfg) for real, on loopback:
three `csms serve` nodes on one PostgreSQL and one nats-server, HAProxy in front, a
station through the one OCPP address, an API call through the one API address that
reaches it wherever it landed, then one node stopped: the station is back through
HAProxy on another node.

    .venv/bin/python deploy/smoke.py          # needs `haproxy` on PATH (apt install haproxy)

The config is used as shipped except for addresses: each `csms-N:9000` / `csms-N:8080`
becomes that node's loopback ports, the binds move to free ports, and health checks run
every second instead of five. Prints each step; exit status 0 when all passed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workers import database, fresh_database
from csms.cluster.broker import EmbeddedBroker, free_port

CSMS = [sys.executable, "-m", "csms.cli"]
HERE = Path(__file__).resolve().parent


def local_config(ocpp: list[int], api: list[int], front_ocpp: int, front_api: int) -> str:
    text = (HERE / "haproxy.cfg").read_text()
    for n in range(3):
        text = text.replace(f"csms-{n + 1}:9000 check port 8080",
                            f"127.0.0.1:{ocpp[n]} check port {api[n]}")
        text = text.replace(f"csms-{n + 1}:8080", f"127.0.0.1:{api[n]}")
    text = text.replace("bind :9000", f"bind 127.0.0.1:{front_ocpp}")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{front_api}")
    text = re.sub(r"inter 5s", "inter 1s", text)
    return text.replace("maxconn 200000", "maxconn 2000")


async def call(ws: Any, action: str, payload: dict[str, Any]) -> Any:
    message_id = uuid.uuid4().hex
    await ws.send(json.dumps([2, message_id, action, payload]))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame[0] == 2:  # a CALL from the CSMS (the TriggerMessage below)
            await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
            continue
        if frame[1] == message_id:
            return frame


async def station(url: str, got_calls: list[str], stop: asyncio.Event,
                  booted: asyncio.Event) -> None:
    """Boot, then answer the CSMS's CALLs until told to stop or the socket closes."""
    async with websockets.connect(url, subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                                  ping_interval=None) as ws:
        await call(ws, "BootNotification", {"reason": "PowerUp", "chargingStation": {
            "model": "smoke", "vendorName": "smoke"}})
        booted.set()
        while not stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if frame[0] == 2:
                got_calls.append(frame[2])
                await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))


async def within(event: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
        return True
    except TimeoutError:
        return False


async def all_up(http: httpx.AsyncClient) -> bool:
    """HAProxy's health checks mark a node up after two passes: wait for that (up to 30 s),
    seen as three answers in a row through the API address (round robin: every node)."""
    streak = 0
    for _ in range(60):
        try:
            ok = (await http.get("/api/health")).status_code == 200
        except httpx.HTTPError:
            ok = False
        streak = streak + 1 if ok else 0
        if streak >= 3:
            return True
        await asyncio.sleep(0.5)
    return False


async def main() -> int:
    if shutil.which("haproxy") is None:
        print("haproxy is not installed (apt install haproxy)")
        return 2
    admin_url, _server = database()
    url = await fresh_database(admin_url)
    broker = await EmbeddedBroker.start()
    folder = Path(tempfile.mkdtemp(prefix="deploy-smoke-"))
    ocpp, api = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
    front_ocpp, front_api = free_port(), free_port()
    procs: list[asyncio.subprocess.Process] = []
    ok = True

    def step(passed: bool, what: str) -> None:
        nonlocal ok
        ok = ok and passed
        print(f"{'ok  ' if passed else 'FAIL'} {what}", flush=True)

    try:
        migrate = await asyncio.create_subprocess_exec(*CSMS, "migrate", "--database-url", url)
        await migrate.wait()
        token = (await (await asyncio.create_subprocess_exec(
            *CSMS, "api-tokens", "add", "smoke", "--role", "admin", "--database-url", url,
            stdout=asyncio.subprocess.PIPE)).communicate())[0].decode().split()[-1]
        added = await asyncio.create_subprocess_exec(
            *CSMS, "stations", "add", "SMOKE-1", "--no-password", "--database-url", url,
            stdout=asyncio.subprocess.DEVNULL)
        await added.wait()
        for n in range(3):
            proc = await asyncio.create_subprocess_exec(
                *CSMS, "serve", "--workers", "1", "--database-url", url, "--broker-url",
                broker.url, "--node", f"csms-{n + 1}", "--host", "127.0.0.1", "--port",
                str(ocpp[n]), "--api-port", str(api[n]), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            step("CSMS listening" in line, f"node csms-{n + 1} started")
            procs.append(proc)
        cfg = folder / "haproxy.cfg"
        cfg.write_text(local_config(ocpp, api, front_ocpp, front_api))
        check = await asyncio.create_subprocess_exec("haproxy", "-c", "-f", str(cfg),
                                                     stdout=asyncio.subprocess.DEVNULL)
        step(await check.wait() == 0, "haproxy -c accepts the config")
        procs.append(await asyncio.create_subprocess_exec(
            "haproxy", "-f", str(cfg), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL))
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{front_api}",
                                     headers=headers, timeout=30) as http:
            step(await all_up(http), "GET /api/health through HAProxy, every "
                 "node up in its checks")
            calls: list[str] = []
            stop = asyncio.Event()
            ws_url = f"ws://127.0.0.1:{front_ocpp}/ocpp/SMOKE-1"
            booted = asyncio.Event()
            task = asyncio.create_task(station(ws_url, calls, stop, booted))
            step(await within(booted, 20), "a station boots through HAProxy's OCPP address")
            answers = []
            for _ in range(3):  # round robin: the API calls land on different nodes
                reply = await http.post("/api/stations/SMOKE-1/commands/trigger-message",
                                        json={"requested_message": "Heartbeat"})
                answers.append(reply.status_code)
            step(answers == [200, 200, 200] and calls.count("TriggerMessage") == 3,
                 f"three API calls through HAProxy reach the station: {answers}")
            nodes = (await http.get("/api/cluster")).json()
            holder = next((w["node"] for w in nodes.get("workers", [])
                           if w.get("stations")), None)
            step(holder is not None, f"the station is held by {holder}")
            index = int(str(holder).removeprefix("csms-")) - 1 if holder else 0
            procs[index].send_signal(signal.SIGTERM)
            await procs[index].wait()
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            calls.clear()
            stop = asyncio.Event()
            for _ in range(10):  # until HAProxy's checks have marked the node down
                booted = asyncio.Event()
                task = asyncio.create_task(station(ws_url, calls, stop, booted))
                if await within(booted, 3):
                    break
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            step(booted.is_set(), f"with {holder} stopped, the station is back through "
                 "HAProxy on another node")
            reply = await http.post("/api/stations/SMOKE-1/commands/trigger-message",
                                    json={"requested_message": "Heartbeat"})
            step(reply.status_code == 200, "and the API reaches it there")
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        await broker.stop()
    print("all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
