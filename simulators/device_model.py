"""The station's device model (OCPP 2.0.1 Part 1 ch. 4, Part 2 block B): components with
variables, read by GetVariables / GetBaseReport and written by SetVariables.

Only the Actual attribute is modelled. Values are kept as strings, as they travel in OCPP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

READ_ONLY = "ReadOnly"
READ_WRITE = "ReadWrite"
WRITE_ONLY = "WriteOnly"


@dataclass(slots=True)
class Variable:
    component: str
    name: str
    value: str
    data_type: str = "string"  # string decimal integer dateTime boolean OptionList ...
    mutability: str = READ_ONLY
    evse_id: int | None = None
    connector_id: int | None = None
    unit: str | None = None
    values_list: str | None = None
    instance: str | None = None  # e.g. MessageAttempts[TransactionEvent]; one per name here

    @property
    def key(self) -> tuple[str, int | None, int | None, str]:
        return (self.component, self.evse_id, self.connector_id, self.name)

    def component_ocpp(self) -> dict:
        comp: dict = {"name": self.component}
        if self.evse_id is not None:
            evse: dict = {"id": self.evse_id}
            if self.connector_id is not None:
                evse["connectorId"] = self.connector_id
            comp["evse"] = evse
        return comp

    def report_data(self) -> dict:
        attribute: dict = {"type": "Actual", "mutability": self.mutability}
        if self.mutability != WRITE_ONLY:
            attribute["value"] = self.value
        characteristics: dict = {"dataType": self.data_type, "supportsMonitoring": False}
        if self.unit:
            characteristics["unit"] = self.unit
        if self.values_list:
            characteristics["valuesList"] = self.values_list
        variable: dict = {"name": self.name}
        if self.instance is not None:
            variable["instance"] = self.instance
        return {
            "component": self.component_ocpp(),
            "variable": variable,
            "variableAttribute": [attribute],
            "variableCharacteristics": characteristics,
        }

    def accepts(self, value: str) -> bool:
        """Whether `value` fits the variable's data type."""
        try:
            if self.data_type == "integer":
                int(value)
            elif self.data_type == "decimal":
                float(value)
            elif self.data_type == "boolean":
                return value.lower() in ("true", "false")
            elif self.data_type == "OptionList" and self.values_list:
                return value in self.values_list.split(",")
            elif self.data_type in ("MemberList", "SequenceList") and self.values_list:
                allowed = set(self.values_list.split(","))
                return all(v in allowed for v in value.split(",") if v)
        except ValueError:
            return False
        if self.name == "BasicAuthPassword":  # passwordString: 16 to 40 characters (A00)
            return 16 <= len(value) <= 40
        return len(value) <= 2500


@dataclass
class DeviceModel:
    variables: dict[tuple[str, int | None, int | None, str], Variable] = field(default_factory=dict)

    def add(self, var: Variable) -> None:
        self.variables[var.key] = var

    def find(
        self, component: str, name: str, evse_id: int | None = None, connector_id: int | None = None
    ) -> Variable | None:
        return self.variables.get((component, evse_id, connector_id, name))

    def value(self, component: str, name: str, evse_id: int | None = None) -> str:
        var = self.find(component, name, evse_id)
        if var is None:
            raise KeyError(f"{component}.{name}")
        return var.value

    def number(self, component: str, name: str, evse_id: int | None = None) -> float:
        return float(self.value(component, name, evse_id))

    def flag(self, component: str, name: str) -> bool:
        return self.value(component, name).lower() == "true"

    def put(self, component: str, name: str, value: str, evse_id: int | None = None) -> None:
        """Set a value from inside the station (no mutability check)."""
        var = self.find(component, name, evse_id)
        if var is None:
            raise KeyError(f"{component}.{name}")
        var.value = value

    def _lookup(self, request: dict) -> tuple[Variable | None, str]:
        comp = request["component"]
        evse = comp.get("evse") or {}
        evse_id, connector_id = evse.get("id"), evse.get("connectorId")
        if not any(
            k[0] == comp["name"] and k[1] == evse_id and k[2] == connector_id
            for k in self.variables
        ):
            return None, "UnknownComponent"
        var = self.find(comp["name"], request["variable"]["name"], evse_id, connector_id)
        return var, "UnknownVariable" if var is None else ""

    def get_variable(self, request: dict) -> dict:
        """One GetVariableResult for one GetVariableData."""
        result: dict = {"component": request["component"], "variable": request["variable"]}
        attr_type = request.get("attributeType", "Actual")
        if attr_type != "Actual":
            result["attributeType"] = attr_type
        var, problem = self._lookup(request)
        if var is None:
            result["attributeStatus"] = problem
        elif attr_type != "Actual":
            result["attributeStatus"] = "NotSupportedAttributeType"
        elif var.mutability == WRITE_ONLY:
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = {"reasonCode": "WriteOnly"}
        else:
            result["attributeStatus"] = "Accepted"
            result["attributeValue"] = var.value
        return result

    def set_variable(self, request: dict) -> dict:
        """One SetVariableResult for one SetVariableData; applies it when accepted."""
        result: dict = {"component": request["component"], "variable": request["variable"]}
        attr_type = request.get("attributeType", "Actual")
        if attr_type != "Actual":
            result["attributeType"] = attr_type
        var, problem = self._lookup(request)
        value = str(request["attributeValue"])
        if var is None:
            result["attributeStatus"] = problem
        elif attr_type != "Actual":
            result["attributeStatus"] = "NotSupportedAttributeType"
        elif var.mutability == READ_ONLY:
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = {"reasonCode": "ReadOnly"}
        elif not var.accepts(value):
            result["attributeStatus"] = "Rejected"
            result["attributeStatusInfo"] = {"reasonCode": "InvalidValue"}
        else:
            var.value = value
            result["attributeStatus"] = "Accepted"
        return result

    def report(self, report_base: str) -> list[dict]:
        """reportData for GetBaseReport: FullInventory, ConfigurationInventory (writable
        variables) or SummaryInventory (availability and problems)."""
        selected: Iterable[Variable] = self.variables.values()
        if report_base == "ConfigurationInventory":
            selected = [v for v in selected if v.mutability != READ_ONLY]
        elif report_base == "SummaryInventory":
            selected = [v for v in selected if v.name in ("AvailabilityState", "Problem")]
        return [v.report_data() for v in selected]


def standard_device_model(
    *,
    station_id: str,
    vendor: str,
    model: str,
    serial_number: str,
    firmware_version: str,
    evses: Iterable[tuple[int, str, int, float]],
    meter_interval_s: float,
    heartbeat_interval_s: float,
    rate_units: Iterable[str],
    periods_per_schedule: int,
    max_stack_level: int,
    max_entries: int,
    phases3to1: bool,
    password: str | None,
    tx_message_attempts: int = 3,
    tx_message_attempt_interval_s: float = 10.0,
) -> DeviceModel:
    """The variables a real 2.0.1 station reports. `evses` is (id, kind, phases, max W)."""
    dm = DeviceModel()
    b = "boolean"

    def add(
        comp: str, name: str, value: object, dtype: str = "string", mut: str = READ_ONLY, **kw
    ) -> None:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        dm.add(Variable(comp, name, text, dtype, mut, **kw))

    add("ChargingStation", "Model", model)
    add("ChargingStation", "VendorName", vendor)
    add("ChargingStation", "SerialNumber", serial_number)
    add("ChargingStation", "FirmwareVersion", firmware_version)
    add(
        "ChargingStation",
        "AvailabilityState",
        "Available",
        "OptionList",
        values_list="Available,Occupied,Reserved,Unavailable,Faulted",
    )
    add("ChargingStation", "Available", True, b)
    add("ChargingStation", "SupplyPhases", max(p for _, _, p, _ in evses), "integer")
    add(
        "OCPPCommCtrlr",
        "HeartbeatInterval",
        int(heartbeat_interval_s),
        "integer",
        READ_WRITE,
        unit="s",
    )
    add("OCPPCommCtrlr", "MessageTimeout", 30, "integer", READ_WRITE, unit="s")
    # E13: how often, and how far apart, a TransactionEvent the CSMS failed to process
    # (CALLERROR or no answer) is sent again while connected
    tx = {"instance": "TransactionEvent"}
    add("OCPPCommCtrlr", "MessageAttempts", tx_message_attempts, "integer", READ_WRITE, **tx)
    add(
        "OCPPCommCtrlr",
        "MessageAttemptInterval",
        int(tx_message_attempt_interval_s),
        "integer",
        READ_WRITE,
        unit="s",
        **tx,
    )
    add("OCPPCommCtrlr", "OfflineThreshold", 60, "integer", READ_WRITE, unit="s")
    add("OCPPCommCtrlr", "RetryBackOffWaitMinimum", 5, "integer", READ_WRITE, unit="s")
    add("OCPPCommCtrlr", "RetryBackOffRepeatTimes", 5, "integer", READ_WRITE)
    add("OCPPCommCtrlr", "RetryBackOffRandomRange", 10, "integer", READ_WRITE, unit="s")
    add("OCPPCommCtrlr", "NetworkConfigurationPriority", "1", "SequenceList", READ_WRITE)
    add("SecurityCtrlr", "Identity", station_id)
    add("SecurityCtrlr", "SecurityProfile", 1 if password else 0, "integer")
    add("SecurityCtrlr", "BasicAuthPassword", password or "", "string", WRITE_ONLY)
    add("SecurityCtrlr", "OrganizationName", vendor, "string", READ_WRITE)
    add("AuthCtrlr", "Enabled", True, b, READ_WRITE)
    add("AuthCtrlr", "AuthorizeRemoteStart", False, b, READ_WRITE)
    add("AuthCtrlr", "LocalAuthorizeOffline", True, b, READ_WRITE)
    add("AuthCtrlr", "OfflineTxForUnknownIdEnabled", True, b, READ_WRITE)
    add("AuthCtrlr", "MasterPassGroupId", "", "string", READ_WRITE)
    add("AuthCacheCtrlr", "Enabled", True, b, READ_WRITE)
    add("AuthCacheCtrlr", "Available", True, b)
    add(
        "TxCtrlr",
        "TxStartPoint",
        "EVConnected",
        "MemberList",
        READ_WRITE,
        values_list="ParkingBayOccupancy,EVConnected,Authorized,PowerPathClosed,EnergyTransfer",
    )
    add(
        "TxCtrlr",
        "TxStopPoint",
        "EVConnected",
        "MemberList",
        READ_WRITE,
        values_list="ParkingBayOccupancy,EVConnected,Authorized,PowerPathClosed,EnergyTransfer",
    )
    add("TxCtrlr", "EVConnectionTimeOut", 120, "integer", READ_WRITE, unit="s")
    add("TxCtrlr", "StopTxOnEVSideDisconnect", True, b)
    add("TxCtrlr", "StopTxOnInvalidId", True, b, READ_WRITE)
    add("SampledDataCtrlr", "Enabled", True, b, READ_WRITE)
    add(
        "SampledDataCtrlr",
        "TxUpdatedInterval",
        int(meter_interval_s),
        "integer",
        READ_WRITE,
        unit="s",
    )
    add(
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC",
        "MemberList",
        READ_WRITE,
    )
    add(
        "SampledDataCtrlr",
        "TxEndedMeasurands",
        "Energy.Active.Import.Register",
        "MemberList",
        READ_WRITE,
    )
    add("AlignedDataCtrlr", "Interval", 0, "integer", READ_WRITE, unit="s")
    add("SmartChargingCtrlr", "Enabled", True, b, READ_WRITE)
    add("SmartChargingCtrlr", "Available", True, b)
    add("SmartChargingCtrlr", "RateUnit", ",".join(rate_units), "MemberList", values_list="A,W")
    add("SmartChargingCtrlr", "PeriodsPerSchedule", periods_per_schedule, "integer")
    add("SmartChargingCtrlr", "ProfileStackLevel", max_stack_level, "integer")
    add("SmartChargingCtrlr", "Entries", max_entries, "integer")
    add("SmartChargingCtrlr", "LimitChangeSignificance", 0.1, "decimal", READ_WRITE)
    add("SmartChargingCtrlr", "Phases3to1", phases3to1, b)
    add("SmartChargingCtrlr", "ExternalControlSignalsEnabled", False, b, READ_WRITE)
    add("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", False, b, READ_WRITE)
    add("DeviceDataCtrlr", "ItemsPerMessageGetReport", 20, "integer")
    add("DeviceDataCtrlr", "ItemsPerMessageGetVariables", 50, "integer")
    add("DeviceDataCtrlr", "ItemsPerMessageSetVariables", 50, "integer")
    add("ReservationCtrlr", "Enabled", True, b, READ_WRITE)
    add("ReservationCtrlr", "Available", True, b)
    add("ReservationCtrlr", "NonEvseSpecific", True, b, READ_WRITE)
    # one instance per variable name here: the Cost instances (running cost shown)
    add("TariffCostCtrlr", "Enabled", False, b, READ_WRITE, instance="Cost")
    add("TariffCostCtrlr", "Available", True, b, instance="Cost")
    add("TariffCostCtrlr", "Currency", "CNY", "string", READ_WRITE)
    add("TariffCostCtrlr", "TotalCostFallbackMessage", "Cost will be shown in the app",
        "string", READ_WRITE)
    add("LocalAuthListCtrlr", "Enabled", True, b, READ_WRITE)
    add("LocalAuthListCtrlr", "Entries", 0, "integer")
    add("LocalAuthListCtrlr", "Available", True, b)
    add("LocalAuthListCtrlr", "ItemsPerMessage", 100, "integer")
    add("LocalAuthListCtrlr", "BytesPerMessage", 16384, "integer")
    for evse_id, kind, phases, max_w in evses:
        dm.add(
            Variable(
                "EVSE",
                "AvailabilityState",
                "Available",
                "OptionList",
                READ_ONLY,
                evse_id=evse_id,
                values_list="Available,Occupied,Reserved,Unavailable,Faulted",
            )
        )
        dm.add(
            Variable("EVSE", "Power", str(max_w), "decimal", READ_ONLY, evse_id=evse_id, unit="W")
        )
        dm.add(
            Variable(
                "EVSE",
                "SupplyPhases",
                str(phases if kind == "AC" else 0),
                "integer",
                READ_ONLY,
                evse_id=evse_id,
            )
        )
        dm.add(
            Variable(
                "Connector",
                "ConnectorType",
                "cType2" if kind == "AC" else "cCCS2",
                "string",
                READ_ONLY,
                evse_id=evse_id,
                connector_id=1,
            )
        )
        dm.add(
            Variable(
                "Connector",
                "AvailabilityState",
                "Available",
                "OptionList",
                READ_ONLY,
                evse_id=evse_id,
                connector_id=1,
                values_list="Available,Occupied,Reserved,Unavailable,Faulted",
            )
        )
    return dm


def add_v2x_variables(
    dm: DeviceModel, evse_id: int, kind: str, phases: int, operation_modes: Iterable[str]
) -> None:
    """V2XChargingCtrlr of one bidirectional EVSE (OCPP 2.1 Part 2 block Q), so a CSMS can
    read what it may ask of it before sending a V2X profile."""
    ac = {1: "AC_single_phase", 2: "AC_two_phase"}.get(phases, "AC_three_phase")
    modes = f"{ac},AC_BPT" if kind == "AC" else "DC,DC_BPT"
    for name, value, dtype in (
        ("Enabled", "true", "boolean"),
        ("Available", "true", "boolean"),
        ("SupportedEnergyTransferModes", modes, "MemberList"),
        ("SupportedOperationModes", ",".join(operation_modes), "MemberList"),
    ):
        dm.add(Variable("V2XChargingCtrlr", name, value, dtype, READ_ONLY, evse_id=evse_id))
