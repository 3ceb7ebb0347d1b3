"""In-process events that the scheduler and live feeds subscribe to.

Publishing never blocks a handler: a subscriber that falls behind loses events (and it is
logged), it never slows a station down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

log = structlog.get_logger()


@dataclass(frozen=True)
class StationConnected:
    station_id: str
    at: datetime


@dataclass(frozen=True)
class StationDisconnected:
    station_id: str
    at: datetime


@dataclass(frozen=True)
class TransactionChanged:
    station_id: str
    transaction_id: str
    evse_id: int | None
    event_type: str
    charging_state: str | None
    at: datetime
    # the event carried the driver's id token: whose terms (V2G) apply may have changed
    identified: bool = False


@dataclass(frozen=True)
class ChargingNeedsChanged:
    station_id: str
    evse_id: int
    transaction_id: str | None
    departure_time: datetime | None
    energy_amount_wh: float | None


@dataclass(frozen=True)
class PowerSampled:
    station_id: str
    evse_id: int
    at: datetime
    power_w: float


@dataclass(frozen=True)
class GridEventChanged:
    """A grid event was created or cancelled through the API (its site re-plans)."""

    site_id: str
    event_id: int
    node: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    status: str
    change: str  # created | cancelled
    at: datetime


@dataclass(frozen=True)
class SiteSettingsChanged:
    """A node's static limit or the site's tariff was set through the API (it re-plans)."""

    site_id: str
    what: str  # e.g. "limit of transformer", "tariff"
    at: datetime


@dataclass(frozen=True)
class SecurityEventReported:
    """A station reported a security event (A04); `critical` per the spec's list."""

    station_id: str
    type: str
    critical: bool
    tech_info: str | None
    at: datetime


@dataclass(frozen=True)
class ReservationChanged:
    """A reservation was made, answered, cancelled, expired, removed or used (block H)."""

    station_id: str
    reservation_id: int
    evse_id: int | None
    status: str
    at: datetime


@dataclass(frozen=True)
class FirmwareStatusChanged:
    """A station reported progress on a firmware update (FirmwareStatusNotification)."""

    station_id: str
    request_id: int
    status: str
    outcome: str  # in_progress | installed | failed | cancelled
    at: datetime


@dataclass(frozen=True)
class StationAlert:
    """A station reported an event (NotifyEvent), stored as an alert."""

    station_id: str
    alert_id: int
    severity: int | None  # the monitor's severity (0 danger ... 9 debug), if known
    component: str
    variable: str
    actual_value: str
    cleared: bool
    at: datetime


@dataclass(frozen=True)
class ExternalLimitChanged:
    """A station reported an external limit set or cleared (K11-K14): its site re-plans."""

    station_id: str
    evse_id: int  # 0: the whole station
    source: str
    change: str  # set | cleared
    at: datetime


@dataclass(frozen=True)
class ChargingProfilesCleared:
    """Profiles were cleared on a station through the API (K10): the scheduler forgets what
    those EVSEs held and sends again. None: any EVSE / purpose / id."""

    station_id: str
    evse_id: int | None
    purpose: str | None
    profile_id: int | None
    at: datetime


Event = (
    StationConnected | StationDisconnected | TransactionChanged | ChargingNeedsChanged
    | PowerSampled | GridEventChanged | SiteSettingsChanged | SecurityEventReported
    | ReservationChanged
    | FirmwareStatusChanged | StationAlert
    | ExternalLimitChanged | ChargingProfilesCleared
)


class EventBus:
    """Subscribers in this process; in a cluster, `forward` also hands each event published
    here to the broker, and events from other processes come in through `deliver`."""

    def __init__(self) -> None:
        self._subscribers: list[asyncio.Queue[Event]] = []
        self.forward: Callable[[Event], None] | None = None

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.remove(queue)

    def publish(self, event: Event) -> None:
        self.deliver(event)
        if self.forward is not None:
            self.forward(event)

    def deliver(self, event: Event) -> None:
        """To this process's subscribers only."""
        for queue in self._subscribers:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("events.dropped", event=type(event).__name__)
