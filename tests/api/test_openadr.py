"""Issue 14: the OpenADR 2.0b VEN against openleadr's real VTN over loopback. Setpoints and
limits become grid events on the portfolio's sites (split by EV capacity), a delta becomes
an invitation and a VPP dispatch, unsupported ones are answered optOut, a cancellation
cancels them, and the portfolio's metered load is reported back."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openleadr import OpenADRServer, utils

from csms import metrics
from csms.app import SINGLETON_HOLDER, Csms
from csms.audit import load_key
from csms.config import Config, OpenAdrConfig, SchedulerConfig, VppConfig
from csms.openadr import Ven
from csms.scheduling.leases import SINGLETON_SPACE, Leases
from tests.api.conftest import Client
from tests.api.test_grid_events import SITE, TARIFFS
from tests.api.test_vpp import _plug_in

ROOT = Path(__file__).resolve().parents[2]
LANE = """
[site]
utc_offset = "+08:00"

[[nodes]]
id = "transformer"
limit_kw = 20.0

[[evse_groups]]
count = 2
id_prefix = "LN"
node = "transformer"
max_current_a = 16
"""
VEN_ID = "ven-csms-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Vtn:
    """openleadr's VTN with what a utility would see of the VEN."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.opts: dict[str, str] = {}
        self.reports: list[tuple[datetime, float]] = []
        self.registered: list[str] = []
        self.server = OpenADRServer(vtn_id="UTILITY", http_port=self.port,
                                    requested_poll_freq=timedelta(seconds=1),
                                    show_fingerprint=False)
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._offered)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"

    def _register(self, info: dict[str, Any]) -> tuple[str, str]:
        self.registered.append(info["ven_name"])
        return VEN_ID, "reg-1"

    def _offered(self, ven_id: str, resource_id: str, measurement: str, unit: str,
                 scale: str, min_sampling_interval: timedelta,
                 max_sampling_interval: timedelta) -> tuple[Callable[..., None], timedelta]:
        return self.reports.extend, min_sampling_interval

    def _answered(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts[event_id] = opt_type

    def event(self, name: str, kind: str, value: float, start: datetime,
              minutes: int = 30) -> str:
        return self.server.add_event(
            ven_id=VEN_ID, signal_name=name, signal_type=kind, callback=self._answered,
            intervals=[{"dtstart": start, "duration": timedelta(minutes=minutes),
                        "signal_payload": value}], market_context="oadr://jiangsu-dr")

    def modify(self, event_id: str, value: float) -> None:
        """A new payload for the event's first interval, as a utility revises an event."""
        event = utils.find_by(self.server.events[VEN_ID], "event_descriptor.event_id",
                              event_id)
        signal = utils.getmember(event, "event_signals")[0]
        utils.setmember(utils.getmember(signal, "intervals")[0], "signal_payload", value)
        utils.increment_event_modification_number(event)
        self.server.events_updated[VEN_ID] = True


@pytest.fixture
async def vtn() -> AsyncIterator[Vtn]:
    server = Vtn()
    await server.server.run_async()
    yield server
    await server.server.stop()


@pytest.fixture
def config(config: Config, tmp_path: Path, vtn: Vtn) -> Config:
    (tmp_path / "street.toml").write_text(SITE)
    (tmp_path / "lane.toml").write_text(LANE)
    return replace(
        config,
        scheduler=SchedulerConfig(enabled=True, sites=(str(tmp_path / "street.toml"),
                                                        str(tmp_path / "lane.toml")),
                                  tariffs_dir=str(TARIFFS), interval_s=3600, debounce_s=0,
                                  tx_default_profile=False),
        vpp=VppConfig(programmes={"dr": {"min_kw": 0.5, "min_duration_minutes": 15}}),
        openadr=OpenAdrConfig(vtn_url=vtn.url, ven_name="csms-vpp", portfolio="east",
                              report_interval_s=2, retry_s=1, programme="dr"))


async def _until(check: Callable[[], Any], seconds: float = 20.0) -> Any:
    for _ in range(int(seconds * 10)):
        if got := check():
            return got
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def _ours(client: Client, site: str, reference: str) -> list[dict[str, Any]]:
    events = (await client("admin").get(f"/api/sites/{site}/events")).json()
    return [e for e in events if (e["reference"] or "").startswith(reference + "#")]


async def test_the_ven_turns_vtn_events_into_grid_events_and_reports_metered_load(
    csms: Csms, client: Client, vtn: Vtn, make_station: Any
) -> None:
    assert csms.openadr is not None
    await asyncio.wait_for(csms.openadr.registered.wait(), 30)
    assert vtn.registered == ["csms-vpp"]
    assert (await client("operator").post("/api/portfolios", json={
        "id": "east", "name": "East", "operator": "Suzhou Property Co.",
        "members": [{"site_id": "street"}, {"site_id": "lane"}]})).status_code == 201

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    dispatch = vtn.event("LOAD_DISPATCH", "setpoint", 10.0, start)
    assert await _until(lambda: vtn.opts.get(dispatch)) == "optIn"
    street = await _ours(client, "street", f"openadr:{dispatch}")
    lane = await _ours(client, "lane", f"openadr:{dispatch}")
    # EV capacity: street 4 x 7.36 kW, lane 2 x 3.68 kW: 80% and 20% of the 10 kW
    assert [(e["kind"], e["node"], e["kw"], e["status"]) for e in street] == [
        ("target", "transformer", 8.0, "scheduled")]
    assert [(e["kw"], e["created_by"]) for e in lane] == [(2.0, "openadr:csms-vpp")]
    assert datetime.fromisoformat(street[0]["start"].replace("Z", "+00:00")) == start

    refused = metrics.openadr_events.labels("optOut", "signal")._value.get()
    level = vtn.event("SIMPLE", "level", 2.0, start)
    assert await _until(lambda: vtn.opts.get(level)) == "optOut"
    assert metrics.openadr_events.labels("optOut", "signal")._value.get() == refused + 1
    huge = vtn.event("LOAD_CONTROL", "x-loadControlSetpoint", 5e9, start)
    assert await _until(lambda: vtn.opts.get(huge)) == "optOut"
    cap = vtn.event("LOAD_CONTROL", "x-loadControlSetpoint", 30.0, start)
    assert await _until(lambda: vtn.opts.get(cap)) == "optIn"
    assert [(e["kind"], e["kw"]) for e in await _ours(client, "lane", f"openadr:{cap}")] == [
        ("limit", 6.0)]

    vtn.modify(cap, 40.0)  # revised: the old limits go, new ones come

    async def revised() -> list[tuple[float, str]]:
        lane = await _ours(client, "lane", f"openadr:{cap}")
        return sorted((e["kw"], e["status"]) for e in lane)

    for _ in range(200):
        if len(await revised()) == 2:
            break
        await asyncio.sleep(0.1)
    assert await revised() == [(6.0, "cancelled"), (8.0, "scheduled")]
    # the same event again (as after a restart, when the VEN syncs): nothing new
    seen = next(e for e in csms.openadr._client.received_events
                if e["event_descriptor"]["event_id"] == cap)
    assert await csms.openadr.on_event(seen) == "optIn"
    assert await revised() == [(6.0, "cancelled"), (8.0, "scheduled")]
    assert [e["reference"] for e in await _ours(client, "lane", f"openadr:{cap}")
            if e["status"] == "scheduled"] == [f"openadr:{cap}#1"]

    vtn.server.cancel_event(VEN_ID, dispatch)

    async def cancelled() -> bool:
        return all(e["status"] == "cancelled"
                   for e in await _ours(client, "street", f"openadr:{dispatch}"))

    for _ in range(200):
        if await cancelled():
            break
        await asyncio.sleep(0.1)
    assert await cancelled()

    station = await make_station("FA001")  # the portfolio draws 7 kW now
    now = datetime.now(UTC)
    await station.call("MeterValues", {"evseId": 1, "meterValue": [
        {"timestamp": (now - timedelta(seconds=s)).isoformat(), "sampledValue": [
            {"value": 7000.0, "measurand": "Power.Active.Import"}]} for s in (4, 0)]})
    await _until(lambda: any(v == pytest.approx(7.0, abs=0.01) for _, v in vtn.reports))

    log = (await client("admin").get("/api/audit", params={"limit": 1000})).json()
    by_ven = [e for e in log if e["actor"] == "openadr:csms-vpp"]
    assert {e["kind"] for e in by_ven} == {"dispatch.created", "dispatch.cancelled",
                                           "openadr.answered"}
    assert all(e["body"]["portfolio"] == "east" for e in by_ven)
    verified = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "csms.cli", "audit", "verify", "--database-url",
         csms.config.database.url, "--data-dir", csms.config.database.data_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified


async def test_a_delta_is_answered_as_an_invitation_and_dispatched(
    csms: Csms, client: Client, vtn: Vtn, make_station: Any
) -> None:
    """LOAD_DISPATCH delta: a change against the baseline, what a VPP invitation asks. The
    VEN answers it under its programme, accepts the offer (what the portfolio holds, up to
    the delta), and the dispatch is split, audited and called off like any other."""
    assert csms.openadr is not None
    await asyncio.wait_for(csms.openadr.registered.wait(), 30)
    operator = client("operator")
    assert (await operator.post("/api/portfolios", json={
        "id": "east", "name": "East", "operator": "Suzhou Property Co.",
        "members": [{"site_id": "street"}, {"site_id": "lane"}]})).status_code == 201
    now = datetime.now(UTC)
    for sid in ("FA001", "FB001"):  # two cars on street, none on lane
        await _plug_in(await make_station(sid), sid, operator, now)

    start = now.replace(second=0, microsecond=0) + timedelta(minutes=20)
    asked = vtn.event("LOAD_DISPATCH", "delta", -2.0, start, minutes=30)
    assert await _until(lambda: vtn.opts.get(asked)) == "optIn"
    invited = (await operator.get("/api/portfolios/east/invitations")).json()
    assert [(i["reference"], i["programme"], i["direction"], i["requested_kw"])
            for i in invited] == [(f"openadr:{asked}#0", "dr", "down", 2.0)]
    made = (await operator.get("/api/portfolios/east/dispatches")).json()
    assert len(made) == 1 and made[0]["invitation_id"] == invited[0]["id"]
    d = made[0]
    assert 0.5 <= d["committed_kw"] <= 2.0  # what the two cars hold for the window
    assert {(e["site_id"], e["kind"], e["node"]) for e in d["events"]} == {
        ("street", "target", "transformer")}
    # the same event again (a restart's sync): nothing new
    seen = next(e for e in csms.openadr._client.received_events
                if e["event_descriptor"]["event_id"] == asked)
    assert await csms.openadr.on_event(seen) == "optIn"
    assert len((await operator.get("/api/portfolios/east/dispatches")).json()) == 1

    mixed = vtn.event("LOAD_DISPATCH", "delta", 0.0, start)
    assert await _until(lambda: vtn.opts.get(mixed)) == "optOut"  # no direction
    assert len((await operator.get("/api/portfolios/east/invitations")).json()) == 1

    vtn.server.cancel_event(VEN_ID, asked)

    async def called_off() -> bool:
        got = (await operator.get(f"/api/portfolios/east/dispatches/{d['id']}")).json()
        return all(e["status"] == "cancelled" for e in got["events"])

    for _ in range(200):
        if await called_off():
            break
        await asyncio.sleep(0.1)
    assert await called_off()
    log = (await client("admin").get("/api/audit", params={"limit": 1000})).json()
    by_ven = {e["kind"] for e in log if e["actor"] == "openadr:csms-vpp"}
    assert {"offer.accepted", "dispatch.created", "dispatch.cancelled",
            "openadr.answered"} <= by_ven


async def test_in_a_cluster_one_ven_registers_and_another_takes_over(
    csms: Csms, vtn: Vtn
) -> None:
    """Every planning process of a cluster starts a VEN; a PostgreSQL lock lets one
    register with the VTN. When that process goes (its lock's session ends), another
    takes the lock and registers in its place."""
    config = replace(csms.config.openadr, ven_name="cluster-ven", retry_s=0.2)

    def ven(node: str) -> Ven:
        return Ven(config, csms.store, csms.clock, csms.events, csms.sites.models(),
                   load_key(csms.config.audit_dir()),
                   lease=Leases(csms.db.url, node, lambda why: None, prefix=SINGLETON_HOLDER,
                                space=SINGLETON_SPACE))

    first, second = ven("node-a/0"), ven("node-b/0")
    await first.start()
    await asyncio.wait_for(first.registered.wait(), 30)
    await second.start()
    await asyncio.sleep(1.0)  # five tries at the lock
    assert not second.registered.is_set()
    assert vtn.registered.count("cluster-ven") == 1
    await first.stop()  # its process ends: so does the lock's session
    await asyncio.wait_for(second.registered.wait(), 30)
    assert vtn.registered.count("cluster-ven") == 2
    await second.stop()
