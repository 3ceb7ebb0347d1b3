"""Firmware updates (L01/L02) and rollouts: sending UpdateFirmware, and the runner that
moves every running rollout forward.

Each update is a row (csms.store.firmware) whose id is the requestId the station echoes in
FirmwareStatusNotification (csms.ocpp.firmware records those). The rules of a rollout (who
updates next, what is stalled, when it is done) are the pure `csms.rollout.next_step`; the
runner here only reads the rows, asks it, and acts, on the injected clock. It ticks every
`tick_s`; nothing is lost if the CSMS restarts, as the state is all in the database.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from csms.clock import Clock, parse_ocpp, to_ocpp
from csms.commands import Commands
from csms.connection import CallFailed, StationOffline
from csms.events import EventBus, FirmwareStatusChanged
from csms.frames import FrameError, Payload
from csms.ocpp.bounds import INT32_MAX
from csms.rollout import ACCEPTED_REPLIES, RolloutPolicy, next_step
from csms.store import Store
from csms.store.firmware import Firmware, FirmwareUpdate, Rollout

log = structlog.get_logger()


def update_firmware_request(
    request_id: int, firmware: Firmware, retries: int | None, retry_interval_s: int | None
) -> Payload:
    body: Payload = {"location": firmware.location,
                     "retrieveDateTime": to_ocpp(firmware.retrieve_at)}
    if firmware.install_at is not None:
        body["installDateTime"] = to_ocpp(firmware.install_at)
    if firmware.signature is not None:
        body["signature"] = firmware.signature
    if firmware.signing_certificate is not None:
        body["signingCertificate"] = firmware.signing_certificate
    request: Payload = {"requestId": request_id, "firmware": body}
    if retries is not None:
        request["retries"] = retries
    if retry_interval_s is not None:
        request["retryInterval"] = retry_interval_s
    return request


class FirmwareUpdates:
    def __init__(self, store: Store, commands: Commands, clock: Clock, events: EventBus,
                 tick_s: float = 5.0) -> None:
        self.store = store
        self.commands = commands
        self.clock = clock
        self.events = events
        self.tick_s = tick_s
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    async def update(
        self, station_id: str, firmware: Firmware, retries: int | None = None,
        retry_interval_s: int | None = None, *, created_by: str,
        rollout_id: int | None = None,
    ) -> FirmwareUpdate:
        """Store the update, send UpdateFirmware, record the answer. Never raises for the
        station's failures: they are the update's status (NoAnswer, Offline, CallError)."""
        repo = self.store.firmware
        made = await repo.add_update(station_id, self.commands.next_request_id(), firmware,
                                     retries, retry_interval_s, created_by, self.clock.now(),
                                     rollout_id)
        request = update_firmware_request(made.request_id, firmware, retries,
                                          retry_interval_s)
        try:
            reply = await self.commands.call(station_id, "UpdateFirmware", request)
        except StationOffline:
            result = await repo.set_reply(made.id, None, "station not connected", "Offline",
                                          "failed", self.clock.now())
        except TimeoutError:
            result = await repo.set_reply(made.id, None, "no answer in time", "NoAnswer",
                                          "failed", self.clock.now())
        except (CallFailed, FrameError) as exc:
            code = getattr(exc, "code", "FormatViolation")
            result = await repo.set_reply(made.id, None, f"CALLERROR {code}"[:200],
                                          "CallError", "failed", self.clock.now())
        else:
            status = str(reply["status"])
            reason = (reply.get("statusInfo") or {}).get("reasonCode")
            accepted = status in ACCEPTED_REPLIES
            result = await repo.set_reply(
                made.id, status, reason, "Accepted" if accepted else status,
                "in_progress" if accepted else "failed", self.clock.now())
            if status == "AcceptedCanceled":
                await repo.cancel_others(station_id, made.id, self.clock.now())
        assert result is not None
        log.info("firmware.update", station_id=station_id, request_id=made.request_id,
                 status=result.status, rollout_id=rollout_id)
        return result

    async def track(self, station_id: str, request: Payload, reply: Payload) -> None:
        """An UpdateFirmware sent through the command route: kept as an update like any
        other, so its FirmwareStatusNotifications are applied to it."""
        def int32(value: object) -> int | None:
            return value if isinstance(value, int) and 0 <= value <= INT32_MAX else None

        request_id = int32(request["requestId"])
        if request_id is None:  # not one a notification can name back
            return
        fw = request["firmware"]
        install = fw.get("installDateTime")
        firmware = Firmware(fw["location"], parse_ocpp(fw["retrieveDateTime"]),
                            parse_ocpp(install) if install else None, fw.get("signature"),
                            fw.get("signingCertificate"))
        repo, now = self.store.firmware, self.clock.now()
        made = await repo.add_update(station_id, request_id, firmware,
                                     int32(request.get("retries")),
                                     int32(request.get("retryInterval")), "command", now)
        status = str(reply["status"])
        accepted = status in ACCEPTED_REPLIES
        await repo.set_reply(made.id, status, (reply.get("statusInfo") or {}).get("reasonCode"),
                             "Accepted" if accepted else status,
                             "in_progress" if accepted else "failed", now)
        if status == "AcceptedCanceled":
            await repo.cancel_others(station_id, made.id, now)

    # ----------------------------------------------------------------- rollouts

    async def start_rollout(
        self, station_ids: list[str], firmware: Firmware, retries: int | None,
        retry_interval_s: int | None, policy: RolloutPolicy, *, created_by: str,
    ) -> Rollout:
        rollout = await self.store.firmware.add_rollout(
            station_ids, firmware, retries, retry_interval_s, policy, created_by,
            self.clock.now())
        log.info("firmware.rollout_started", rollout_id=rollout.id, stations=len(station_ids),
                 max_concurrent=policy.max_concurrent)
        self.wake()
        return rollout

    def wake(self) -> None:
        """Advance the rollouts now rather than at the next tick."""
        self._wake.set()

    async def advance(self, rollout: Rollout) -> None:
        """One step of one rollout: fail what stalled, start what may start."""
        repo, now = self.store.firmware, self.clock.now()
        stations = await repo.rollout_stations(rollout.id)
        step = next_step(rollout.policy, [s.target for s in stations], now)
        by_id = {s.station_id: s for s in stations}
        for station_id in step.stalled:
            update_id = by_id[station_id].update_id
            if update_id is not None:
                await repo.fail_stalled(update_id, now)
                log.warning("firmware.update_stalled", station_id=station_id,
                            request_id=update_id, rollout_id=rollout.id)
        await asyncio.gather(*(
            self.update(station_id, rollout.firmware, rollout.retries,
                        rollout.retry_interval_s, created_by=rollout.created_by,
                        rollout_id=rollout.id)
            for station_id in step.start))
        if step.finished and await repo.finish_rollout(rollout.id, "completed",
                                                       self.clock.now()):
            log.info("firmware.rollout_completed", rollout_id=rollout.id)

    async def advance_all(self) -> None:
        for rollout in await self.store.firmware.rollouts(status="running", limit=1000):
            await self.advance(rollout)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="firmware-rollouts"),
                       asyncio.create_task(self._listen(), name="firmware-events")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _listen(self) -> None:
        """An update that ends frees a slot: advance at once, not at the next tick."""
        queue = self.events.subscribe()
        try:
            while True:
                event = await queue.get()
                if isinstance(event, FirmwareStatusChanged) and event.outcome != "in_progress":
                    self.wake()
        finally:
            self.events.unsubscribe(queue)

    async def _run(self) -> None:
        while True:
            try:
                await self.advance_all()
            except Exception:  # a bad row or a database blip must not end the runner
                log.exception("firmware.rollouts_failed")
            self._wake.clear()
            sleep = asyncio.ensure_future(self.clock.sleep(self.tick_s))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                woken.cancel()
