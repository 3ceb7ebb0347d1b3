"""Every CSMS-initiated call the station answers: action -> handler, by functional block.

A handler is `async def handler(station, request) -> (response, after)`: it is given the
validated request payload and returns the CALLRESULT payload, plus optionally a coroutine
function the station runs once the response is sent (a report, a reboot, a transaction
start). An action missing here is answered with NotImplemented.

A new block: one module beside these (see data_transfer.py for the smallest) and its lines here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from simulators.station import (
    authorization,
    availability,
    data_transfer,
    diagnostics,
    display,
    firmware,
    provisioning,
    reservation,
    security,
    smart_charging,
    tariff_cost,
    transactions,
    v2x,
)
from simulators.station.replies import Reply

if TYPE_CHECKING:
    from simulators.station.core import Station

StationHandler = Callable[["Station", dict], Awaitable[Reply]]

HANDLERS: dict[str, StationHandler] = {
    # B provisioning
    "GetVariables": provisioning.get_variables,
    "SetVariables": provisioning.set_variables,
    "GetBaseReport": provisioning.get_base_report,
    "GetReport": provisioning.get_report,
    "SetNetworkProfile": provisioning.set_network_profile,
    "Reset": provisioning.reset,
    # C, D authorization
    "ClearCache": authorization.clear_cache,
    "SendLocalList": authorization.send_local_list,
    "GetLocalListVersion": authorization.get_local_list_version,
    # E, F transactions and remote control
    "RequestStartTransaction": transactions.request_start_transaction,
    "RequestStopTransaction": transactions.request_stop_transaction,
    "GetTransactionStatus": transactions.get_transaction_status,
    "UnlockConnector": transactions.unlock_connector,
    "TriggerMessage": transactions.trigger_message,
    # G availability
    "ChangeAvailability": availability.change_availability,
    # H reservation
    "ReserveNow": reservation.reserve_now,
    "CancelReservation": reservation.cancel_reservation,
    # I tariff and cost
    "CostUpdated": tariff_cost.cost_updated,
    # K smart charging
    "SetChargingProfile": smart_charging.set_charging_profile,
    "ClearChargingProfile": smart_charging.clear_charging_profile,
    "GetChargingProfiles": smart_charging.get_charging_profiles,
    "GetCompositeSchedule": smart_charging.get_composite_schedule,
    # A security (and the certificate messages of M)
    "CertificateSigned": security.certificate_signed,
    "InstallCertificate": security.install_certificate,
    "GetInstalledCertificateIds": security.get_installed_certificate_ids,
    "DeleteCertificate": security.delete_certificate,
    # L firmware
    "UpdateFirmware": firmware.update_firmware,
    # N diagnostics
    "GetLog": diagnostics.get_log,
    "SetVariableMonitoring": diagnostics.set_variable_monitoring,
    "ClearVariableMonitoring": diagnostics.clear_variable_monitoring,
    "GetMonitoringReport": diagnostics.get_monitoring_report,
    "SetMonitoringBase": diagnostics.set_monitoring_base,
    "SetMonitoringLevel": diagnostics.set_monitoring_level,
    "CustomerInformation": diagnostics.customer_information,
    # O display messages
    "SetDisplayMessage": display.set_display_message,
    "GetDisplayMessages": display.get_display_messages,
    "ClearDisplayMessage": display.clear_display_message,
    # P data transfer
    "DataTransfer": data_transfer.data_transfer,
    # Q bidirectional power transfer (2.1 only: NotImplemented on a 2.0.1 connection)
    "NotifyAllowedEnergyTransfer": v2x.notify_allowed_energy_transfer,
}
