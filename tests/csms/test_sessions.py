"""The scheduler's decisions (csms/scheduling/ demand, limits, reserved_load), without
sockets or a database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from csms.scheduling.demand import SessionFacts, next_local_time, session_for
from csms.scheduling.limits import (
    Limit,
    compare,
    default_profile,
    default_shares,
    energy_kwh,
    falls_short,
    needed_decreases,
)
from csms.scheduling.reserved_load import Reservation, with_reservations
from csms.sites import load_site
from smart_charging import Evse, Node, Site
from smart_charging.model import PHASES, sample

ROOT = Path(__file__).resolve().parents[2]
SITE, _ = load_site(ROOT / "config/sites/test-small.toml")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 18:00 site time
HOUR = timedelta(hours=1)


def steps(*pairs: tuple[int, float], minutes: int = 60) -> Limit:
    """A limit from (minutes after NOW, W) pairs, ending 10 h after NOW."""
    return Limit(tuple(NOW + timedelta(minutes=m) for m, _ in pairs),
                 tuple(w for _, w in pairs), NOW + 10 * HOUR)


def test_next_local_time_is_in_site_time() -> None:
    offset = timedelta(hours=8)
    assert next_local_time(NOW, time(7, 30), offset) == datetime(2026, 11, 23, 23, 30,
                                                                 tzinfo=UTC)
    assert next_local_time(NOW, time(18, 0), offset) == NOW + 24 * HOUR  # strictly after


def test_a_silent_car_gets_the_site_defaults_and_an_overstaying_one_leaves_soon() -> None:
    evse = SITE.evse("TS001")
    facts = SessionFacts("tx1", NOW - HOUR, None, None, 2500.0)
    session, summary = session_for(facts, evse, SITE, NOW, overstay=HOUR,
                                   margin=timedelta(minutes=15))
    assert summary["departure_source"] == "default"
    assert session.departure == datetime(2026, 11, 23, 23, 15, tzinfo=UTC)  # 07:30 - margin
    assert session.energy_wanted_kwh == SITE.default_energy_kwh
    assert session.energy_needed_kwh == pytest.approx(7.5)
    late = SessionFacts("tx2", NOW - 5 * HOUR, NOW - HOUR, 20_000.0, 1000.0)
    session, summary = session_for(late, evse, SITE, NOW, overstay=HOUR,
                                   margin=timedelta(minutes=15))
    assert summary["departure_source"] == "overstay"
    assert session.departure == NOW + timedelta(minutes=45)


def test_material_changes_soon_are_sent_and_small_ones_wait() -> None:
    held = steps((0, 3000.0), (60, 3000.0))
    kwargs = {"material_w": 1000.0, "lookahead": HOUR}
    assert not compare(held, steps((0, 3000.0)), NOW, **kwargs).send
    # a 1 A decrease: not sent by itself, marked for the site-level check
    lower_later = compare(held, steps((0, 3000.0), (5, 2770.0)), NOW, **kwargs)
    assert not lower_later.send and lower_later.lower and not lower_later.raises_now
    big_lower = compare(held, steps((0, 3000.0), (5, 1500.0)), NOW, **kwargs)
    assert big_lower.send and big_lower.lower
    far_lower = compare(held, steps((0, 3000.0), (120, 0.0)), NOW, **kwargs)
    assert not far_lower.send and far_lower.lower  # beyond the lookahead
    assert not compare(held, steps((0, 3500.0)), NOW, **kwargs).send  # < 1 kW more
    assert not compare(held, steps((0, 3000.0), (120, 7000.0)), NOW, **kwargs).send
    now_higher = compare(held, steps((0, 7000.0)), NOW, **kwargs)
    assert now_higher.send and now_higher.raises_now
    # where the held profile ends, the EVSE falls back to its TxDefaultProfile share
    short = Limit((NOW,), (3000.0,), NOW + HOUR / 2).then(5000.0)
    assert compare(short, steps((0, 3000.0)), NOW, **kwargs).send


def test_a_small_increase_goes_when_the_held_profile_leaves_the_car_short() -> None:
    held, until = steps((0, 3000.0)), NOW + HOUR
    assert energy_kwh(held, NOW, until, 7400.0) == pytest.approx(3.0)
    assert energy_kwh(held, NOW, until, 2000.0) == pytest.approx(2.0)  # the car's own max
    more = steps((0, 3300.0))  # 300 W more: not material by itself ...
    assert not compare(held, more, NOW, material_w=1000.0, lookahead=HOUR).send
    # ... but the car leaves within the hour, needs 3.2 kWh and what it holds gives 3.0
    kw = {"cap_w": 7400.0, "lookahead": HOUR}
    assert "short by departure" in (falls_short(held, more, NOW, until, 3.2, **kw) or "")
    assert falls_short(held, more, NOW, until, 3.0, **kw) is None  # it gets its need
    assert falls_short(held, steps((0, 3005.0)), NOW, until, 3.2, **kw) is None  # no gain
    assert falls_short(held, more, NOW, until, 3.2, 3000.0, HOUR) is None  # car takes 3 kW
    # leaving later: a later plan can still make it up
    assert falls_short(held, more, NOW, NOW + 3 * HOUR, 9.5, **kw) is None


def test_small_decreases_are_sent_only_where_the_site_needs_them() -> None:
    # one row (a 10 kW limit), three sessions, two slots
    coef, headroom = np.ones((1, 3)), np.array([[10.0, 10.0]])
    new = np.array([[4.0, 4.0], [3.0, 3.0], [3.0, 3.0]])
    held = np.array([[4.0, 4.2], [3.2, 3.0], [3.0, 3.0]])  # 0.2 kW decreases, not sent
    sending = np.zeros(3, dtype=bool)
    optional = np.array([True, True, False])
    # with 11 kW of room what they hold fits: nothing to send
    send, why = needed_decreases(coef, headroom + 1.0, held, new, sending, optional)
    assert not send.any() and why == {}
    # with 10 kW both slots are over (10.2 kW): each needs its own decrease
    send, why = needed_decreases(coef, headroom, held, new, sending, optional)
    assert send.tolist() == [True, True, False] and why == {1: (0, 0), 0: (0, 1)}
    # 10.5 kW, and session 2's increase in slot 1 goes anyway: only session 0 must follow
    new[2, 1], sending[2] = 3.5, True
    send, why = needed_decreases(coef, headroom + 0.5, held, new, sending, optional)
    assert send.tolist() == [True, False, True]
    assert why == {0: (0, 1)}
def test_default_shares_are_safe_all_at_once_at_the_worst_hour() -> None:
    shares = default_shares(SITE, NOW)
    assert set(shares) == {e.id for e in SITE.evses}
    assert sum(shares.values()) == pytest.approx(32.0 - 12.0)  # the 12 kW evening peak
    profile = default_profile(SITE.evse("TS001"), shares["TS001"], "A", profile_id=1,
                              stack_level=0)
    period = profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]
    assert period == {"startPeriod": 0, "limit": 14.0, "numberPhases": 1}  # 3.33 kW -> 14 A


def test_phase_limits_split_over_the_evses_on_each_phase() -> None:
    site = Site("s", (Node("t", limit_kw=100.0, phase_limit_a=40.0),),
                (Evse("a", "t", phases=("L1",)), Evse("b", "t", phases=("L1",)),
                 Evse("c", "t", phases=("L2",))))
    shares = default_shares(site, NOW)
    assert shares["a"] == pytest.approx(20 * 0.23)  # 40 A on L1 over two EVSEs
    assert shares["c"] == pytest.approx(site.evse("c").max_kw)  # 32 A < 40 A alone


def test_a_reservation_is_load_on_every_node_above_and_its_own_phase() -> None:
    site = Site("s", (Node("t", limit_kw=50.0, phase_limit_a=100.0),
                      Node("f", parent="t", limit_kw=20.0)),
                (Evse("a", "f", phases=("L1",)), Evse("b", "f", phases=("L2",))))
    until = NOW + 2 * HOUR
    reserved = with_reservations(site, [Reservation("a", Limit.constant(7360.0), until,
                                                    "rejected")], NOW, NOW + 24 * HOUR)
    for node_id in ("t", "f"):
        node = reserved.node(node_id)
        before = sample(node.load_kw, [NOW], [NOW + HOUR], "max", 0.0)[0]
        after = sample(node.load_kw, [until], [until + HOUR], "max", 0.0)[0]
        assert (before, after) == (pytest.approx(7.36), pytest.approx(0.0))
    # 32 A on L1, 10.7 A of it already counted as balanced load: L1 carries the rest,
    # and the other phases get back what the balanced count put on them
    unbalanced = reserved.node("t").phase_load_a
    for phase, amps in (("L1", 32 - 32 / 3), ("L2", -32 / 3), ("L3", -32 / 3)):
        now_a, later_a = sample(unbalanced[phase], [NOW, until], [NOW + HOUR, until + HOUR],
                                "max", 0.0)
        assert (now_a, later_a) == (pytest.approx(amps, abs=0.05), 0.0)
    assert reserved.node("t").phase_limit_a == 100.0
    assert reserved.node("f").phase_load_a == {}  # no phase limits there


def test_reservations_count_on_their_phase_only_while_they_hold() -> None:
    """A reservation from a car's departure costs nothing before it, and reservations
    spread over the three phases offset each other."""
    site = Site("s", (Node("t", limit_kw=500.0, phase_limit_a=400.0),),
                tuple(Evse(f"e{i}", "t", phases=(p,)) for i, p in
                      enumerate(("L1", "L2", "L3") * 10)))
    leave = NOW + 3 * HOUR
    reserved = with_reservations(site, [
        Reservation(e.id, Limit.constant(7360.0), NOW + 24 * HOUR, "idle", start=leave)
        for e in site.evses], NOW, NOW + 24 * HOUR)
    node = reserved.node("t")
    before = sample(node.load_kw, [NOW], [leave], "max", 0.0)[0]
    after = sample(node.load_kw, [leave], [leave + HOUR], "max", 0.0)[0]
    assert (before, after) == (0.0, pytest.approx(30 * 7.36))
    for phase in PHASES:
        assert sample(node.phase_load_a[phase], [NOW, leave], [leave, leave + HOUR],
                      "max", 0.0) == pytest.approx([0.0, 0.0], abs=1e-6)


def test_a_driver_who_opted_out_charges_at_full_power_now() -> None:
    """'Charge now' from the HTTP API reaches the engine as an opted-out session."""
    from smart_charging import Planner, Prices

    evse = SITE.evse("TS001")
    ordered = SessionFacts("tx-ordered", NOW, NOW + 12 * HOUR, 7_000.0, 0.0)
    now_please = SessionFacts("tx-now", NOW, NOW + 12 * HOUR, 7_000.0, 0.0, charge_now=True)
    plans = {}
    for facts in (ordered, now_please):
        session, summary = session_for(facts, evse, SITE, NOW, overstay=HOUR,
                                       margin=timedelta(minutes=15))
        assert session.opted_out is facts.charge_now and summary["charge_now"] is facts.charge_now
        plan = Planner().plan(SITE, [session], Prices(), NOW)
        plans[facts.charge_now] = plan.schedule_for(evse.id)
    first_kw = {k: v.power_w[0] / 1000 for k, v in plans.items()}
    assert first_kw[True] == pytest.approx(evse.max_kw, rel=0.05)
    assert first_kw[True] > first_kw[False]
