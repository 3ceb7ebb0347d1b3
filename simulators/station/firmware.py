"""Block L, firmware: UpdateFirmware (L01 secure, L02 plain), as a station performs it.

The station "downloads" the image at `location` from `station.firmware.images` (what the
server at that URI holds; by default the bytes of the URI itself), so a test decides what
a download yields without an HTTP server. Progress is reported with
FirmwareStatusNotification, step by step on the station's clock:

    [DownloadScheduled] Downloading Downloaded [SignatureVerified | InvalidSignature]
    [InstallScheduled] Installing InstallRebooting Installed

A signed update (signature and signingCertificate) is verified for real: the signature over
the image's bytes with the certificate's public key (RSA PKCS#1 v1.5 or ECDSA, SHA-256). A
certificate that is not valid X.509 PEM is answered InvalidCertificate. A new UpdateFirmware
while one is under way cancels it: AcceptedCanceled (L01.FR.24, L02.FR.24). Faults to
inject: `download_fails` (each attempt; `retries` apply) and `install_fails`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from simulators.station.link import CallFailed, NotConnected
from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

log = logging.getLogger("simulators.station")


@dataclass
class FirmwareState:
    images: dict[str, bytes] = field(default_factory=dict)  # location -> image bytes
    step_s: float = 1.0  # station-clock seconds per download / install step
    download_fails: bool = False
    install_fails: bool = False
    statuses: list[tuple[int | None, str]] = field(default_factory=list)  # as sent
    task: asyncio.Task | None = None

    def image(self, location: str) -> bytes:
        return self.images.get(location, location.encode())


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def signature_valid(image: bytes, signature_b64: str, certificate_pem: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, image, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, image, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


async def notify(station: Station, request_id: int | None, status: str) -> None:
    station.firmware.statuses.append((request_id, status))
    payload: dict = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    with contextlib.suppress(NotConnected, CallFailed, TimeoutError):
        await station.call("FirmwareStatusNotification", payload)


async def _wait_until(station: Station, when: datetime | None) -> None:
    if when is not None:
        await station.clock.sleep((when - station.clock.now()).total_seconds())


async def _perform(station: Station, req: dict) -> None:
    state, fw, request_id = station.firmware, req["firmware"], req["requestId"]
    retrieve, install = _parse_time(fw["retrieveDateTime"]), _parse_time(fw.get("installDateTime"))
    if retrieve is not None and retrieve > station.clock.now():
        await notify(station, request_id, "DownloadScheduled")
        await _wait_until(station, retrieve)
    attempts = 1 + max(0, req.get("retries", 0))
    for attempt in range(attempts):
        await notify(station, request_id, "Downloading")
        await station.clock.sleep(state.step_s)
        if not state.download_fails:
            break
        if attempt + 1 < attempts:
            await station.clock.sleep(max(0, req.get("retryInterval", 0)))
    else:
        await notify(station, request_id, "DownloadFailed")
        return
    image = state.image(fw["location"])
    await notify(station, request_id, "Downloaded")
    if "signature" in fw:
        if not signature_valid(image, fw["signature"], fw["signingCertificate"]):
            await notify(station, request_id, "InvalidSignature")
            return
        await notify(station, request_id, "SignatureVerified")
    if install is not None and install > station.clock.now():
        await notify(station, request_id, "InstallScheduled")
        await _wait_until(station, install)
    await notify(station, request_id, "Installing")
    await station.clock.sleep(state.step_s)
    if state.install_fails:
        await notify(station, request_id, "InstallationFailed")
        return
    await notify(station, request_id, "InstallRebooting")
    version = fw["location"].rstrip("/").rsplit("/", 1)[-1][:50] or "new"
    station.spec.firmware_version = version
    station.device_model.put("ChargingStation", "FirmwareVersion", version)
    await notify(station, request_id, "Installed")


async def update_firmware(station: Station, req: dict) -> Reply:
    fw = req["firmware"]
    if ("signature" in fw) != ("signingCertificate" in fw):
        return rejected("MissingParam", "signature and signingCertificate go together"), None
    if "signingCertificate" in fw:
        try:
            x509.load_pem_x509_certificate(fw["signingCertificate"].encode())
        except ValueError:
            return rejected("InvalidCert", "not an X.509 PEM certificate",
                            status="InvalidCertificate"), None
    state = station.firmware
    running = state.task is not None and not state.task.done()
    if running:
        assert state.task is not None
        state.task.cancel()

    async def start() -> None:
        state.task = station._spawn(_perform(station, req))

    return {"status": "AcceptedCanceled" if running else "Accepted"}, start
