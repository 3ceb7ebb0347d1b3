"""Renewal of station certificates before they expire (A02, on the CSMS's initiative).

Every `renew_check_interval_s` on the CSMS clock: each station's newest certificate in use
that expires within `renew_before_days` gets a TriggerMessage SignChargingStationCertificate,
so the station sends a fresh CSR (SignCertificate, csms/ocpp/security.py) and the CA signs
it. A station asked once is asked again a day later if it still has no newer certificate
(it was offline, or refused).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from csms.clock import Clock
from csms.commands import Commands
from csms.config import SecurityConfig
from csms.connection import CallFailed, Connections, StationOffline
from csms.store import Store

log = structlog.get_logger()

ASK_AGAIN_AFTER = timedelta(days=1)


class CertificateRenewal:
    def __init__(self, config: SecurityConfig, store: Store, commands: Commands,
                 connections: Connections, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.commands = commands
        self.connections = connections
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.config.renew_check_interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="certificate-renewal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.config.renew_check_interval_s)
            try:
                await self.check()
            except Exception as exc:  # the database may be restarting: next time
                log.warning("certificate.renewal_check_failed", error=str(exc))

    async def check(self) -> list[str]:
        """Ask each connected station whose certificate is near expiry for a new CSR; the
        stations that accepted."""
        now = self.clock.now()
        due = await self.store.certificates.due_for_renewal(
            now + timedelta(days=self.config.renew_before_days), now - ASK_AGAIN_AFTER)
        asked = []
        for cert in due:
            if not self.connections.is_connected(cert.station_id):
                continue
            try:
                reply = await self.commands.trigger_message(
                    cert.station_id, "SignChargingStationCertificate")
            except (StationOffline, CallFailed, TimeoutError) as exc:
                log.warning("certificate.renewal_not_asked", station_id=cert.station_id,
                            error=str(exc))
                continue
            await self.store.certificates.renewal_requested(cert.serial, now)
            log.info("certificate.renewal_asked", station_id=cert.station_id,
                     serial=cert.serial, not_after=cert.not_after.isoformat(),
                     status=reply.get("status"))
            if reply.get("status") == "Accepted":
                asked.append(cert.station_id)
        return asked
