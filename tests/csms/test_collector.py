"""When the GC policy runs its full pass (csms/collector.py `full_due`): the rule alone,
with the numbers of a 10,000-station reconnect storm. tests/api/test_gc_policy.py checks
its effect on a running CSMS."""

from csms.collector import full_due
from csms.config import GcConfig

CFG = GcConfig(freeze_interval_s=10, full_interval_s=3600, full_after_closed=0.5)


def test_no_pass_while_stations_only_connect() -> None:
    assert not full_due(CFG, 600.0, closed=0, churn=10_000, open_now=10_000)
    assert not full_due(CFG, 600.0, closed=0, churn=0, open_now=10_000)


def test_no_pass_in_the_middle_of_a_storm_then_one_when_it_settles() -> None:
    # 6,000 of 10,000 stations have reconnected: their old connections are closed, and
    # 1,200 more opened or closed in the last interval
    assert not full_due(CFG, 600.0, closed=6_000, churn=1_200, open_now=10_000)
    # the storm is over: under 1% (+10) of the open connections moved in the interval
    assert full_due(CFG, 600.0, closed=10_000, churn=100, open_now=10_000)
    assert not full_due(CFG, 600.0, closed=10_000, churn=111, open_now=10_000)


def test_few_closed_connections_wait_for_the_hour() -> None:
    assert not full_due(CFG, 600.0, closed=4_999, churn=0, open_now=10_000)
    assert full_due(CFG, 600.0, closed=5_000, churn=0, open_now=10_000)
    assert full_due(CFG, 3600.0, closed=0, churn=5_000, open_now=10_000)


def test_either_trigger_can_be_switched_off() -> None:
    off = GcConfig(freeze_interval_s=10, full_interval_s=0, full_after_closed=0)
    assert not full_due(off, 1e9, closed=10_000, churn=0, open_now=10_000)
