"""A simulated OCPP 2.0.1 or 2.1 charging station (`StationSpec.ocpp_version`; each message
checked against the connection's version): one WebSocket, a device model, EVSEs with meters,
transactions (block E), charging profiles it obeys (block K; on 2.1 with V2X, block Q, for a
bidirectional EVSE), offline queueing, and fault injection for tests.

    core.py       Station: the public surface and the transaction lifecycle
    link.py       connection, CALLs, boot, heartbeat, reconnect, offline queue and retries
    physics.py    EVs, meters, power under the composite limit (signed under V2X), meter loops
    model.py      StationSpec, EvseSpec and the running state of EVSEs and transactions
    handlers.py   the table: CSMS action -> handler in one block module
    provisioning.py (B), authorization.py (C, D), transactions.py (E, F),
    availability.py (G), smart_charging.py (K), firmware.py (L), diagnostics.py (N),
    data_transfer.py (P), v2x.py (Q, 2.1), security.py (A: its certificate, CSRs,
    installed roots)
"""

from simulators.station.core import Station
from simulators.station.link import CallFailed, ConnectionRefused, NotConnected, cancel_and_wait
from simulators.station.model import EvseSpec, EvseState, StationSpec, TxState
from simulators.station.physics import MAX_CONTROL_STEP_S

__all__ = [
    "MAX_CONTROL_STEP_S",
    "CallFailed",
    "ConnectionRefused",
    "EvseSpec",
    "EvseState",
    "NotConnected",
    "Station",
    "StationSpec",
    "TxState",
    "cancel_and_wait",
]
