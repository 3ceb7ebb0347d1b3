"""Demand-response programmes are configuration ([vpp.programmes.NAME])."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from csms.config import VppConfig, from_dict, load
from csms.dispatch import programmes
from vpp import Programme

ROOT = Path(__file__).resolve().parents[2]


def test_programmes_are_configuration() -> None:
    rules = programmes(from_dict({"vpp": {"programmes": {
        "peak": {"min_kw": 1000, "min_duration_minutes": 60, "confidence": "p50"}}}}).vpp)
    assert rules["peak"] == Programme("peak", 1000, timedelta(hours=1), "p50")
    assert set(programmes(VppConfig())) == {"interruptible", "invitation"}
    assert programmes(VppConfig())["interruptible"].min_duration == timedelta(hours=2)
    for bad in ({"x": {"min_kw": -1}}, {"x": {"confidence": "p99"}}, {"x": {"size": 1}}):
        with pytest.raises(ValueError):
            VppConfig(programmes=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Programme("x", confidence="p99")  # type: ignore[arg-type]


def test_the_shipped_config_names_the_default_programmes() -> None:
    config = load(ROOT / "config" / "csms.toml")
    assert programmes(config.vpp) == programmes(VppConfig())


def test_a_programme_says_how_its_dispatches_are_settled() -> None:
    rules = programmes(from_dict({"vpp": {"programmes": {"evening": {
        "baseline": "plan", "threshold": 0.5, "pay_cap": 1.0, "penalty_per_kwh": 2.0},
        "daytime": {"baseline_days": 10, "adjustment": "multiplicative"}}}}).vpp)
    assert (rules["evening"].baseline, rules["evening"].threshold,
            rules["evening"].pay_cap) == ("plan", 0.5, 1.0)
    assert (rules["daytime"].baseline, rules["daytime"].baseline_days,
            rules["daytime"].adjustment) == ("similar_days", 10, "multiplicative")
    for bad in ({"baseline": "yesterday"}, {"adjustment": "fudge"}, {"baseline_days": 0},
                {"baseline_days": 31}, {"threshold": 3}, {"pay_cap": True}):
        with pytest.raises(ValueError):
            VppConfig(programmes={"x": bad})


def test_an_openadr_ven_answers_deltas_under_a_configured_programme() -> None:
    with pytest.raises(ValueError, match="programme 'nope'"):
        from_dict({"openadr": {"vtn_url": "http://vtn.example/OpenADR2/Simple/2.0b",
                               "ven_name": "v", "portfolio": "p", "programme": "nope"}})
    ok = from_dict({"openadr": {"vtn_url": "http://vtn.example/OpenADR2/Simple/2.0b",
                                "ven_name": "v", "portfolio": "p"}})
    assert ok.openadr.programme == "invitation"
