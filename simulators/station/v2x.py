"""Block Q, bidirectional power transfer (OCPP 2.1): what the CSMS allows a transaction.

The discharging itself is the physics' (signed composite schedule) and the profile rules'
(smart_charging.py); here only NotifyAllowedEnergyTransfer (Q01), which changes the energy
transfer modes a running transaction may use, e.g. after the driver opts in to V2G.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station


async def notify_allowed_energy_transfer(station: Station, req: dict) -> Reply:
    tx_id = req["transactionId"]
    for evse in station.evses.values():
        tx = evse.tx
        if tx is not None and tx.transaction_id == tx_id and not tx.ended:
            tx.allowed_energy_transfer = tuple(req["allowedEnergyTransfer"])
            station._recompute(evse)
            return {"status": "Accepted"}, None
    return rejected("TxNotFound", f"no transaction {tx_id} runs here"), None
