"""What a simulated station is made of: the specs it is built from and the state of its
EVSEs and transactions while it runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from simulators.ev import EV
from simulators.ocppj import SUBPROTOCOL


@dataclass
class EvseSpec:
    evse_id: int
    kind: str = "AC"  # "AC" or "DC"
    phases: int = 3
    max_current_a: float = 32.0
    min_current_a: float = 6.0
    voltage_v: float = 230.0
    max_power_w: float | None = None  # DC: required; AC: derived from current and phases
    # V2X (OCPP 2.1 block Q): the EVSE can feed a bidirectional EV's energy back, at most
    # max_discharge_power_w (default: max_power_w); used only on an OCPP 2.1 connection
    bidirectional: bool = False
    max_discharge_power_w: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("AC", "DC"):
            raise ValueError("kind must be AC or DC")
        if self.max_power_w is None:
            if self.kind == "DC":
                raise ValueError("a DC EVSE needs max_power_w")
            self.max_power_w = self.max_current_a * self.voltage_v * self.phases
        if self.max_discharge_power_w is None:
            self.max_discharge_power_w = self.max_power_w if self.bidirectional else 0.0
        if self.max_discharge_power_w < 0:
            raise ValueError("max_discharge_power_w is a magnitude: not negative")


@dataclass
class StationSpec:
    station_id: str
    password: str | None = None
    evses: list[EvseSpec] = field(default_factory=lambda: [EvseSpec(1)])
    vendor: str = "SimCo"
    model: str = "Sim-22"
    serial_number: str | None = None
    firmware_version: str = "1.0.0"
    meter_interval_s: float = 60.0
    heartbeat_interval_s: float = 300.0  # until the CSMS gives one in the boot response
    rate_units: tuple[str, ...] = ("A", "W")
    periods_per_schedule: int = 24
    max_stack_level: int = 8
    max_entries: int = 16
    phases3to1: bool = False
    ocpp_version: str = "2.0.1"  # "2.0.1" or "2.1": the subprotocol it offers by default
    subprotocols: tuple[str, ...] | None = None  # None: the one of ocpp_version
    call_timeout_s: float = 30.0  # wall-clock seconds to wait for a CALLRESULT
    reconnect_backoff_s: tuple[float, float] = (5.0, 180.0)  # station-clock seconds
    reboot_on_reconnect: bool = False
    ws_ping_interval_s: float | None = None
    offline_queue_max: int = 100_000
    # E13: OCPPCommCtrlr.MessageAttempts / MessageAttemptInterval for TransactionEvent
    tx_message_attempts: int = 3
    tx_message_attempt_interval_s: float = 10.0  # station-clock seconds, x attempt number

    def __post_init__(self) -> None:
        if self.ocpp_version not in SUBPROTOCOL:
            raise ValueError(f"ocpp_version must be one of {', '.join(SUBPROTOCOL)}")
        if self.subprotocols is None:
            self.subprotocols = (SUBPROTOCOL[self.ocpp_version],)


@dataclass
class TxState:
    transaction_id: str
    started: datetime
    seq_no: int = 0
    id_token: dict | None = None
    remote_start_id: int | None = None
    charging_state: str = "EVConnected"
    authorized: bool = False
    ended: bool = False
    stop_id_token: dict | None = None  # the token that stopped it (StopAuthorized)
    reservation_id: int | None = None  # the reservation it used (H03)
    operation_mode: str | None = None  # 2.1 V2X: the mode its EVSE follows (None: not V2X)
    # 2.1 Q01: the energy transfer modes the CSMS allows (Authorize, NotifyAllowedEnergy-
    # Transfer); without a bidirectional (BPT) one the EV only charges
    allowed_energy_transfer: tuple[str, ...] = ()

    @property
    def may_discharge(self) -> bool:
        return any(mode.endswith("_BPT") or "_BPT_" in mode
                   for mode in self.allowed_energy_transfer)


@dataclass
class EvseState:
    spec: EvseSpec
    status: str = "Available"
    operative: bool = True
    ev: EV | None = None
    tx: TxState | None = None
    energy_wh: float = 0.0  # Energy.Active.Import.Register
    export_wh: float = 0.0  # Energy.Active.Export.Register (V2X)
    power_w: float = 0.0  # signed: negative while the EV discharges
    current_a: float = 0.0
    phases_in_use: int = 0
    last_update: datetime | None = None
    pending_remote_start: dict | None = None
    meter_task: asyncio.Task | None = None
    sleeper: asyncio.Task | None = None  # the meter loop's current sleep; cancel to wake it
