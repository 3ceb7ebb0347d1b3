"""The driver's cost as a pure function: energy by time of use, time, parking, fee,
rounding."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from csms.billing import (
    DriverTariff,
    PriceBand,
    Usage,
    final_text,
    money,
    running_text,
    session_cost,
    tariff_text,
)

D = Decimal
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 20:00 in China (UTC+8)
CN = timedelta(hours=8)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cn_tou() -> DriverTariff:
    """Peak 08:00-22:00 at 1.20, valley 22:00-08:00 at 0.40 CNY/kWh (China time)."""
    return DriverTariff(
        id="cn", currency="CNY", utc_offset=CN,
        bands=(PriceBand(time(8), time(22), D("1.20"), "peak"),
               PriceBand(time(22), time(8), D("0.40"), "valley")),
    )


def test_flat_energy_price_is_kwh_times_price() -> None:
    tariff = DriverTariff(id="flat", currency="EUR", price_per_kwh=D("0.35"))
    usage = Usage(until=at(60), readings=[(at(0), 1000.0), (at(30), 5000.0), (at(60), 11_000.0)])
    cost = session_cost(tariff, usage)
    assert cost.energy_kwh == D("10.000")
    assert cost.energy == D("3.50")
    assert cost.total == D("3.50")


def test_time_of_use_energy_is_priced_in_the_band_it_was_drawn() -> None:
    # 20:00-22:00 China time is peak, 22:00-24:00 valley; 10 kWh in each
    usage = Usage(until=at(240), readings=[(at(0), 0.0), (at(120), 10_000.0),
                                           (at(240), 20_000.0)])
    cost = session_cost(cn_tou(), usage)
    assert cost.energy == D("16.00")  # 10 x 1.20 + 10 x 0.40


def test_a_rise_across_a_band_boundary_is_split_in_proportion_to_time() -> None:
    # one reading before 22:00 and one 30 minutes after: 3 kWh over 60 minutes
    usage = Usage(until=at(150), readings=[(at(90), 0.0), (at(150), 3000.0)])
    cost = session_cost(cn_tou(), usage)
    assert cost.energy == D("2.40")  # 1.5 kWh x 1.20 + 1.5 kWh x 0.40


def test_no_band_applies_uses_the_flat_price() -> None:
    tariff = DriverTariff(id="x", currency="CNY", price_per_kwh=D("0.80"), utc_offset=CN,
                          bands=(PriceBand(time(8), time(12), D("1.50")),))
    usage = Usage(until=at(60), readings=[(at(0), 0.0), (at(60), 1000.0)])  # 20:00-21:00
    assert session_cost(tariff, usage).energy == D("0.80")


def test_a_meter_that_runs_back_is_not_billed() -> None:
    tariff = DriverTariff(id="flat", currency="EUR", price_per_kwh=D("1"))
    usage = Usage(until=at(30), readings=[(at(0), 5000.0), (at(10), 100.0), (at(20), 1100.0)])
    assert session_cost(tariff, usage).energy_kwh == D("1.000")


def test_charging_and_parked_time_with_a_grace_period() -> None:
    tariff = DriverTariff(id="t", currency="CNY", price_per_hour_charging=D("0.50"),
                          price_per_hour_parked=D("2.00"),
                          parking_grace=timedelta(minutes=30))
    usage = Usage(until=at(300), states=[
        (at(0), "EVConnected"),   # 10 min parked before charging
        (at(10), "Charging"),     # 2 h charging
        (at(130), "SuspendedEV"),  # 170 min parked after
    ])
    cost = session_cost(tariff, usage)
    assert cost.charging_hours == D("2.0000")
    assert cost.charging_time == D("1.00")
    # 180 min parked, the first 30 free: 2.5 h x 2.00
    assert cost.parked_hours == D("2.5000")
    assert cost.parking == D("5.00")


def test_idle_and_unreported_time_is_not_billed() -> None:
    tariff = DriverTariff(id="t", currency="EUR", price_per_hour_charging=D("1"),
                          price_per_hour_parked=D("1"))
    usage = Usage(until=at(120), states=[(at(30), "Idle"), (at(60), "Charging"),
                                         (at(90), "Idle")])
    cost = session_cost(tariff, usage)
    assert cost.charging_hours == D("0.5000")
    assert cost.parked_hours == D("0.0000")


def test_items_are_rounded_half_up_and_the_total_is_their_sum() -> None:
    tariff = DriverTariff(id="r", currency="EUR", price_per_kwh=D("0.125"),
                          price_per_hour_charging=D("0.125"), session_fee=D("0.005"))
    usage = Usage(until=at(60), readings=[(at(0), 0.0), (at(60), 1000.0)],
                  states=[(at(0), "Charging")])
    cost = session_cost(tariff, usage)
    assert cost.energy == D("0.13")  # 0.125 -> 0.13 (half up, not to even)
    assert cost.charging_time == D("0.13")
    assert cost.session_fee == D("0.01")
    assert cost.total == D("0.27") == cost.energy + cost.charging_time + cost.session_fee


def test_minor_units_follow_the_currency() -> None:
    assert money(D("123.5"), "JPY") == D("124")
    assert money(D("1.2345"), "KWD") == D("1.235")
    assert money(D("1.005"), "CNY") == D("1.01")


def test_session_fee_alone_and_a_free_tariff() -> None:
    fee = DriverTariff(id="f", currency="CNY", session_fee=D("2"))
    assert session_cost(fee, Usage(until=at(0))).total == D("2.00")
    free = DriverTariff(id="free", currency="CNY")
    cost = session_cost(free, Usage(until=at(60), readings=[(at(0), 0.0), (at(60), 7000.0)]))
    assert cost.total == D("0.00") and cost.energy_kwh == D("7.000")


def test_running_and_final_cost_agree() -> None:
    tariff = cn_tou()
    readings = [(at(m), m * 100.0) for m in range(0, 241, 10)]
    running = session_cost(tariff, Usage(until=at(240), readings=readings))
    final = session_cost(tariff, Usage(until=at(240), readings=list(reversed(readings))))
    assert running == final  # order of delivery does not matter


def test_texts_for_drivers() -> None:
    tariff = DriverTariff(id="cn", currency="CNY", utc_offset=CN, price_per_kwh=D("0.8"),
                          bands=(PriceBand(time(8), time(22), D("1.2")),),
                          price_per_hour_parked=D("2"), parking_grace=timedelta(minutes=30),
                          session_fee=D("1"))
    text = tariff_text(tariff)
    assert text == ("Tariff: 1.20 CNY/kWh 08:00-22:00; 0.80 CNY/kWh other times; "
                    "parking 2.00 CNY/h after 30 min; session fee 1.00 CNY")
    assert tariff_text(DriverTariff(id="d", currency="EUR", description="x" * 600)) == "x" * 512
    cost = session_cost(tariff, Usage(until=at(0)))
    assert running_text(cost) == "Cost so far: 1.00 CNY (0.000 kWh)"
    assert final_text(cost) == "Total cost: 1.00 CNY (0.000 kWh)"
