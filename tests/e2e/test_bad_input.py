"""Bad input gets the OCPP-J error the spec names, and the connection (and every other
station) carries on."""

from __future__ import annotations

import asyncio
import json

import pytest

from csms import metrics
from csms.app import Csms
from simulators.station import CallFailed
from tests.e2e.conftest import StationFactory
from tests.support import eventually


def _error(raw: str | None) -> tuple[str, str]:
    assert raw is not None, "no answer"
    frame = json.loads(raw)
    assert frame[0] == 4, frame
    return frame[1], frame[2]


def _count(code: str) -> float:
    return metrics.errors.labels(code)._value.get()


def _counted(code: str, expected: float):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return _count(code) == expected
    return check


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("this is not json", ("-1", "RpcFrameworkError")),
        ('{"not": "an array"}', ("-1", "RpcFrameworkError")),
        ("[2]", ("-1", "RpcFrameworkError")),
        ('[2, 17, "Heartbeat", {}]', ("-1", "RpcFrameworkError")),  # id must be a string
        ('[2, "m1", "Heartbeat"]', ("m1", "RpcFrameworkError")),
        ('[2, "m2", "Heartbeat", []]', ("m2", "FormatViolation")),
        ('[7, "m3", "Heartbeat", {}]', ("m3", "MessageTypeNotSupported")),
        ('[2, "m4", "NoSuchAction", {}]', ("m4", "NotImplemented")),
        ('[2, "m5", "RequestStartTransaction", {}]', ("m5", "NotSupported")),
        ('[2, "m6", "Heartbeat", {"extra": 1}]', ("m6", "FormatViolation")),
        ('[2, "m7", "Authorize", {}]', ("m7", "OccurrenceConstraintViolation")),
        ('[2, "m8", "Authorize", {"idToken": {"idToken": 5, "type": "ISO14443"}}]',
         ("m8", "TypeConstraintViolation")),
        ('[2, "m9", "Authorize", {"idToken": {"idToken": "A", "type": "Bogus"}}]',
         ("m9", "PropertyConstraintViolation")),
    ],
)
async def test_bad_frames_get_the_spec_error_and_the_connection_survives(
    make_station: StationFactory, frame: str, expected: tuple[str, str]
) -> None:
    station = await make_station("CS001")
    before = _count(expected[1])
    assert _error(await station.send_raw(frame)) == expected
    assert _count(expected[1]) == before + 1
    assert "currentTime" in await station.call("Heartbeat", {})  # still connected


async def test_a_callresult_for_an_unknown_message_id_is_ignored(
    make_station: StationFactory,
) -> None:
    station = await make_station("CS001")
    before = _count("UnknownMessageId")
    answer = await station.send_raw('[3, "never-sent", {}]', timeout=0.5)
    assert answer is None or "never-sent" not in answer  # nothing is answered to it
    await eventually(_counted("UnknownMessageId", before + 1))
    assert "currentTime" in await station.call("Heartbeat", {})


async def test_an_oversized_frame_is_refused_and_other_stations_carry_on(
    csms: Csms, make_station: StationFactory
) -> None:
    noisy = await make_station("NOISY")
    calm = await make_station("CALM")
    big = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "A" * 100_000}])
    assert await noisy.send_raw(big, timeout=1.0) is None

    async def closed() -> bool:
        return not noisy.connected

    await eventually(closed)  # WebSocket close 1009 (message too big)
    assert "currentTime" in await calm.call("Heartbeat", {})
    assert csms.connections.is_connected("CALM")


async def test_one_misbehaving_station_does_not_disturb_another(
    make_station: StationFactory,
) -> None:
    bad = await make_station("BAD")
    good = await make_station("GOOD")

    async def garbage() -> None:
        for i in range(200):
            await bad.send_raw(f'[2, "g{i}", "Authorize", {{"junk": true}}]', timeout=1.0)

    async def heartbeats() -> int:
        answered = 0
        for _ in range(50):
            reply = await good.call("Heartbeat", {})
            answered += "currentTime" in reply
        return answered

    _, answered = await asyncio.gather(garbage(), heartbeats())
    assert answered == 50


async def test_schema_invalid_call_through_the_station_api_raises_with_code(
    make_station: StationFactory,
) -> None:
    station = await make_station("CS001")
    with pytest.raises(CallFailed) as failed:
        await station.call("StatusNotification", {"evseId": 1})
    assert failed.value.code == "OccurrenceConstraintViolation"


async def test_data_transfer_for_an_unknown_vendor(make_station: StationFactory) -> None:
    station = await make_station("CS001")
    reply = await station.call("DataTransfer", {"vendorId": "com.example", "messageId": "x"})
    assert reply["status"] == "UnknownVendorId"
