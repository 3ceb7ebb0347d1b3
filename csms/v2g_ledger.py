"""What is known about V2G for a set of transactions, read from the store in three queries
and handed to the rules in csms/v2g.py: the vehicle (by the transaction's id token), the
session's own terms, what the car reported, what was exported and the latest SoC.
One reader for the API, the dashboard and the scheduler, so they cannot disagree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from csms.store import Store
from csms.store.transactions import Transaction
from csms.store.v2g import SessionV2g, TxKey, Vehicle
from csms.v2g import Accounting, EvV2x, Terms


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
