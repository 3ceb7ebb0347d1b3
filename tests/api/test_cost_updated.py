"""Block I02 by CostUpdated: while a car charges, the CSMS sends the running cost at an
interval to a station that shows cost, and the final cost with the Ended answer."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from csms.app import Csms
from csms.config import BillingConfig, Config
from simulators.ev import EV
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, billing=BillingConfig(cost_updated_interval_s=0.5))


async def test_I02_cost_updated_sent_while_charging(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    assert (await operator.put("/api/driver-tariffs/flat", json={
        "currency": "CNY", "price_per_kwh": "100"})).status_code == 201
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001", meter_interval_s=1.0, start=False)
    station.device_model.put("TariffCostCtrlr", "Enabled", "true")
    await station.start()
    # the CSMS learns that the station shows cost from its device model
    report = await operator.post("/api/stations/CS001/commands/get-base-report",
                                 json={"reportBase": "FullInventory"})
    assert report.status_code == 200, report.text

    async def reported() -> bool:
        return any(v.variable == "Enabled" and v.variable_instance == "Cost"
                   for v in await csms.store.devices.variables("CS001", "TariffCostCtrlr"))
    await eventually(reported)
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2))
    assert await station.present_token(1, "DRIVER-1") == "Accepted"
    assert "Tariff: 100.00 CNY/kWh" in station.display  # I01
    transaction_id = station.transaction_id(1)
    assert transaction_id

    async def updated() -> bool:
        return "CostUpdated" in station.received_calls and station.costs.get(
            transaction_id, 0) > 0
    await eventually(updated, timeout=15)
    await station.unplug(1)

    async def final() -> dict | None:
        tx = (await client("viewer").get(f"/api/transactions/CS001/{transaction_id}")).json()
        return tx if tx["cost_final"] else None
    tx = await eventually(final)
    # what the station shows last is the CSMS's final cost, and it is the meter's energy
    # at the price
    assert Decimal(str(station.costs[transaction_id])) == Decimal(tx["cost"])
    assert Decimal(tx["cost"]) == (Decimal(str(tx["energy_wh"])) / 10).quantize(Decimal("0.01"))
    assert station.display[-1].startswith(f"Total cost: {tx['cost']} CNY")
