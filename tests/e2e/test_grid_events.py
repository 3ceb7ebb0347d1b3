"""A grid company's curtailment, end to end: a limit event posted over HTTP lowers the
TxProfiles the scheduler sends, the simulated stations (on an accelerated clock) draw
less for the event's 45 minutes and more again after it, and the event reports the metered
delivery. What is checked is what the stations draw, not what was planned."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import datetime

import httpx

from csms.api.auth import new_token
from csms.config import ApiConfig, Config
from csms.store.api_tokens import ApiTokenRepo
from tests.e2e.test_scheduler import SITE, Run, headroom_kw, local, site_run

LIMIT_KW = 18.0  # the transformer's own 32 kW, cut to 18: with 12 kW of household load
TOLERANCE_KW = 0.1  # in the evening peak, 6 kW are left for the cars


async def test_a_curtailment_event_lowers_what_the_stations_draw(config: Config) -> None:
    config = replace(config, api=ApiConfig(enabled=True, host="127.0.0.1", port=0))
    cars = [(f"TS00{i}", local(18, 2), local(19, 25), 30.0) for i in (1, 2, 3)]
    async with site_run(config, local(18, 0), [c[0] for c in cars]) as run:
        assert run.csms.api is not None
        token, hashed = new_token()
        await ApiTokenRepo(run.csms.store.pool).add("dso", "grid", hashed, run.clock.now(),
                                                    (f"{SITE.id}/transformer",))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{run.csms.api.port}",
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=15.0) as dso:
            event = asyncio.ensure_future(curtail(run, dso))
            viewer, hashed = new_token()
            await ApiTokenRepo(run.csms.store.pool).add("noc", "viewer", hashed,
                                                        run.clock.now(), ())
            viewer_headers = httpx.Headers({"Authorization": f"Bearer {viewer}"})
            gauges = asyncio.ensure_future(site_gauges_at(run, dso, viewer_headers, local(18, 50)))
            await asyncio.gather(*(run.car(*c) for c in cars))
            event_id = await event
            limit_kw, ev_load_kw = await gauges
            reply = await dso.get(f"/api/sites/{SITE.id}/events/{event_id}")
    start, end = local(18, 30), local(19, 15)
    # the stations switch at 18:30 and 19:15 by the profiles they were sent at 18:20
    during = [kw for t, kw in run.samples if start <= t < end and settled(t)]
    before = [kw for t, kw in run.samples if local(18, 15) <= t < start]
    after = [kw for t, kw in run.samples if end <= t < local(19, 25) and settled(t)]
    allowed = LIMIT_KW - (32.0 - headroom_kw(start))
    assert max(before) > 15.0  # the cars used the ~20 kW of headroom before the event
    assert max(during) <= allowed + TOLERANCE_KW, (max(during), allowed)
    assert max(during) > 0.5 * allowed  # and the 6 kW that were left during it
    assert max(after) > 15.0  # back up once the event ended

    # /metrics during the event: the site's limit as the event set it, and its metered load
    assert limit_kw == LIMIT_KW
    assert 0.5 * allowed < ev_load_kw <= allowed + TOLERANCE_KW

    assert reply.status_code == 200
    done = reply.json()
    assert done["status"] == "completed" and done["delivery"]["final"] is True
    assert done["delivery"]["complied"] is True, str(done["delivery"])
    assert done["delivery"]["minutes_above_limit"] <= 2.0
    # the first minute still has the last meter value from before 18:30
    assert done["delivery"]["mean_kw"] < 0.5 * max(before)


def settled(t: datetime, slot_s: int = 900, late_s: float = 30.0) -> bool:
    """Not just after a slot boundary, where every station switches: on a busy machine a
    station's timer wakes some milliseconds late, which at this speed is clock seconds, and
    stations trading amps between them may briefly add up to one amp more."""
    return late_s <= t.timestamp() % slot_s < slot_s - 2.0


async def site_gauges_at(run: Run, http: httpx.AsyncClient, headers: httpx.Headers,
                         at: datetime) -> tuple[float, float]:
    """The site's gauges on /metrics (a grid token may not read them; a viewer may)."""
    await run.clock.sleep((at - run.clock.now()).total_seconds())
    reply = await http.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    text = reply.text

    def gauge(name: str) -> float:
        found = re.search(rf'^{name}{{site="{SITE.id}"}} (\S+)$', text, re.M)
        assert found, name
        return float(found.group(1))

    return gauge("csms_site_limit_kw"), gauge("csms_site_ev_load_kw")


async def curtail(run: Run, dso: httpx.AsyncClient) -> int:
    """At 18:20 local, announce a limit of 18 kW on the transformer from 18:30 to 19:15.
    (Given ahead, the limit is in the profiles the stations hold when it starts; an event
    starting at once re-plans at once, as tests/api/test_grid_events.py checks.)"""
    await run.until(local(18, 20))
    reply = await dso.post(f"/api/sites/{SITE.id}/events", json={
        "node": "transformer", "kind": "limit", "kw": LIMIT_KW, "reference": "curtailment-1",
        "start": local(18, 30).isoformat(), "end": local(19, 15).isoformat()})
    assert reply.status_code == 201, reply.text
    assert reply.json()["status"] == "scheduled"
    return int(reply.json()["id"])
