"""The published adaptive-scheduling baseline (bench/acn_adaptive.py, our implementation):
small acnportal simulations, skipped where the benchmark extra (acnportal) is missing."""

import numpy as np
import pytest

acnsim = pytest.importorskip("acnportal.acnsim")

from bench.acn_adaptive import make_adaptive_algo  # noqa: E402


def _simulate(evs_spec, transformer_cap):
    events = []
    for n, (station, arr, dep, est, kwh) in enumerate(evs_spec):
        battery = acnsim.Battery(capacity=kwh, init_charge=0.0, max_power=100.0)
        ev = acnsim.EV(arr, dep, kwh, station, f"s{n}", battery, estimated_departure=est)
        events.append(acnsim.PluginEvent(arr, ev))
    network = acnsim.sites.caltech_acn(basic_evse=False, voltage=208,
                                       transformer_cap=transformer_cap)
    algo = make_adaptive_algo()
    start = __import__("datetime").datetime(2019, 7, 1)
    sim = acnsim.Simulator(network, algo, acnsim.EventQueue(events), start, period=5,
                           verbose=False)
    sim.run()
    return sim, network, algo


def test_alone_a_car_charges_at_full_rate_from_the_first_period() -> None:
    # quick charge: the earliest periods weigh most
    sim, network, algo = _simulate([("CA-308", 0, 40, 40, 5.0)], transformer_cap=50)
    i = network.station_ids.index("CA-308")
    assert sim.pilot_signals[i, 0] == 32
    assert sim.ev_history["s0"].energy_delivered == pytest.approx(5.0, abs=1e-6)
    assert algo.fallbacks == []


def test_tight_transformer_whole_amps_and_no_limit_exceeded() -> None:
    stations = ["CA-308", "CA-304", "CA-307", "CA-322", "CA-324", "CA-305", "CA-309",
                "CA-493", "CA-325", "CA-508"]
    spec = [(s, 2 * n, 60 + 7 * n, 50 + 9 * n, 4.0 + n) for n, s in enumerate(stations)]
    sim, network, algo = _simulate(spec, transformer_cap=15)
    pilots = sim.pilot_signals
    assert np.allclose(pilots, np.round(pilots))
    for k, sid in enumerate(network.station_ids):
        if sid in ("CA-322", "CA-493"):  # ClipperCreek: 0, 8, 16, 24, 32 A only
            assert set(np.unique(pilots[k])) <= {0, 8, 16, 24, 32}
        else:
            assert set(np.unique(pilots[k])) <= {0, *range(6, 33)}
    excess = np.abs(network.constraint_current(pilots)) - network.magnitudes[:, None]
    assert excess.max() <= 1e-6
    assert np.isclose(excess.max(), 0, atol=1.0)  # the limit binds: capacity is used
    assert algo.fallbacks == []
