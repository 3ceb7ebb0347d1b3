"""GET /api/event-log: errors and events at the stations, each with its station, EVSE,
reason and time, including an EVSE that drew more than the limit the CSMS sent it."""

from __future__ import annotations

from datetime import datetime, timedelta

from csms.app import Csms
from csms.store.meter import MeterRow
from csms.store.plans import PlanRecord
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


def _inputs(now: datetime, *sessions: tuple[str, str, int]) -> dict:
    slots = [now + timedelta(minutes=15 * i) for i in range(8)]
    return {"now": now.isoformat(), "slot_starts": [t.isoformat() for t in slots],
            "sessions": [{"evse_id": e, "station_id": s, "ocpp_evse_id": o}
                         for e, s, o in sessions]}


async def seed_plans(csms: Csms, now: datetime) -> None:
    """CS1 EVSE 1 is sent 0 W for its transaction and draws 1.4 kW anyway; CS2 EVSE 1
    rejects its profile (TxNotFound); CS3's profile gets no answer."""
    for sid in ("CS1", "CS2", "CS3"):
        await csms.store.stations.add(sid, None, now)
    sent_at = now - timedelta(minutes=30)
    entry = {"transaction_id": "tx-1", "energy_needed_kwh": 10.0, "energy_planned_kwh": 0.0,
             "setpoints": [[0, 0.0, 0], [3600, 16.0, 11000]], "profile": "sent", "why": ""}
    await csms.store.plans.add(PlanRecord(
        site_id="site-1", planned_at=sent_at, trigger="test", sessions=1,
        inputs=_inputs(sent_at, ("CS1-1", "CS1", 1)), schedule={"CS1-1": entry},
        status="solved", profiles_sent=1))
    await csms.store.plans.add(PlanRecord(
        site_id="site-1", planned_at=now - timedelta(minutes=10), trigger="test", sessions=3,
        inputs=_inputs(now - timedelta(minutes=10), ("CS1-1", "CS1", 1), ("CS2-1", "CS2", 1),
                       ("CS3-2", "CS3", 2)),
        schedule={"CS1-1": {**entry, "profile": "unchanged"},
                  "CS2-1": {**entry, "transaction_id": "tx-2",
                            "profile": "rejected: TxNotFound"},
                  "CS3-2": {**entry, "transaction_id": "tx-3", "profile": "failed"}},
        status="solved", profiles_rejected=1, profiles_failed=1))
    power = "Power.Active.Import"
    await csms.store.meter.write([
        # in the first 2 minutes after sending the station may still be adjusting
        MeterRow("CS1", 1, sent_at + timedelta(minutes=1), power, "", "Outlet", None, "tx-1",
                 5000.0, "W"),
        MeterRow("CS1", 1, sent_at + timedelta(minutes=5), power, "", "Outlet", None, "tx-1",
                 1400.0, "W"),
        MeterRow("CS1", 1, sent_at + timedelta(minutes=6), power, "", "Outlet", None, "tx-1",
                 1200.0, "W"),
        MeterRow("CS1", 1, sent_at + timedelta(minutes=7), power, "", "Outlet", None, "tx-1",
                 300.0, "W"),  # within the tolerance
        # a phase's power is not the EVSE's
        MeterRow("CS1", 1, sent_at + timedelta(minutes=8), power, "L1", "Outlet", None,
                 "tx-1", 9000.0, "W"),
    ])


async def test_the_event_log_names_station_evse_reason_and_time(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    now = csms.clock.now()
    await seed_plans(csms, now)
    station = await make_station("CS001")
    await station.call("SecurityEventNotification", {
        "type": "InvalidTLSVersion", "timestamp": now.isoformat()})
    await station.status(1, "Faulted")
    viewer = client("viewer")

    async def logged() -> dict | None:
        page = (await viewer.get("/api/event-log")).json()
        kinds = {e["kind"] for e in page["events"]}
        return page if {"security", "fault", "boot"} <= kinds else None

    page = await eventually(logged)
    by_kind = {e["kind"]: e for e in page["events"]}
    assert page["total"] == len(page["events"])
    rejected = by_kind["profile"]
    assert (rejected["station_id"], rejected["evse_id"], rejected["reason"]) == (
        "CS2", 1, "TxNotFound")
    assert rejected["detail"]["transaction_id"] == "tx-2" and rejected["site_id"] == "site-1"
    failed = by_kind["call"]
    assert (failed["station_id"], failed["evse_id"], failed["reason"]) == ("CS3", 2, "failed")
    over = by_kind["non-compliance"]
    assert (over["station_id"], over["evse_id"]) == ("CS1", 1)
    assert over["detail"]["power_w"] == 1400.0 and over["detail"]["limit_w"] == 0.0
    assert over["detail"]["samples"] == 2  # 1.4 and 1.2 kW; not the one in the grace time
    assert by_kind["security"]["reason"] == "InvalidTLSVersion"
    assert (by_kind["fault"]["station_id"], by_kind["fault"]["evse_id"]) == ("CS001", 1)
    times = [e["at"] for e in page["events"]]
    assert times == sorted(times, reverse=True)

    # a looser tolerance: 1.2 kW is no longer clearly over 0 W
    loose = (await viewer.get("/api/event-log", params={
        "kind": "non-compliance", "tolerance_w": 1300})).json()
    assert [e["detail"]["samples"] for e in loose["events"]] == [1]
    late = (await viewer.get("/api/event-log", params={
        "kind": "non-compliance", "grace_s": 330})).json()  # from 5.5 min after sending
    assert [e["detail"]["samples"] for e in late["events"]] == [1]
    none = (await viewer.get("/api/event-log", params={
        "kind": "non-compliance", "tolerance_w": 2000})).json()
    assert none == {**none, "total": 0, "events": []}

    only = (await viewer.get("/api/event-log", params={
        "station_id": "CS2", "kind": ["profile", "call"]})).json()
    assert [(e["station_id"], e["kind"]) for e in only["events"]] == [("CS2", "profile")]
    first = (await viewer.get("/api/event-log", params={"limit": 2})).json()
    second = (await viewer.get("/api/event-log", params={"limit": 2, "offset": 2})).json()
    assert first["total"] == second["total"] == page["total"]
    assert first["events"] + second["events"] == page["events"][:4]
    old = (await viewer.get("/api/event-log", params={
        "until": (now - timedelta(hours=1)).isoformat()})).json()
    assert old["events"] == []


async def test_the_event_log_is_bounded_and_role_checked(client: Client) -> None:
    viewer = client("viewer")
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"kind": "nonsense"},
                {"station_id": "x" * 49}, {"tolerance_w": -1}, {"tolerance_w": 1e9},
                {"grace_s": -1}, {"grace_s": 3601},
                {"since": "not a time"}, {"since": "2026-12-01T10:00:00"},
                {"since": "2026-01-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
                {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}):
        assert (await viewer.get("/api/event-log", params=bad)).status_code == 422, bad
    assert (await client("grid").get("/api/event-log")).status_code == 403
    assert (await client(None).get("/api/event-log")).status_code == 401
