"""Site files (csms/sites.py): one rule for a site's id, and the scheduler on by default
once a site is listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from csms.config import SchedulerConfig, from_dict
from csms.scheduling.leases import lock_key
from csms.sites import Sites, load_site

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "config/sites"


def test_a_sites_id_is_its_file_name() -> None:
    sites = Sites.load([SITES / "residential.toml", SITES / "test-small.toml"])
    assert list(sites) == ["residential", "test-small"]
    assert sites["residential"].site.id == "residential"
    assert sites["residential"].tariff == "cn-jiangsu-residential-ev-2024"
    assert sites["residential"].prices.bands  # its tariff, found next to the sites folder
    assert set(sites.models()) == {"residential", "test-small"}


def test_an_id_in_the_file_may_only_repeat_the_file_name(tmp_path: Path) -> None:
    text = (SITES / "test-small.toml").read_text().replace("[site]\n", "[site]\nid = \"{}\"\n")
    same = tmp_path / "sites" / "north.toml"
    same.parent.mkdir()
    same.write_text(text.format("north"))
    assert load_site(same, str(SITES.parent / "tariffs"))[0].id == "north"
    other = tmp_path / "sites" / "south.toml"
    other.write_text(text.format("south-630kva"))
    with pytest.raises(ValueError, match=r"rename the file to south-630kva\.toml"):
        load_site(other, str(SITES.parent / "tariffs"))


def test_two_files_of_one_name_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "test-small.toml"
    copy.write_text((SITES / "test-small.toml").read_text())
    with pytest.raises(ValueError, match="two site files named test-small"):
        Sites.load([SITES / "test-small.toml", copy], str(SITES.parent / "tariffs"))


def test_listing_a_site_turns_the_scheduler_on_unless_it_is_turned_off() -> None:
    assert not SchedulerConfig().on
    assert SchedulerConfig(sites=("config/sites/test-small.toml",)).on
    assert not SchedulerConfig(enabled=False, sites=("config/sites/test-small.toml",)).on
    assert from_dict({"scheduler": {"sites": ["config/sites/test-small.toml"]}}).scheduler.on


def test_a_sites_lock_key_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; two processes must agree on the key."""
    assert lock_key("test-small") == lock_key("test-small") == 710_007_944
    assert 0 <= lock_key("residential") < 2**31


def test_the_shipped_solar_storage_site_has_its_battery_and_panels() -> None:
    """config/sites/solar-storage.toml: an integrated station (issue 15)."""
    sites = Sites.load([SITES / "solar-storage.toml"])
    energy = sites["solar-storage"].energy
    bess = energy.battery("bess")
    assert (bess.capacity_kwh, bess.max_discharge_kw, bess.node) == (215.0, 100.0, "transformer")
    assert energy.plant("carport-pv").node == "transformer"
    assert energy.solar_peak_kw == {"carport-pv": 120.0}
    assert sites.energy()["solar-storage"] is energy
    assert not Sites.load([SITES / "test-small.toml"])["test-small"].energy  # none: as before


def test_a_bad_storage_entry_stops_the_start_naming_file_and_field(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    text = (SITES / "solar-storage.toml").read_text().replace("capacity_kwh = 215",
                                                               "capacity_kwh = -215")
    bad = tmp_path / "sites" / "bad.toml"
    bad.parent.mkdir()
    bad.write_text(text)
    labels = {"input": "site_file", "reason": "storage_or_solar"}
    before = REGISTRY.get_sample_value("csms_rejected_inputs_total", labels) or 0.0
    with pytest.raises(ValueError, match=r"bad\.toml: \[\[storage\]\] bess: capacity_kwh"):
        load_site(bad, str(SITES.parent / "tariffs"))
    assert REGISTRY.get_sample_value("csms_rejected_inputs_total", labels) == before + 1
