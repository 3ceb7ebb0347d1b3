"""Request and response bodies of the HTTP API.

Pydantic models rather than dicts: FastAPI checks every request against them (a bad body
is a 422 naming the field and the reason) and publishes them in the OpenAPI document, so the
docs page and generated clients always match the code. Field names are snake_case; a
station's own OCPP answer is passed through as the station sent it (camelCase).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from csms.store.tokens import TOKEN_STATUSES

# OCPP 2.0.1 identifierString (the charging station identity), at most 48 characters.
STATION_ID = r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$"

TokenType = Literal["Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local",
                    "MacAddress", "NoAuthorization"]
TokenStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]
assert set(TokenStatus.__args__) == set(TOKEN_STATUSES)  # type: ignore[attr-defined]


class Body(BaseModel):
    """A request body."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored


class Model(BaseModel):
    """A response body, built from a store record's attributes."""

    model_config = ConfigDict(from_attributes=True)


# -- stations -------------------------------------------------------------------------------

class Station(Model):
    id: str
    online: bool
    created_at: datetime
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    boot_status: str | None
    last_boot_at: datetime | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    last_seen: datetime | None
    report_complete_at: datetime | None = Field(description="device model fully reported")
    has_password: bool
    security_profile: int | None = Field(
        None, description="the lowest security profile the station may connect with (A05)")
    ocpp_version: str | None = Field(
        None, description="OCPP version of its latest connection (2.0.1 or 2.1)")


class Connector(Model):
    id: int
    status: str
    updated_at: datetime


class Evse(Model):
    id: int
    connectors: list[Connector]


class Variable(Model):
    component: str
    component_instance: str
    evse_id: int
    connector_id: int
    variable: str
    variable_instance: str
    attribute_type: str
    value: str | None
    mutability: str | None
    data_type: str | None
    unit: str | None


class StationDetail(Station):
    evses: list[Evse]
    variables: list[Variable]


class StationCreate(Body):
    id: str = Field(pattern=STATION_ID, description="the station's identity (OCPP "
                    "identifierString, at most 48 characters)")
    password: str | None = Field(
        None, min_length=16, max_length=40,
        description="Basic auth password; left out: one is generated and returned once",
    )
    no_password: bool = Field(
        False, description="accept the station without authentication (development only)"
    )


class StationCreated(Model):
    id: str
    created: bool = Field(description="false: the station existed and its password was set")
    password: str | None = Field(description="the generated password, shown only this once")


# -- id tokens ------------------------------------------------------------------------------

class IdTokenFields(Body):
    status: TokenStatus = "Accepted"
    group_id: str | None = Field(None, max_length=36)
    expires_at: AwareDatetime | None = None


class IdTokenCreate(IdTokenFields):
    id_token: str = Field(min_length=1, max_length=36)
    type: TokenType = "ISO14443"


class IdToken(Model):
    id_token: str
    type: str
    status: str
    group_id: str | None
    expires_at: datetime | None


# -- transactions and sessions --------------------------------------------------------------

class Transaction(Model):
    station_id: str
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    started_at: datetime | None
    ended_at: datetime | None
    active: bool
    charging_state: str | None
    stopped_reason: str | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None = Field(description="energy delivered so far")
    departure_time: datetime | None
    energy_wanted_wh: float | None
    charge_now: bool
    needs_source: str | None = Field(description="who stated the needs: ev (ISO 15118) or api")
    cost: Decimal | None = Field(None, description="what the driver pays under their driver "
                                 "tariff: so far while running, final once ended; null "
                                 "when no tariff applies")
    currency: str | None = None
    cost_final: bool = False
    vehicle_id: str | None = Field(None, description="the vehicle its id token belongs to")
    discharged_kwh: float = Field(0.0, description="V2G: energy the car fed back "
                                  "(Energy.Active.Export.Register over the transaction)")
    v2g_cycles: float | None = Field(None, description="V2G: discharged kWh / battery kWh "
                                     "(equivalent full cycles); null when the battery "
                                     "size is unknown")
    v2g_compensation: float = Field(0.0, description="V2G: owed to the driver: discharged "
                                    "kWh x the agreed compensation per kWh")


class MeterValue(Model):
    ts: datetime
    evse_id: int
    measurand: str
    phase: str
    location: str
    context: str | None
    value: float
    unit: str | None


class TransactionDetail(Transaction):
    meter_values: list[MeterValue]


class SessionNeeds(Body):
    """What the driver wants. Fields left out keep their value."""

    departure_time: AwareDatetime | None = Field(
        None, description="when the car leaves (with a time zone)"
    )
    energy_wanted_wh: float | None = Field(
        None, gt=0, le=1_000_000, allow_inf_nan=False, description="energy to add by departure"
    )
    charge_now: bool = Field(
        False, description="opt out of ordered charging: charge at full power now"
    )


# -- V2G (issue 15) --------------------------------------------------------------------------

V2gMode = Literal["charge_only", "backup_only", "export_allowed"]
VEHICLE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class VehicleBody(Body):
    """A vehicle's standing V2G terms. `backup_only`: discharge only behind the site's
    meter, never below the reserve; `export_allowed`: may also export."""

    id_token: str | None = Field(None, min_length=1, max_length=255, description=(
        "the id token its driver charges with: how its sessions are found"))
    battery_kwh: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False)
    v2g_opted_in: bool = False
    v2g_mode: V2gMode = "charge_only"
    min_soc: float = Field(0.0, ge=0, le=1, allow_inf_nan=False,
                           description="the reserve: never discharged below this share")
    compensation_per_kwh: float = Field(0.0, ge=0, le=100, allow_inf_nan=False,
                                        description="paid to the driver per discharged kWh")


class V2gAccount(Model):
    discharged_kwh: float
    cycles: float | None = Field(description="equivalent full cycles")
    compensation: float = Field(description="owed to the driver")


class Vehicle(Model):
    id: str
    id_token: str | None
    battery_kwh: float | None
    v2g_opted_in: bool
    v2g_mode: str
    min_soc: float
    compensation_per_kwh: float
    updated_at: datetime
    totals: V2gAccount | None = Field(None, description="over all its transactions")


class SessionV2gBody(Body):
    """This session's V2G terms; a field left out (null) takes the vehicle's."""

    opted_in: bool | None = None
    mode: V2gMode | None = None
    min_soc: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    compensation_per_kwh: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)


class SessionV2g(Model):
    station_id: str
    transaction_id: str
    vehicle_id: str | None
    session_terms: dict[str, Any] = Field(description="set for this session (null: unset)")
    terms: dict[str, Any] = Field(description="in force: the session's over the vehicle's")
    ev: dict[str, Any] = Field(description="what the car reported (OCPP 2.1 V2X)")
    account: V2gAccount
    station_told: str | None = Field(None, description=(
        "after a change on a connected 2.1 station: its answer to NotifyAllowedEnergyTransfer "
        "(the modes the car may use now), or why it was not told"))


# -- commands -------------------------------------------------------------------------------

class CommandReply(Model):
    station_id: str
    action: str
    request: dict[str, Any] = Field(
        description="what was sent: the OCPP request, or the short body it was built from")
    reply: dict[str, Any] = Field(description="the station's answer (OCPP JSON, as sent)")


class CommandError(Model):
    detail: str
    code: str | None = Field(None, description="the station's CALLERROR code, if any")


class RequestStart(Body):
    id_token: str = Field(min_length=1, max_length=36)
    token_type: TokenType = "Central"
    evse_id: int | None = Field(None, ge=1)
    remote_start_id: int | None = None
    charging_profile: dict[str, Any] | None = Field(
        None, description="an OCPP ChargingProfileType (TxProfile), checked against the schema"
    )


class RequestStop(Body):
    transaction_id: str = Field(min_length=1, max_length=36)


class Reset(Body):
    type: Literal["Immediate", "OnIdle"] = "OnIdle"
    evse_id: int | None = Field(None, ge=0)


class UnlockConnector(Body):
    evse_id: int = Field(ge=1)
    connector_id: int = Field(1, ge=1)


class ChangeAvailability(Body):
    operational: bool
    evse_id: int | None = Field(None, ge=0, description="left out: the whole station")
    connector_id: int | None = Field(None, ge=1)


AttributeType = Literal["Actual", "Target", "MinSet", "MaxSet"]


class VariableRef(Body):
    component: str = Field(min_length=1, max_length=50)
    variable: str = Field(min_length=1, max_length=50)
    component_instance: str | None = Field(None, max_length=50)
    variable_instance: str | None = Field(None, max_length=50)
    evse_id: int | None = Field(None, ge=0)
    connector_id: int | None = Field(None, ge=0)
    attribute_type: AttributeType | None = None


class GetVariables(Body):
    variables: list[VariableRef] = Field(min_length=1)


class VariableValue(VariableRef):
    value: str = Field(max_length=1000)


class SetVariables(Body):
    variables: list[VariableValue] = Field(min_length=1)


class TriggerMessage(Body):
    requested_message: Literal[
        "BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
        "MeterValues", "SignChargingStationCertificate", "SignV2GCertificate",
        "StatusNotification", "TransactionEvent", "SignCombinedCertificate",
        "PublishFirmwareStatusNotification",
    ]
    evse_id: int | None = Field(None, ge=0)
    connector_id: int | None = Field(None, ge=1)


ProfilePurpose = Literal["ChargingStationExternalConstraints", "ChargingStationMaxProfile",
                         "TxDefaultProfile", "TxProfile"]


class SetChargingProfile(Body):
    evse_id: int = Field(ge=0, description="0: the whole station")
    charging_profile: dict[str, Any] = Field(
        description="an OCPP ChargingProfileType, checked against the OCPP schema"
    )


class ClearChargingProfile(Body):
    charging_profile_id: int | None = None
    evse_id: int | None = Field(None, ge=0)
    purpose: ProfilePurpose | None = None
    stack_level: int | None = Field(None, ge=0)


class GetCompositeSchedule(Body):
    evse_id: int = Field(ge=0)
    duration_s: int = Field(gt=0, le=7 * 86_400)
    charging_rate_unit: Literal["W", "A"] | None = None


# -- the caller -----------------------------------------------------------------------------

class WhoAmI(Model):
    name: str
    role: str
    permissions: list[str]
    nodes: list[str]
