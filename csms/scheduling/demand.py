"""What a running transaction asks of the engine: a stored transaction as an engine
`Session`, with its departure and energy filled in from the site's defaults where the car
or driver said nothing (the engine applies no defaults). Decisions only: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from csms.scheduling.limits import ocpp_time
from smart_charging import Evse, Session, Site

EvseKey = tuple[str, int]  # (station identity, OCPP evseId)


def evse_index(site: Site) -> dict[EvseKey, Evse]:
    """(station identity, OCPP evseId) -> the site's EVSE."""
    return {(e.station_id, e.ocpp_evse_id): e for e in site.evses}


def next_local_time(after: datetime, at: time, utc_offset: timedelta) -> datetime:
    """The first moment strictly after `after` when the site's local clock shows `at`."""
    local = after.astimezone(UTC).replace(tzinfo=None) + utc_offset
    candidate = datetime.combine(local.date(), at)
    if candidate <= local:
        candidate += timedelta(days=1)
    return (candidate - utc_offset).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionFacts:
    """What is known about a running transaction (from the transactions table)."""

    transaction_id: str
    started_at: datetime
    departure_time: datetime | None
    energy_wanted_wh: float | None
    energy_delivered_wh: float | None
    charge_now: bool = False  # the driver opted out of ordered charging (HTTP API)


def departure_for(facts: SessionFacts, site: Site, now: datetime, overstay: timedelta
                  ) -> tuple[datetime, str]:
    """When the car leaves, and where that came from ("ev", "default" or "overstay").

    A car still plugged in after its departure is planned to leave `overstay` from now:
    it still wants its energy, and soon.
    """
    if facts.departure_time is not None:
        departure, source = facts.departure_time, "ev"
    else:
        departure = next_local_time(facts.started_at, site.default_departure, site.utc_offset)
        source = "default"
    if departure <= now:
        return now + overstay, "overstay"
    return departure, source


def session_for(facts: SessionFacts, evse: Evse, site: Site, now: datetime, *,
                overstay: timedelta, margin: timedelta,
                car_max_kw: float | None = None) -> tuple[Session, dict[str, Any]]:
    """The engine Session for a transaction, and a summary of where each input came from.

    The engine is asked to finish `margin` before the departure (never before the next
    slot), so a last re-plan can still make up what rounding to whole amps left over.
    """
    departure, dep_source = departure_for(facts, site, now, overstay)
    planned_departure = max(departure - margin, min(departure, now + timedelta(minutes=15)))
    wanted_kwh = (facts.energy_wanted_wh / 1000.0 if facts.energy_wanted_wh is not None
                  else site.default_energy_kwh)
    delivered_kwh = max(0.0, (facts.energy_delivered_wh or 0.0) / 1000.0)
    session = Session(
        id=facts.transaction_id,
        evse_id=evse.id,
        arrival=min(facts.started_at, now),
        departure=planned_departure,
        energy_wanted_kwh=wanted_kwh,
        energy_delivered_kwh=delivered_kwh,
        max_power_kw=car_max_kw,
        transaction_id=facts.transaction_id,
        opted_out=facts.charge_now,
    )
    summary = {
        "session_id": session.id,
        "evse_id": evse.id,
        "station_id": evse.station_id,
        "ocpp_evse_id": evse.ocpp_evse_id,
        "arrival": ocpp_time(session.arrival),
        "departure": ocpp_time(departure),
        "departure_source": dep_source,
        "planned_departure": ocpp_time(planned_departure),
        "energy_wanted_kwh": round(wanted_kwh, 3),
        "energy_source": "ev" if facts.energy_wanted_wh is not None else "default",
        "energy_delivered_kwh": round(delivered_kwh, 3),
        "energy_needed_kwh": round(session.energy_needed_kwh, 3),
        "car_max_kw": None if car_max_kw is None else round(car_max_kw, 3),
        "charge_now": facts.charge_now,
        "evse_max_kw": round(evse.max_kw, 3),
    }
    return session, summary

