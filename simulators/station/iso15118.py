"""Block M on the station: the requests a station makes for an ISO 15118 EV (M01/M02
Get15118EVCertificate, M06 GetCertificateStatus), which a test triggers. The roots it keeps
(M03-M05 InstallCertificate, GetInstalledCertificateIds, DeleteCertificate) are in
security.py, with its own certificate (block A).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulators.station.core import Station


async def request_ev_certificate(station: Station, exi_request: str, action: str = "Install",
                                 schema_version: str = "urn:iso:15118:2:2013:MsgDef") -> dict:
    """M01 (Install) / M02 (Update): the EV's EXI request, passed to the CSMS."""
    return await station.call("Get15118EVCertificate", {
        "iso15118SchemaVersion": schema_version, "action": action, "exiRequest": exi_request})


async def certificate_status(station: Station, data: dict, responder_url: str) -> dict:
    """M06: the OCSP status of a certificate (its hash data), through the CSMS."""
    return await station.call("GetCertificateStatus", {
        "ocspRequestData": {**data, "responderURL": responder_url}})
