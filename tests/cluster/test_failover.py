"""Failover, as an operator would see it: two `csms serve` nodes on one database and one
broker, stations charging on both, sites planned by both; node a is killed (SIGKILL)
mid-transaction. Its stations reconnect to b and replay what was not acknowledged, b
takes a's sites and re-plans them, every charging station gets a profile again, and no
acknowledged event is lost or stored twice. Driven by bench/failover.py, small."""

from __future__ import annotations

from bench.failover import parser, run

TAKEOVER_S = 15.0  # the target; lease_retry_s (5 s) makes it ~5 s, the rest slack


async def test_a_node_killed_mid_transaction_loses_nothing_and_its_sites_move(
    postgres_url: str,
) -> None:
    args = parser().parse_args(["--stations", "8", "--sites", "2", "--warmup", "8",
                                "--after", "12", "--generators", "1", "--tx-every", "1",
                                "--backoff", "0.5"])
    result = await run(postgres_url, args)
    assert result["sites_on_a"] >= 1, result  # a planned something when it died
    assert result["a_stations"] >= 1 and result["a_stations_not_back"] == 0, result
    assert result["lease_taken_s"] is not None and result["lease_taken_s"] < TAKEOVER_S
    assert result["replanned_s"] is not None and result["replanned_s"] < TAKEOVER_S
    assert result["charging_without_profile_after_kill"] == 0, result
    assert result["events_acked"] > 8, result  # the charging stations kept reporting
    assert result["acked_not_stored"] == 0 and result["stored_twice"] == 0, result
