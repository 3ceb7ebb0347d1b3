"""Tariff messages for drivers (block O with the site's TOU tariff), English and Chinese."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.display import MAX_CONTENT, PriceSlot, tariff_message
from simulators.station import display as station_display
from tests.e2e.conftest import StationFactory

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"
# full-width punctuation, as Chinese text is written
OPEN, CLOSE, COLON = "\uff08", "\uff09", "\uff1a"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITE_FILE),), interval_s=3600, debounce_s=0,
        tx_default_profile=False))


async def test_O01_tariff_message_in_chinese_from_the_sites_tariff(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("TS001")
    r = await admin.post("/api/stations/TS001/display-messages/tariff",
                         json={"site_id": "test-small", "language": "zh", "hours": 24})
    assert r.status_code == 201, r.text
    text = r.json()["content"]
    assert text.startswith(f"电价{COLON}现在至")
    assert f"0.36元/千瓦时{OPEN}谷{CLOSE}" in text and f"0.56元/千瓦时{OPEN}峰{CLOSE}" in text
    assert r.json()["language"] == "zh" and r.json()["ends_at"] is not None
    assert station_display.shown(station) == [text]
    r = await admin.post("/api/stations/TS001/display-messages/tariff",
                         json={"site_id": "test-small", "hours": 24})
    assert "CNY/kWh (valley)" in r.json()["content"]
    r = await admin.post("/api/stations/TS001/display-messages/tariff",
                         json={"site_id": "nope"})
    assert r.status_code == 404


def test_tariff_message_merges_equal_prices_and_fits_a_display() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)  # 20:00 in Beijing
    hour = timedelta(hours=1)
    slots = [PriceSlot(now + i * hour, now + (i + 1) * hour, 0.56 if i < 1 else 0.36,
                       "peak" if i < 1 else "valley") for i in range(24)]
    text, until = tariff_message(slots, "CNY", timedelta(hours=8), now, "en", 12)
    assert text == ("Energy price: now to 21:00 0.56 CNY/kWh (peak); "
                    "21:00-08:00 0.36 CNY/kWh (valley)")
    assert until == now + 12 * hour
    # a price that changes every slot: the text is cut to 512 characters, and so is the
    # time it is shown
    busy = [PriceSlot(now + i * hour / 4, now + (i + 1) * hour / 4, i / 100, None)
            for i in range(96)]
    text, until = tariff_message(busy, "CNY", timedelta(0), now, "en", 24)
    assert len(text) <= MAX_CONTENT and until < now + 24 * hour
    with pytest.raises(ValueError):
        tariff_message(slots, "CNY", timedelta(0), now + 48 * hour, "en", 1)
