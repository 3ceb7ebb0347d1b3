"""Why a car is held, from a stored plan alone (csms/dashboard/holds.py): the reasons a
page shows when neither a limit nor the price explains the hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from csms.dashboard import holds
from csms.store.grid import GridEvent
from smart_charging.model import Evse, Node, Site

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SITE = Site("s", (Node("root", limit_kw=50.0), Node("feeder", parent="root", limit_kw=7.0)),
            (Evse("A", "feeder", "CS1"),
             Evse("B", "root", "CS2")))


def plan(a: list[list[float]], b: list[list[float]]) -> tuple[dict, dict]:
    starts = [T0 + timedelta(minutes=15 * i) for i in range(8)]
    inputs = {"slot_starts": [t.isoformat() for t in starts], "limit_kw": [50.0] * 8,
              "household_kw": [10.0] * 8, "reserved_kw": [0.0] * 8,
              "planned_ev_kw": [7.0] * 8}
    entry = {"energy_needed_kwh": 5.0}
    return inputs, {"A": {**entry, "setpoints": a}, "B": {**entry, "setpoints": b}}


def test_a_full_feeder_a_target_event_and_time_to_spare() -> None:
    # A waits for the first hour while C fills their 7 kW feeder; B waits while a target
    # event asks the site for less
    inputs, schedule = plan([[0, 0, 0], [3600, 32, 7000]], [[0, 0, 0], [1800, 32, 7000]])
    feeder_full = Site("s", SITE.nodes, (*SITE.evses,
                                         Evse("C", "feeder", "CS3")))
    schedule["C"] = {"energy_needed_kwh": 5.0, "setpoints": [[0, 32, 7000], [3600, 0, 0]]}
    target = GridEvent(7, "s", "root", "target", 20.0, T0, T0 + timedelta(minutes=20), None,
                       "dso", T0)
    found = holds.explain(feeder_full, inputs, schedule, np.full(8, 0.5), [target], T0, UTC)
    (a,) = found["A"]
    assert (a.start, a.end) == (T0, T0 + timedelta(hours=1))
    assert a.text.startswith("limited by the %(node)s limit") and a.args == {"node": "feeder"}
    (b,) = found["B"]
    assert b.text.startswith("grid event #%(id)s asks") and b.args["id"] == 7
    assert "C" not in found  # charging first, then done: no hold

    later = holds.explain(SITE, *plan([[0, 0, 0], [900, 32, 7000]], [[0, 32, 7000]]),
                          np.full(8, 0.5), [], T0, UTC)
    assert later["A"][0].text == "the plan can still deliver what the car needs in time"
    assert "B" not in later
    assert holds.explain(SITE, *plan([[0, 0, 0], [900, 32, 7000]], []), None, [],
                         T0 + timedelta(hours=1), UTC) == {}  # that hold is over
