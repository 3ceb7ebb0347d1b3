"""What is known about V2G for a set of transactions, read from the store in three queries
and handed to the rules in csms/v2g.py: the vehicle (by the transaction's id token), the
session's own terms, what the car reported, what was exported and the latest SoC.
One reader for the API, the dashboard, the scheduler and the flexibility forecast, so they
cannot disagree: `lenders` says which running sessions may discharge, and how much."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from csms.store import Store
from csms.store.transactions import Transaction
from csms.store.v2g import SessionV2g, TxKey, Vehicle
from csms.v2g import (
    V2X_COMPONENT,
    Accounting,
    EvV2x,
    Terms,
    device_says_bidirectional,
    engine_terms,
    max_discharge_kw,
    remaining_kwh,
)
from smart_charging import Evse, Session, Site


@dataclass(frozen=True)
class V2gFacts:
    vehicle: Vehicle | None
    session: SessionV2g | None
    exported_wh: float
    metered_soc: float | None

    @property
    def session_terms(self) -> Terms:
        s = self.session
        if s is None:
            return Terms()
        return Terms(s.opted_in, s.mode, s.min_soc, s.compensation_per_kwh)

    @property
    def vehicle_terms(self) -> Terms:
        v = self.vehicle
        if v is None:
            return Terms(False, "charge_only", 0.0, 0.0)
        return Terms(v.v2g_opted_in, v.v2g_mode, v.min_soc, v.compensation_per_kwh)

    @property
    def terms(self) -> Terms:
        """The session's terms over the vehicle's."""
        return self.session_terms.over(self.vehicle_terms)

    @property
    def ev(self) -> EvV2x:
        s = self.session
        if s is None:
            return EvV2x()
        return EvV2x(s.ev_bidirectional, s.ev_battery_kwh, s.ev_soc, s.ev_max_discharge_w,
                     s.ev_min_v2x_energy_wh)

    @property
    def battery_kwh(self) -> float | None:
        """The car's own figure, else the vehicle's."""
        return self.ev.battery_kwh or (self.vehicle.battery_kwh if self.vehicle else None)

    @property
    def soc(self) -> float | None:
        """The latest metered SoC, else the one the car stated with its needs."""
        return self.metered_soc if self.metered_soc is not None else self.ev.soc_percent

    @property
    def account(self) -> Accounting:
        return Accounting.of(self.exported_wh, self.battery_kwh,
                             self.terms.compensation_per_kwh)


async def v2g_facts(store: Store, txs: Sequence[Transaction]) -> dict[TxKey, V2gFacts]:
    keys = [(t.station_id, t.transaction_id) for t in txs]
    tokens = sorted({t.id_token for t in txs if t.id_token})
    vehicles = await store.v2g.vehicles_by_token(tokens) if tokens else {}
    sessions = await store.v2g.sessions(keys)
    metered = await store.v2g.metered(keys)
    out: dict[TxKey, V2gFacts] = {}
    for t, key in zip(txs, keys, strict=True):
        exported, soc = metered.get(key, (0.0, None))
        out[key] = V2gFacts(vehicles.get(t.id_token or ""), sessions.get(key), exported, soc)
    return out


@dataclass(frozen=True)
class Lenders:
    """The V2G facts of a site's running sessions (by EVSE id) and how much each EVSE may
    discharge now (kW, 0: not at all), as the site's plan and its forecast both use them."""

    facts: Mapping[str, V2gFacts]
    discharge_kw: Mapping[str, float]

    def session(self, session: Session, evse: Evse) -> tuple[Session, str]:
        """The session with its V2G terms when it may discharge, and why (not); a V2G
        session's need counts what it fed back, which the driver gets back."""
        facts = self.facts.get(evse.id)
        if facts is None:
            return session, "no V2G facts"
        terms, why = engine_terms(facts.terms, facts.ev, facts.battery_kwh, facts.soc,
                                  self.discharge_kw.get(evse.id, 0.0))
        if terms is None:
            return session, why
        need = remaining_kwh(session.energy_wanted_kwh, session.energy_delivered_kwh,
                             facts.exported_wh / 1000.0)
        return replace(session, energy_wanted_kwh=need, energy_delivered_kwh=0.0,
                       v2g=terms), why

    def site(self, site: Site) -> Site:
        """The site with only what can discharge now bidirectional (2.1 only)."""
        return replace(site, evses=tuple(
            replace(e, v2g=self.discharge_kw.get(e.id, 0.0) > 0,
                    max_discharge_kw=self.discharge_kw.get(e.id) or None)
            for e in site.evses))


async def lenders(store: Store, site: Site, records: Mapping[str, Transaction],
                  versions: Mapping[str, str | None],
                  devices: Callable[[str], Awaitable[Sequence[Any]]]) -> Lenders:
    """Which of the running transactions (`records`, by EVSE id) may discharge and how
    much: only over OCPP 2.1 (`versions` by station), when the site file, the station's
    device model (`devices`: its V2XChargingCtrlr variables) or the car says it is
    bidirectional (csms/v2g.py)."""
    by_key = await v2g_facts(store, list(records.values()))
    facts = {evse_id: by_key[(tx.station_id, tx.transaction_id)]
             for evse_id, tx in records.items()}
    discharge: dict[str, float] = {}
    reported: dict[str, Sequence[Any]] = {}
    for evse_id in records:
        evse = site.evse(evse_id)
        version = versions.get(evse.station_id)
        if version == "2.1" and evse.station_id not in reported:
            reported[evse.station_id] = await devices(evse.station_id)
        device = device_says_bidirectional(reported.get(evse.station_id, ()),
                                           evse.ocpp_evse_id)
        discharge[evse_id] = max_discharge_kw(evse, version, device, facts[evse_id].ev)
    return Lenders(facts, discharge)


def stored_devices(store: Store) -> Callable[[str], Awaitable[Sequence[Any]]]:
    """A station's V2X device variables as stored (for readers that do not ask it)."""
    async def read(station_id: str) -> Sequence[Any]:
        return await store.devices.variables(station_id, V2X_COMPONENT)
    return read
