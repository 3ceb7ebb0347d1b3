"""Bodies of the block B/C/D routes: boot holds, device model reports, network profiles,
local authorization lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from csms.api.models import STATION_ID, Body, Model


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



class LocalListSync(Body):
    """D01: which stations to bring up to the token table; `full` forces a Full update."""

    station_id: str | None = Field(None, pattern=STATION_ID,
                                   description="one station; left out: every connected one")
    full: bool = False


class LocalListSyncResult(Model):
    station_id: str
    update: Literal["Full", "Differential", "None"]
    status: str = Field(description="the station's answer (Accepted, Failed, "
                        "VersionMismatch), UpToDate, or why nothing was sent (Offline, "
                        "Timeout, CallError <code>)")
    version: int | None = Field(description="the list version the station holds now")
    entries: int
    messages: int


class LocalListState(Model):
    station_id: str
    version: int | None = Field(description="the version the CSMS last sent and the "
                                "station accepted; null: unknown (the next sync is Full)")
    synced_at: datetime | None
    token_table_version: int = Field(description="the newest change to the token table")
    up_to_date: bool


ProfileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class NetworkProfileBody(Body):
    """B09: an OCPP NetworkConnectionProfileType (camelCase, checked against the schema)."""

    connection_data: dict[str, Any] = Field(
        description="ocppVersion, ocppTransport, ocppCsmsUrl, messageTimeout, "
        "securityProfile, ocppInterface (and apn / vpn)")


class NetworkProfileOut(Model):
    name: str
    connection_data: dict[str, Any]
    updated_at: datetime


class NetworkProfileSend(Body):
    """B09/B10: put a stored profile in a station's slot, make it first (or last) in its
    NetworkConfigurationPriority, and optionally reset the station so it takes it."""

    profile: ProfileName
    slot: int = Field(ge=0, le=1000, description="configurationSlot")
    first: bool = True
    reset: bool = False


class NetworkProfileSent(Model):
    station_id: str
    slot: int
    profile: str
    status: str = Field(description="the station's SetNetworkProfile answer")
    priority: str | None = Field(description="NetworkConfigurationPriority asked for")
    priority_status: str | None
    reset_status: str | None


class StationNetworkProfile(Model):
    slot: int
    profile: str
    status: str
    priority: str | None
    sent_at: datetime
