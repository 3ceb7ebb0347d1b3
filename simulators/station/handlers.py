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
    display,
    iso15118,
    provisioning,
    smart_charging,
    transactions,
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
    # K smart charging
    "SetChargingProfile": smart_charging.set_charging_profile,
    "ClearChargingProfile": smart_charging.clear_charging_profile,
    "GetChargingProfiles": smart_charging.get_charging_profiles,
    "GetCompositeSchedule": smart_charging.get_composite_schedule,
    # M ISO 15118 certificates
    "InstallCertificate": iso15118.install_certificate,
    "GetInstalledCertificateIds": iso15118.get_installed_certificate_ids,
    "DeleteCertificate": iso15118.delete_certificate,
    # O display messages
    "SetDisplayMessage": display.set_display_message,
    "GetDisplayMessages": display.get_display_messages,
    "ClearDisplayMessage": display.clear_display_message,
    # P data transfer
    "DataTransfer": data_transfer.data_transfer,
}
