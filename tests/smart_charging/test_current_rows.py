"""Current rows for line-to-line EVSEs and a delta-wye transformer's primary: always a
safe bound of the exact phasor currents, exact when the load is balanced."""

from datetime import timedelta

import numpy as np

from smart_charging import (
    Evse,
    Node,
    Planner,
    PlanSettings,
    Prices,
    Session,
    Site,
    StepSeries,
    Wiring,
)
from smart_charging.model import PHASES
from smart_charging.problem import build_grid
from tests.smart_charging.helpers import DAY, at

V_LN = 120.0
ANGLE = {"L1": 0.0, "L2": -120.0, "L3": 120.0}
PAIRS = (("L1", "L2"), ("L2", "L3"), ("L3", "L1"))


def phasor(phase: str) -> complex:
    return complex(np.exp(1j * np.deg2rad(ANGLE[phase])))


def garage(per_pair: int = 4, extra: bool = True, phase_a: float = 100.0,
           primary_a: float | None = 240.0) -> Site:
    evses = [Evse(f"{x}{y}-{i}", "tx", wiring=Wiring.DELTA, phases=(x, y), voltage_v=208.0)
             for x, y in PAIRS for i in range(per_pair)]
    if extra:  # a single-phase and a DC charger on the same transformer
        evses.append(Evse("wye-L1", "tx", phases=("L1",), voltage_v=V_LN, max_current_a=16))
        evses.append(Evse("dc", "tx", wiring=Wiring.DC, voltage_v=V_LN, max_power_kw=10.0))
    node = Node("tx", phase_limit_a=phase_a, primary_limit_a=primary_a, voltage_ln_v=V_LN)
    return Site("garage", (node,), tuple(evses))


def exact_currents(site: Site, kw: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """|I_L| of each secondary line and |I_p - I_r| of each primary line, from phasors."""
    line = dict.fromkeys(PHASES, 0j)
    for e in site.evses:
        p = kw.get(e.id, 0.0)
        if e.wiring == Wiring.DELTA:
            x, y = e.phases
            i = p * 1000 / e.voltage_v * (phasor(x) - phasor(y)) / abs(phasor(x) - phasor(y))
            line[x] += i
            line[y] -= i
        elif e.wiring == Wiring.WYE:
            for ph in e.phases:
                line[ph] += p * 1000 / (e.voltage_v * len(e.phases)) * phasor(ph)
        else:
            for ph in PHASES:
                line[ph] += p * 1000 / (3 * e.voltage_v) * phasor(ph)
    secondary = {ph: abs(v) for ph, v in line.items()}
    primary = {p: abs(line[p] - line[PHASES[(i - 1) % 3]]) for i, p in enumerate(PHASES)}
    return secondary, primary


def worst(rows: dict[str, float], prefix: str) -> float:
    """The largest of a family of rows ("L1/0", "L1/1", ...): the bound they put on a current."""
    return max(v for q, v in rows.items() if q.split("/")[0] == prefix)


def rows_at(site: Site, kw: dict[str, float]) -> dict[str, float]:
    now = at(DAY, 12)
    sessions = [Session(f"s-{e.id}", e.id, now, now + timedelta(hours=2), 50.0)
                for e in site.evses]
    grid = build_grid(site, sessions, Prices(), now, slot_minutes=15, horizon_slots=1)
    x = np.array([kw.get(grid.sessions[j].evse_id, 0.0) for j in grid.pair_session])
    loads = grid.row_loads(x)[:, 0]
    return {q: float(v) for (_, q), v in zip(grid.rows, loads, strict=True)}


def test_rows_bound_the_exact_currents() -> None:
    site = garage()
    rng = np.random.default_rng(7)
    for _ in range(300):
        on = rng.random(len(site.evses)) < rng.uniform(0.1, 1.0)
        kw = {e.id: float(rng.uniform(0, e.max_kw)) if on[k] else 0.0
              for k, e in enumerate(site.evses)}
        rows = rows_at(site, kw)
        secondary, primary = exact_currents(site, kw)
        for p in PHASES:
            assert worst(rows, p) >= secondary[p] - 1e-9
            assert worst(rows, f"pri {p}") >= primary[p] - 1e-9


def test_rows_are_exact_for_a_balanced_load_and_a_single_group() -> None:
    site = garage(extra=False)
    kw = {e.id: 5.0 for e in site.evses}
    rows = rows_at(site, kw)
    secondary, primary = exact_currents(site, kw)
    for p in PHASES:
        assert np.isclose(worst(rows, p), secondary[p])
        assert np.isclose(worst(rows, f"pri {p}"), primary[p])
    one = {e.id: 5.0 for e in site.evses if e.phases == ("L3", "L1")}
    rows = rows_at(site, one)
    secondary, primary = exact_currents(site, one)
    for p in PHASES:
        assert np.isclose(worst(rows, p), secondary[p])
        assert np.isclose(worst(rows, f"pri {p}"), primary[p])


def test_rows_lose_little_capacity_in_any_direction() -> None:
    """Over every mix of the three line-to-line groups, the rows allow at least 96% of
    what the exact limits allow with every smaller load also inside them (nonnegative
    rows cannot use the rest: on a primary line, adding I_12 to a large I_31 can lower
    the current). The triangle bound allows 50% on a primary line."""
    site = garage(per_pair=1, extra=False)
    kw_per_a = 0.208
    grid = np.linspace(0, 1, 11)
    worst_ratio = 1.0
    for a in grid:
        for b in grid:
            for c in grid:
                if a + b + c == 0:
                    continue
                amps = {"L1L2-0": a, "L2L3-0": b, "L3L1-0": c}
                kw = {k: v * kw_per_a for k, v in amps.items()}
                rows = rows_at(site, kw)
                boxes = [exact_currents(site, {k: v * on for (k, v), on in zip(
                    kw.items(), mask, strict=True)}) for mask in np.ndindex(2, 2, 2)]
                for p in PHASES:
                    secondary = max(b[0][p] for b in boxes)
                    primary = max(b[1][p] for b in boxes)
                    if secondary > 1e-9:
                        worst_ratio = min(worst_ratio, secondary / worst(rows, p))
                    worst_ratio = min(worst_ratio, primary / worst(rows, f"pri {p}"))
    assert worst_ratio >= 0.96


def test_wye_only_node_keeps_one_row_per_phase() -> None:
    node = Node("tx", phase_limit_a=100.0, voltage_ln_v=230.0)
    evses = tuple(Evse(f"e{i}", "tx", phases=(PHASES[i % 3],)) for i in range(3))
    now = at(DAY, 12)
    sessions = [Session(f"s{i}", f"e{i}", now, now + timedelta(hours=2), 10.0) for i in range(3)]
    grid = build_grid(Site("w", (node,), evses), sessions, Prices(), now)
    assert [q for _, q in grid.rows] == list(PHASES)


def test_planner_uses_the_balanced_capacity_and_stays_inside_the_exact_limits() -> None:
    """12 line-to-line cars, 4 per pair, wanting more than the transformer gives: the
    balanced line current may reach the limit (the old triangle bound stopped at
    2/sqrt(3) of it), and no exact phasor current is ever over."""
    site = garage(extra=False, phase_a=100.0, primary_a=None)
    now = at(DAY, 12)
    sessions = [Session(f"s-{e.id}", e.id, now, now + timedelta(hours=4), 40.0)
                for e in site.evses]
    plan = Planner(PlanSettings(slot_minutes=15, horizon_slots=16)).plan(
        site, sessions, Prices(), now)
    worst = 0.0
    for t in range(len(plan.slot_starts)):
        kw = {e: plan.power_w[i, t] / 1000 for i, e in enumerate(plan.evse_ids)}
        secondary, _ = exact_currents(site, kw)
        worst = max(worst, *secondary.values())
    assert worst <= 100.0 + 1e-6
    # triangle bound: at most 50 A per pair when balanced, i.e. 86.6 A on each line
    assert worst > 95.0


def test_unbalanced_load_on_a_phase_leaves_that_phase_less_for_a_while() -> None:
    """`phase_load_a`: 30 A more on L1 for the first hour, 10 A less on L2 (a single-phase
    load the balanced count spread over all three). A car on L1 under a 40 A phase limit
    gets 10 A then 32 A; a car on L2 keeps its 32 A."""
    now = at(DAY, 12)
    hour = now + timedelta(hours=1)
    node = Node("tx", phase_limit_a=40.0, voltage_ln_v=230.0, phase_load_a={
        "L1": StepSeries((now, hour), (30.0, 0.0)),
        "L2": StepSeries((now, hour), (-10.0, 0.0))})
    evses = (Evse("on-l1", "tx", phases=("L1",)), Evse("on-l2", "tx", phases=("L2",)))
    sessions = [Session(f"s-{e.id}", e.id, now, now + timedelta(hours=4), 50.0) for e in evses]
    plan = Planner(PlanSettings(slot_minutes=15, horizon_slots=16)).plan(
        Site("w", (node,), evses), sessions, Prices(), now)
    amps = plan.power_w / 230.0
    l1, l2 = plan.evse_ids.index("on-l1"), plan.evse_ids.index("on-l2")
    assert np.all(amps[l1, :4] <= 10.0 + 1e-6) and amps[l1, :4].max() > 9.0
    assert np.allclose(amps[l1, 4:], 32.0, atol=0.5)
    assert np.allclose(amps[l2], 32.0, atol=0.5)
