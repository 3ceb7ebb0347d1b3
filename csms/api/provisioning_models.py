"""Bodies of the block B/C/D routes: boot holds, device model reports, network profiles,
local authorization lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from csms.api.models import Body, Model


class BootHold(Body):
    """B02/B03: hold the station's boots at Pending or Rejected; null: the usual rules."""

    hold: Literal["Pending", "Rejected"] | None = None


class BootHoldState(Model):
    station_id: str
    hold: Literal["Pending", "Rejected"] | None
    boot_status: str | None = Field(description="the answer to its newest boot")


class Report(Model):
    """A GetBaseReport / GetReport asked for, and how far its NotifyReport parts came."""

    request_id: int
    kind: Literal["base", "custom"]
    request: dict[str, Any] = Field(description="the OCPP request sent")
    status: str = Field(description="the station's answer (Accepted, Rejected, "
                        "NotSupported, EmptyResultSet), then Complete once the last part came")
    requested_at: datetime
    parts: int = Field(description="NotifyReport messages received")
    items: int = Field(description="reportData entries received")
    last_seq_no: int | None
    completed_at: datetime | None

