"""Fuzz run (issue 11): hostile and near-valid OCPP-J frames from several stations at once,
against a real `csms serve` process, while one well-behaved station keeps sending
Heartbeats.

    .venv/bin/python -m bench.fuzz                        # 1,000,000 frames, 8 fuzzers
    .venv/bin/python -m bench.fuzz --frames 2000 --fuzzers 2  # a quick proof that it works

Only public tools: `websockets` as the station's client, the CSMS as its own process
(started and provisioned as bench/csms_load.py does, on an embedded PostgreSQL or
DATABASE_URL). Each fuzzer keeps one CALL in flight and mutates templates of the
charger-initiated actions: values replaced by NUL, lone surrogates, NaN, Infinity, 1e309,
integers past int32 and 20 digits, bad timestamps, wrong types, deep nesting, unknown
actions and fields, and plain garbage. Reported: frames sent, answers by kind and error
code, frames left unanswered, the well-behaved station's worst and p99 Heartbeat round
trip, and the CSMS's RSS before and after. Everything has a timeout; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import websockets

from bench.csms_load import PASSWORD, Run, free_port, provision, rss_mb, start_csms, stop_csms

TS = "2026-11-23T18:00:00.000Z"
HOSTILE: list[Any] = [
    "\x00", "A\x00B", "\ud800", "x\udfff", "", "yesterday", "2026-02-30T00:00:00Z",
    "0001-01-01T00:00:00+01:00", 2**31, -(2**31) - 1, 10**25, 1e13, -1e300, None, [], {},
    True, "A" * 5000, 10_000_000,
]
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "9" * 40]


def templates(seq: int) -> list[tuple[str, dict[str, Any]]]:
    meter = [{"timestamp": TS, "sampledValue": [
        {"value": 1234.5, "measurand": "Energy.Active.Import.Register",
         "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
        {"value": 7.4, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}}]}]
    return [
        ("Heartbeat", {}),
        ("MeterValues", {"evseId": 1, "meterValue": meter}),
        ("TransactionEvent", {
            "eventType": "Updated", "timestamp": TS, "triggerReason": "MeterValuePeriodic",
            "seqNo": seq, "transactionInfo": {"transactionId": f"FZ{seq % 50}",
                                              "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1}, "meterValue": meter}),
        ("StatusNotification", {"timestamp": TS, "connectorStatus": "Occupied", "evseId": 1,
                                "connectorId": 1}),
        ("Authorize", {"idToken": {"idToken": "FUZZTOKEN", "type": "ISO14443"}}),
        ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {
            "requestedEnergyTransfer": "AC_three_phase", "departureTime": TS,
            "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6,
                                     "evMaxCurrent": 32, "evMaxVoltage": 400}}}),
        ("DataTransfer", {"vendorId": "com.example", "messageId": "m", "data": {"a": [1, 2]}}),
        ("SecurityEventNotification", {"type": "x", "timestamp": TS}),
        ("NotifyEvent", {"generatedAt": TS, "seqNo": 0, "eventData": [{
            "eventId": 1, "timestamp": TS, "trigger": "Alerting", "actualValue": "1",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "C"}, "variable": {"name": "V"}}]}),
    ]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def mutate(rng: random.Random, message_id: str, seq: int) -> str:
    """One frame: mostly a template with a hostile leaf, sometimes worse."""
    action, payload = rng.choice(templates(seq))
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(["", "[", "{}", "null", "[2]", '[2, 1, "Heartbeat", {}]',
                           bytes(rng.randrange(256) for _ in range(40)).hex()])
    if roll < 0.06:
        depth = rng.choice([33, 200, 1000, 5000])
        return json.dumps([2, message_id, action, {"customData": {"vendorId": "x", "d":
                                                                    "@"}}]).replace(
            '"@"', "[" * depth + "]" * depth)
    if roll < 0.08:
        return json.dumps([2, message_id, rng.choice(["NoSuch", "Reset", ""]), payload])
    leaves = _leaves(payload)
    if roll < 0.20 or not leaves:
        return json.dumps([2, message_id, action, payload])  # valid
    path = rng.choice(leaves)
    if roll < 0.35:
        marker = "__RAW__"
        _set(payload, path, marker)
        return json.dumps([2, message_id, action, payload]).replace(
            f'"{marker}"', rng.choice(RAW_NUMBERS))
    if roll < 0.40:
        payload["unexpected"] = 1
    else:
        _set(payload, path, rng.choice(HOSTILE))
    return json.dumps([2, message_id, action, payload])


def _auth(station: str) -> dict[str, str]:
    raw = f"{station}:{PASSWORD}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def _connect(url: str, station: str) -> Any:
    ws = await websockets.connect(f"{url}/{station}", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                                  additional_headers=_auth(station), max_size=None)
    await ws.send(json.dumps([2, "boot", "BootNotification", {
        "reason": "PowerUp", "chargingStation": {"model": "fuzz", "vendorName": "bench"}}]))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert answer[2]["status"] == "Accepted", answer
    return ws


async def fuzzer(url: str, station: str, frames: int, seed: int, tally: Counter[str]) -> None:
    rng = random.Random(seed)
    ws = await _connect(url, station)
    sent = 0
    while sent < frames:
        text = mutate(rng, f"{station}-{sent}", sent)
        sent += 1
        tally["frames"] += 1
        try:
            await ws.send(text)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        except TimeoutError:
            tally["unanswered"] += 1
            continue
        except websockets.ConnectionClosed as closed:
            tally[f"closed {closed.rcvd.code if closed.rcvd else '?'}"] += 1
            ws = await _connect(url, station)
            continue
        tally["CALLRESULT" if reply[0] == 3 else f"CALLERROR {reply[2]}"] += 1
    await ws.close()


async def well_behaved(url: str, stop: asyncio.Event, rtts: list[float]) -> None:
    ws = await _connect(url, "BENCH000000")
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        await ws.send(json.dumps([2, f"hb{i}", "Heartbeat", {}]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply[0] == 3, reply
        rtts.append(time.perf_counter() - started)
        i += 1
        await asyncio.sleep(0.1)
    await ws.close()


async def report_progress(tally: Counter[str], rtts: list[float], stop: asyncio.Event,
                          every_s: float = 60.0) -> None:
    """A line on stderr each minute, so a long run shows where it stands."""
    started = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(every_s)
        print(json.dumps({"s": round(time.monotonic() - started), "frames": tally["frames"],
                          "heartbeat_max_ms": round(max(rtts, default=0) * 1000, 1),
                          "answers": dict(tally.most_common(8))}), file=sys.stderr, flush=True)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="csms-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        url, server = os.environ.get("DATABASE_URL", ""), None
        if not url:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pgserver

                server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
            url = server.get_uri()
        run = Run(n=args.fuzzers + 1, url=url, tmp=tmp, postmaster=None, port=free_port())
        try:
            await provision(url, args.fuzzers + 1)
            await start_csms(run, SimpleNamespace(heartbeat_s=300, csms_log_level="error",
                                                  gc_freeze_s=None, gc_full_s=None))
            ws_url = f"ws://127.0.0.1:{run.port}/ocpp"
            rss_before = rss_mb(run)
            tally: Counter[str] = Counter()
            rtts: list[float] = []
            stop = asyncio.Event()
            calm = asyncio.create_task(well_behaved(ws_url, stop, rtts))
            progress = asyncio.create_task(report_progress(tally, rtts, stop))
            started = time.monotonic()
            per = -(-args.frames // args.fuzzers)
            await asyncio.gather(*(
                fuzzer(ws_url, f"BENCH{i:06d}", per, args.seed + i, tally)
                for i in range(1, args.fuzzers + 1)))
            stop.set()
            await calm
            progress.cancel()
            seconds = time.monotonic() - started
            rss_after = rss_mb(run)
        finally:
            await stop_csms(run)
            if server is not None:
                server.cleanup()
    rtts.sort()
    return {
        "frames": tally.pop("frames", 0), "fuzzers": args.fuzzers, "seconds": round(seconds, 1),
        "answers": dict(sorted(tally.items(), key=lambda kv: -kv[1])),
        "well_behaved_heartbeats": len(rtts),
        "well_behaved_max_ms": round(rtts[-1] * 1000, 1) if rtts else None,
        "well_behaved_p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1000, 1) if rtts else None,
        "rss_mb_before": rss_before, "rss_mb_after": rss_after,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1_000_000)
    p.add_argument("--fuzzers", type=int, default=8)
    p.add_argument("--seed", type=int, default=11)
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args())), indent=1), file=sys.stdout)
