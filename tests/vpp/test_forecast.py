"""The flexibility forecast: the engine, re-planned to follow the forecast's shed or absorb,
still gives every session its energy; opted-out cars are not flexible; history drives the
expected arrivals and the band."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_charging import Evse, Node, Prices, Session, Site, Wiring
from smart_charging.model import V2gMode, V2gTerms
from tests.smart_charging.helpers import (
    DAY,
    at,
    evening_sessions,
    jiangsu_prices,
    residential_site,
)
from vpp import (
    PastSession,
    engine_check,
    expected,
    learn,
    share_holds,
    site_flexibility,
    total,
)

SITE = residential_site()
PRICES = jiangsu_prices()
NOW = at(DAY, 21)
SESSIONS = [s for s in evening_sessions(SITE, DAY) if s.arrival <= NOW][:60]
TWO_HOURS = timedelta(hours=2)


@pytest.fixture(scope="module")
def flex():  # type: ignore[no-untyped-def]
    return site_flexibility(SITE, SESSIONS, PRICES, NOW, TWO_HOURS)


@pytest.mark.parametrize("first", [4, 12, 20, 30])
@pytest.mark.parametrize("direction", ["down", "up"])
def test_the_engine_holds_the_forecast_and_keeps_every_sessions_energy(
        flex, first: int, direction: str) -> None:  # type: ignore[no-untyped-def]
    band = flex.shed_kw.p50 if direction == "down" else flex.absorb_kw.p50
    kw = band[first]
    sign = -1 if direction == "down" else 1
    target = [(flex.slot_starts[k], flex.slot_ends[k],
               max(0.0, flex.baseline_kw.p50[k] + sign * kw)) for k in range(first, first + 8)]
    load, served = engine_check(SITE, SESSIONS, PRICES, NOW, target)
    assert served
    followed = load[first:first + 8] - np.array([kw for _, _, kw in target])
    assert float(np.abs(followed).mean()) < 0.05 * max(kw, 20.0) + 3.0


def test_the_band_and_the_baseline(flex) -> None:  # type: ignore[no-untyped-def]
    assert len(flex.slot_starts) == 96 and flex.slot_starts[0] == NOW
    assert flex.status == "solved" and flex.sessions == len(SESSIONS)
    # nothing is plugged in and nothing expected: every scenario is the same
    assert flex.shed_kw.p90 == flex.shed_kw.p10
    # the valley (from 00:00 local) holds the load; it can be shed there, not before
    assert max(flex.baseline_kw.p50[:4]) < 1.0 and max(flex.shed_kw.p50[12:24]) > 50
    assert all(s <= b + 1e-6 for s, b in zip(flex.shed_kw.p50, _window_max(flex), strict=True))


def _window_max(flex):  # type: ignore[no-untyped-def]
    b = flex.baseline_kw.p50
    return [max(b[i:i + 8]) for i in range(len(b))]


def test_opted_out_cars_are_not_flexible() -> None:
    now_only = [replace(s, opted_out=True) for s in SESSIONS]
    flex = site_flexibility(SITE, now_only, PRICES, NOW, TWO_HOURS)
    assert max(flex.shed_kw.p50) == 0 and max(flex.absorb_kw.p50) == 0
    assert max(flex.baseline_kw.p50) > 100  # they charge, at once


def test_history_adds_expected_cars_with_a_band() -> None:
    later = at(DAY, 15)
    plugged = [s for s in SESSIONS if s.arrival < later]
    days = [DAY.date() - timedelta(days=k) for k in range(1, 29)]
    history = []
    for k, d in enumerate(days):  # 18:00-19:00 local: 10 to 30 cars, by day
        n = 10 + (k * 7) % 21
        for i in range(n):
            arrival = DAY.replace(year=d.year, month=d.month, day=d.day, hour=18,
                                  minute=(i * 59) // n)
            history.append(PastSession(arrival, arrival + timedelta(hours=12), 12.0,
                                       opted_out=i % 10 == 9))
    model = learn(history, SITE.utc_offset, days[-1], days[0])
    stats = model.stats(at(DAY, 18, 30))
    assert stats is not None and stats.p90 < stats.p50 < stats.p10
    assert stats.opted_out_share == pytest.approx(0.1, abs=0.03)
    assert learn(history, SITE.utc_offset, date(2020, 1, 2), date(2020, 1, 1)).buckets == {}
    cars = expected(model, SITE, plugged, later)
    assert len(cars) == int(np.ceil(stats.p10))
    assert all(at(DAY, 18) <= c.session.arrival < at(DAY, 19) for c in cars)
    assert sum(c.session.opted_out for c in cars) >= 1
    flex = site_flexibility(SITE, plugged, PRICES, later, TWO_HOURS, cars)
    assert flex.expected["p90"] < flex.expected["p50"] < flex.expected["p10"]
    i = flex.slot_of(at(DAY, 23, 30))
    assert i is not None
    assert flex.shed_kw.p90[i] <= flex.shed_kw.p50[i] <= flex.shed_kw.p10[i]
    assert flex.shed_kw.p90[i] > 0 and flex.shed_kw.p10[i] > flex.shed_kw.p90[i]


def test_a_portfolio_is_the_sum_of_its_sites(flex) -> None:  # type: ignore[no-untyped-def]
    both = total([flex, replace(flex, site_ids=("other",))])
    assert both.site_ids == (SITE.id, "other")
    assert both.shed_kw.p50[20] == pytest.approx(2 * flex.shed_kw.p50[20], abs=1e-3)
    with pytest.raises(ValueError):
        total([])


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_random_sites_keep_every_sessions_energy_under_the_forecast(data) -> None:  # type: ignore[no-untyped-def]
    """Any small site (with or without a tighter feeder), any window: the engine follows
    baseline minus the P50 shed (or plus the absorb) and every session still gets its
    energy."""
    n = data.draw(st.integers(1, 6))
    limit = data.draw(st.floats(10, 60))
    feeder = data.draw(st.none() | st.floats(4, 30))  # a tighter feeder under the root
    nodes = (Node("root", limit_kw=limit),) if feeder is None else (
        Node("root", limit_kw=limit), Node("a", parent="root", limit_kw=feeder),
        Node("b", parent="root"))
    site = Site("s", nodes, tuple(Evse(f"e{i}", "root" if feeder is None else "ab"[i % 2])
                                  for i in range(n)))
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    sessions = []
    for i in range(n):
        arrive = data.draw(st.integers(0, 6 * 4)) * 15
        stay = data.draw(st.integers(2 * 4, 12 * 4)) * 15
        energy = data.draw(st.floats(2, 30))
        sessions.append(Session(f"s{i}", f"e{i}", now + timedelta(minutes=arrive),
                                now + timedelta(minutes=arrive + stay), energy,
                                opted_out=data.draw(st.booleans()) and i == 0))
    hours = data.draw(st.integers(1, 3))
    flex = site_flexibility(site, sessions, Prices(flat_price=1.0), now,
                            timedelta(hours=hours))
    first = data.draw(st.integers(1, 40))
    up = data.draw(st.booleans())
    kw = (flex.absorb_kw if up else flex.shed_kw).p50[first]
    target = [(flex.slot_starts[k], flex.slot_ends[k],
               max(0.0, flex.baseline_kw.p50[k] + (kw if up else -kw)))
              for k in range(first, first + 4 * hours)]
    _, served = engine_check(site, sessions, Prices(flat_price=1.0), now, target)
    assert served


def test_a_full_feeder_cannot_make_up_what_its_cars_shed() -> None:
    """Two cars under a 7.4 kW feeder need nearly all it carries until they leave: they
    can shed next to nothing, whatever the root's room. Two cars under the other feeder
    shed freely. The forecast counts the make-up room of every limit, not the root's only,
    and the engine holds it with every car served."""
    site = Site("s", (Node("root", limit_kw=100.0), Node("a", parent="root", limit_kw=7.4),
                      Node("b", parent="root")),
                tuple(Evse(f"e{i}", "aabb"[i]) for i in range(4)))
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    leave = now + timedelta(hours=4)
    sessions = [Session(f"s{i}", f"e{i}", now, leave, 14.0 if i < 2 else 10.0)
                for i in range(4)]
    flex = site_flexibility(site, sessions, Prices(flat_price=1.0), now, timedelta(hours=1))
    first = 4
    kw = flex.shed_kw.p50[first]
    free = site_flexibility(replace(site, nodes=(Node("root", limit_kw=100.0), Node(
        "a", parent="root"), Node("b", parent="root"))), sessions, Prices(flat_price=1.0),
        now, timedelta(hours=1))
    assert kw < free.shed_kw.p50[first] - 3  # the full feeder's cars shed next to nothing
    target = [(flex.slot_starts[k], flex.slot_ends[k],
               max(0.0, flex.baseline_kw.p50[k] - kw)) for k in range(first, first + 4)]
    _, served = engine_check(site, sessions, Prices(flat_price=1.0), now, target)
    assert served


def _v2g_site(lend: bool, n: int = 4) -> tuple[Site, list[Session]]:
    """Four cars at 15 kW bidirectional DC chargers, 10 kWh wanted over 8 h, batteries
    at 45 of 60 kWh with a 20% reserve; `lend`: their drivers opted in to V2G."""
    site = Site("s", (Node("root", limit_kw=100.0),), tuple(
        Evse(f"v{i}", "root", wiring=Wiring.DC, max_power_kw=15.0, v2g=True, rate_unit="W")
        for i in range(n)))
    terms = V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, 45.0, min_soc=0.2) if lend else None
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    return site, [Session(f"s{i}", f"v{i}", now, now + timedelta(hours=8), 10.0, v2g=terms)
                  for i in range(n)]


def test_v2g_cars_shed_below_zero_and_get_their_energy_back() -> None:
    """V2G cars can shed more than they draw: they discharge through the window (at
    most their power, above their reserve) and charge it back before they leave. The
    engine holds that negative target and every driver still leaves with their energy."""
    first, now = 4, datetime(2026, 12, 7, 10, tzinfo=UTC)
    plain = site_flexibility(*_v2g_site(False), Prices(flat_price=1.0), now, TWO_HOURS)
    site, sessions = _v2g_site(True)
    flex = site_flexibility(site, sessions, Prices(flat_price=1.0), now, TWO_HOURS)
    assert plain.shed_kw.p50[first] <= max(plain.baseline_kw.p50[first:first + 8]) + 1e-6
    lent = flex.shed_kw.p50[first] - flex.baseline_kw.p50[first + 7]
    assert lent == pytest.approx(4 * 15.0, abs=0.5)  # every car at its discharge power
    kw = flex.shed_kw.p50[first]
    target = [(flex.slot_starts[k], flex.slot_ends[k], flex.baseline_kw.p50[k] - kw)
              for k in range(first, first + 8)]
    load, served = engine_check(site, sessions, Prices(flat_price=1.0), now, target)
    assert served
    assert max(load[first:first + 8]) < -55  # the site feeds back through the window
    # a nearly empty battery lends nothing below its reserve
    low = [replace(s, v2g=replace(s.v2g, energy_now_kwh=13.0)) for s in sessions
           if s.v2g is not None]
    little = site_flexibility(site, low, Prices(flat_price=1.0), now, TWO_HOURS)
    assert little.shed_kw.p50[first] - little.baseline_kw.p50[first + 7] == pytest.approx(
        4 * (13.0 - 12.0) * 0.95 / 2, abs=0.2)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_random_v2g_sites_keep_every_sessions_energy_under_the_forecast(data) -> None:  # type: ignore[no-untyped-def]
    """Any small site of V2G and plain cars, any battery, any window: the engine follows
    baseline minus the P50 shed and every session still gets its energy."""
    n = data.draw(st.integers(1, 4))
    limit = data.draw(st.floats(10, 60))
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    evses, sessions = [], []
    for i in range(n):
        lends = data.draw(st.booleans())
        evses.append(Evse(f"v{i}", "root", wiring=Wiring.DC, max_power_kw=data.draw(
            st.floats(7, 22)), v2g=lends, rate_unit="W"))
        arrive = data.draw(st.integers(0, 4 * 4)) * 15
        stay = data.draw(st.integers(3 * 4, 10 * 4)) * 15
        terms = V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, data.draw(st.floats(10, 55)),
                         min_soc=data.draw(st.floats(0.1, 0.5)),
                         max_discharge_kw=data.draw(st.none() | st.floats(3, 11))
                         ) if lends else None
        sessions.append(Session(f"s{i}", f"v{i}", now + timedelta(minutes=arrive),
                                now + timedelta(minutes=arrive + stay),
                                data.draw(st.floats(2, 25)), v2g=terms))
    site = Site("s", (Node("root", limit_kw=limit),), tuple(evses))
    hours = data.draw(st.integers(1, 2))
    flex = site_flexibility(site, sessions, Prices(flat_price=1.0), now,
                            timedelta(hours=hours))
    first = data.draw(st.integers(1, 24))
    kw = flex.shed_kw.p50[first]
    target = [(flex.slot_starts[k], flex.slot_ends[k], flex.baseline_kw.p50[k] - kw)
              for k in range(first, first + 4 * hours)]
    _, served = engine_check(site, sessions, Prices(flat_price=1.0), now, target)
    assert served


def test_the_engine_holds_a_share_the_forecast_offers_and_not_an_impossible_one() -> None:
    """What an offer's check asks of the engine: the forecast's shed for one site holds
    with every car served; for cars there only through the window it does not."""
    site, sessions = _v2g_site(False)
    now = datetime(2026, 12, 7, 10, tzinfo=UTC)
    flex = site_flexibility(site, sessions, Prices(flat_price=1.0), now, TWO_HOURS)
    first = 4

    def steps(kw: float) -> list[tuple[datetime, datetime, float]]:
        return [(flex.slot_starts[k], flex.slot_ends[k], flex.baseline_kw.p50[k] - kw)
                for k in range(first, first + 8)]

    shed = flex.shed_kw.p50[first]
    assert shed > 1
    assert share_holds(site, sessions, [], Prices(flat_price=1.0), now, steps(shed), "p90")
    # cars that come for the window only could not charge at all under it
    only = [replace(s, arrival=now + timedelta(hours=1), departure=now + timedelta(hours=3))
            for s in sessions]
    assert not share_holds(site, only, [], Prices(flat_price=1.0), now, steps(shed), "p90")
