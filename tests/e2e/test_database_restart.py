"""A database that restarts under a running CSMS: stations get InternalError while it is
down (the spec's answer for "could not process"), stay connected, and nothing the station
resends is lost."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from csms.app import Csms
from csms.config import Config
from csms.passwords import hash_password
from simulators.station import CallFailed, Station, StationSpec
from tests.support import eventually

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pgserver
    from pgserver._commands import pg_ctl


def _event(seq_no: int, energy_wh: float) -> dict:
    stamp = f"2026-11-23T18:{seq_no:02d}:00Z"
    return {
        "eventType": "Started" if seq_no == 0 else "Updated",
        "timestamp": stamp,
        "triggerReason": "CablePluggedIn" if seq_no == 0 else "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "TX-DB"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": stamp, "sampledValue": [
            {"value": energy_wh, "measurand": "Energy.Active.Import.Register"}]}],
    }


async def test_database_restart_loses_nothing(config: Config, private_dir: Path) -> None:
    server = pgserver.get_server(private_dir / "pg", cleanup_mode="stop")
    config = replace(config, database=replace(config.database, url=server.get_uri()))
    csms = await Csms.start(config)
    station = Station(StationSpec("CS001", password="restart-secret-0001"),
                      url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp")
    try:
        await csms.store.stations.add("CS001", hash_password("restart-secret-0001"),
                                      csms.clock.now())
        await station.start()
        await station.call("TransactionEvent", _event(0, 1_000))

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        with pytest.raises(CallFailed) as failed:
            await station.call("TransactionEvent", _event(1, 2_000))
        assert failed.value.code == "InternalError"
        assert "currentTime" in await station.call("Heartbeat", {})  # no database needed
        assert station.connected

        server.ensure_postgres_running()

        async def resent() -> bool:  # the station retries until it is answered
            try:
                await station.call("TransactionEvent", _event(1, 2_000))
            except CallFailed:
                return False
            return True

        await eventually(resent, timeout=20, interval=0.2)
        tx = await csms.store.transactions.get("CS001", "TX-DB")
        assert tx is not None and tx.energy_wh == 1_000 and tx.event_count == 2
    finally:
        await station.stop()
        await csms.stop()
        server.cleanup()
