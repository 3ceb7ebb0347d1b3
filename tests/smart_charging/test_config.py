from datetime import timedelta

import numpy as np
import pytest

from smart_charging import site_from_dict
from smart_charging.model import Wiring
from tests.smart_charging.helpers import DAY, at, jiangsu_prices, residential_site


def test_residential_site_loads_from_toml() -> None:
    site = residential_site()
    root = site.root
    assert root.id == "transformer"
    assert root.limit_kw == pytest.approx(630 * 0.9)
    assert root.phase_limit_a == pytest.approx(630_000 / (3 * 230) * 0.9)
    assert len(site.evses) == 120
    per_phase = {p: sum(1 for e in site.evses if e.phases == (p,)) for p in ("L1", "L2", "L3")}
    assert per_phase == {"L1": 40, "L2": 40, "L3": 40}
    e = site.evses[0]
    assert e.wiring == Wiring.WYE and e.max_kw == pytest.approx(32 * 230 / 1000)
    assert site.utc_offset == timedelta(hours=8)


def test_household_load_is_read_in_local_time() -> None:
    site = residential_site()
    starts = [at(DAY, 20), at(DAY, 3)]
    ends = [s + timedelta(minutes=15) for s in starts]
    load = site.root.load_kw.over(starts, ends, "max")
    assert list(load) == [378.0, 121.0]


def test_jiangsu_tariff_bands() -> None:
    prices = jiangsu_prices()
    starts = [at(DAY, 12), at(DAY, 20, 45), at(DAY, 21), at(DAY, 23), at(DAY, 7, 45)]
    ends = [s + timedelta(minutes=15) for s in starts]
    assert np.allclose(prices.energy_price(starts, ends), [0.5583, 0.5583, 0.3583, 0.3583,
                                                           0.3583])


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown node"):
        site_from_dict({"site": {"id": "x"}, "nodes": [{"id": "t", "limit_kw": 10}],
                        "evses": [{"id": "e", "node": "nope"}]})
    with pytest.raises(ValueError, match="exactly one root"):
        site_from_dict({"nodes": [{"id": "a", "limit_kw": 1}, {"id": "b", "limit_kw": 1}]})
    with pytest.raises(ValueError, match="two phases"):
        site_from_dict({"nodes": [{"id": "t", "limit_kw": 10}],
                        "evses": [{"id": "e", "node": "t", "wiring": "delta",
                                   "phases": ["L1"]}]})


def test_timed_limit_from_config() -> None:
    site = site_from_dict({
        "site": {"id": "x", "utc_offset": "+08:00"},
        "nodes": [{"id": "t", "limit_kw": 100, "timed_limits": [
            {"start": "2026-11-23T19:00:00+08:00", "end": "2026-11-23T21:00:00+08:00",
             "limit_kw": 40}]}],
    })
    starts = [at(DAY, 18, 45), at(DAY, 19), at(DAY, 21)]
    ends = [s + timedelta(minutes=15) for s in starts]
    assert list(site.root.limit_over(starts, ends)) == [100.0, 40.0, 100.0]
