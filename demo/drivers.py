"""The drivers' app: a driver whose car does not speak ISO 15118 tells the CSMS when they
leave and how much energy they need, over the HTTP API (PUT /api/sessions/...), the way a
phone app would. Without it the CSMS plans such a car with the site's defaults."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from typing import Any

from demo.clock import NightClock
from simulators.clock import to_ocpp
from simulators.fleet import Fleet

log = logging.getLogger(__name__)
POLL_S = 60.0  # simulated seconds between looks at the cars that have arrived


class DriverApp:
    def __init__(self, api: str, token: str, fleet: Fleet, clock: NightClock) -> None:
        self.api = api.rstrip("/")
        self.token = token
        self.fleet = fleet
        self.clock = clock
        self.told: set[str] = set()  # session ids whose needs the CSMS has

    async def run(self) -> None:
        while True:
            for result in list(self.fleet.active.values()):
                s = result.session
                if s.iso15118 or s.session_id in self.told or result.authorized_at is None:
                    continue
                try:
                    if await self._tell(s.station_id, s.evse_id, s.departure, s.energy_wh):
                        self.told.add(s.session_id)
                except (OSError, ValueError) as exc:  # tried again at the next look
                    log.warning("driver app: %s: %s", s.session_id, exc)
            await self.clock.sleep(POLL_S)

    async def _tell(self, station_id: str, evse_id: int, departure: Any,
                    energy_wh: float) -> bool:
        running = await self._call("GET", f"/api/transactions?station_id={station_id}"
                                   "&active=true")
        tx = next((t for t in running if t["evse_id"] == evse_id), None)
        if tx is None:
            return False
        await self._call("PUT", f"/api/sessions/{station_id}/{tx['transaction_id']}",
                         {"departure_time": to_ocpp(departure), "energy_wanted_wh": energy_wh})
        return True

    async def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        return await asyncio.to_thread(self._request, method, path, body)

    def _request(self, method: str, path: str, body: dict | None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
