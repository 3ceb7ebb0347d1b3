"""A site's measured load over HTTP: the stations' power samples, each held until the next
one, summed over the site's EVSEs (config/sites/test-small.toml: TS001..TS006, EVSE 1
each), and the limit with the grid events that applied."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from csms.app import Csms
from csms.clock import to_ocpp
from csms.config import Config, SchedulerConfig
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITE_FILE),), interval_s=3600, tx_default_profile=False))


def power(at: datetime, watts: float, phase: str | None = None) -> dict[str, object]:
    sampled: dict[str, object] = {"value": watts, "measurand": "Power.Active.Import",
                                  "unitOfMeasure": {"unit": "W"}}
    if phase:
        sampled["phase"] = phase
    return {"timestamp": to_ocpp(at), "sampledValue": [sampled]}


async def test_measured_ev_load_is_the_site_evses_power_at_each_bucket(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    now = csms.clock.now()
    bucket = datetime.fromtimestamp((int(now.timestamp()) // 300 - 4) * 300, UTC)
    on_site, elsewhere, stranger = [await make_station(s) for s in ("TS001", "TS002", "CS999")]
    await on_site.call("MeterValues", {"evseId": 1, "meterValue": [
        power(bucket + timedelta(seconds=10), 7000), power(bucket + timedelta(seconds=70), 5000),
        power(bucket + timedelta(seconds=80), 2000, phase="L1"),  # per phase: not summed in
        power(bucket + timedelta(seconds=310), 1000),  # the next bucket
    ]})
    await elsewhere.call("MeterValues", {"evseId": 1, "meterValue": [
        power(bucket + timedelta(seconds=30), 3000)]})
    await stranger.call("MeterValues", {"evseId": 1, "meterValue": [
        power(bucket + timedelta(seconds=30), 10_000)]})  # not on the site

    answer = await client("viewer").get("/api/sites/test-small/load",
                                        params={"hours": 1, "step_s": 300})
    assert answer.status_code == 200, answer.text
    load = answer.json()
    starts = [datetime.fromisoformat(t) for t in load["starts"]]
    assert load["node"] == "transformer" and load["step_s"] == 300
    assert starts[0] <= now - timedelta(hours=1) < starts[1] and starts[-1] <= now
    i = starts.index(bucket)
    # the power at each bucket's start: each EVSE's newest sample (held for up to 15 min),
    # summed over the site's EVSEs
    assert load["ev_kw"][i - 1 : i + 5] == pytest.approx([0, 0, 5 + 3, 1 + 3, 1 + 3, 1])
    assert all(v == 32.0 for v in load["limit_kw"])
    assert all(8.0 <= v <= 12.0 for v in load["household_kw"])
    assert len(load["starts"]) == len(load["ev_kw"]) == len(load["household_kw"])


async def test_site_load_errors(csms: Csms, client: Client) -> None:
    viewer = client("viewer")
    assert (await client(None).get("/api/sites/test-small/load")).status_code == 401
    assert (await client("grid").get("/api/sites/test-small/load")).status_code == 404
    assert (await viewer.get("/api/sites/elsewhere/load")).status_code == 404
    for params in ({"hours": 0}, {"step_s": 1}, {"hours": 48, "step_s": 60}, {"hours": 49}):
        answer = await viewer.get("/api/sites/test-small/load", params=params)
        assert answer.status_code == 422, (params, answer.text)


async def test_the_limit_is_lowered_where_a_limit_event_applied(
    csms: Csms, client: Client
) -> None:
    admin = client("admin")
    end = csms.clock.now() + timedelta(hours=1)
    made = await admin.post("/api/sites/test-small/events", json={
        "node": "transformer", "kind": "limit", "kw": 20.0, "end": end.isoformat()})
    assert made.status_code == 201, made.text
    load = (await admin.get("/api/sites/test-small/load", params={"step_s": 300})).json()
    assert load["limit_kw"][0] == 32.0 and load["limit_kw"][-1] == 20.0
