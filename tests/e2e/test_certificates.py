"""Station certificates (A02/A03) and security events (A04), station against CSMS over a
real socket: the simulated station makes its key and CSR, the CSMS's CA signs it."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from csms.app import Csms
from csms.config import Config
from simulators.station.security import request_certificate
from tests.e2e.conftest import StationFactory
from tests.support import eventually


class SteppedClock:
    """A clock a test moves forward; sleeps are real."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def csr_pem(common_name: str, organization: str = "Sim") -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                                    x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                       organization)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def test_A03_station_csr_is_signed_and_the_certificate_delivered(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    assert (await request_certificate(station))["status"] == "Accepted"

    async def delivered() -> bool:
        return bool(station.certificates.chain)

    await eventually(delivered)
    leaf, root = station.certificates.chain
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CS001"
    assert csms.ca is not None and root == csms.ca.certificate
    stored = await eventually(lambda: _accepted(csms, "CS001"))
    assert stored[0].serial == format(leaf.serial_number, "x")
    assert stored[0].not_after == leaf.not_valid_after_utc


async def _accepted(csms: Csms, station_id: str) -> list:
    return [c for c in await csms.store.certificates.list(station_id)
            if c.status == "Accepted"]


@pytest.mark.parametrize(("csr", "reason"), [
    (csr_pem("CS002"), "InvalidCommonName"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n",
     "InvalidCSR"),
])
async def test_A03_csr_not_for_this_station_is_rejected_with_the_reason(
    csms: Csms, make_station: StationFactory, csr: str, reason: str
) -> None:
    station = await make_station("CS001")
    reply = await station.call("SignCertificate", {"csr": csr})
    assert reply["status"] == "Rejected"
    assert reply["statusInfo"]["reasonCode"] == reason
    assert await csms.store.certificates.list("CS001") == []


async def test_A03_v2g_certificate_is_not_signed_by_the_station_ca(
    make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    reply = await station.call("SignCertificate", {"csr": csr_pem("CS001"),
                                                   "certificateType": "V2GCertificate"})
    assert reply["status"] == "Rejected"


@pytest.fixture
def organization_config(config: Config) -> Config:
    return replace(config, security=replace(config.security, organization="Acme Charging"))


async def test_A03_csr_must_carry_the_configured_organization(
    organization_config: Config,
) -> None:
    csms = await Csms.start(organization_config)
    try:
        from simulators.station import Station, StationSpec

        await csms.store.stations.add("CS001", None, csms.clock.now())
        station = Station(StationSpec("CS001"), url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp")
        await station.start()
        wrong = await station.call("SignCertificate", {"csr": csr_pem("CS001", "Other")})
        assert wrong["statusInfo"]["reasonCode"] == "InvalidOrganization"
        station.device_model.put("SecurityCtrlr", "OrganizationName", "Acme Charging")
        assert (await request_certificate(station))["status"] == "Accepted"
        await station.stop()
    finally:
        await csms.stop()


async def test_A02_certificate_near_expiry_is_renewed_on_the_csms_initiative(
    config: Config,
) -> None:
    clock = SteppedClock(datetime(2027, 1, 1, tzinfo=UTC))
    csms = await Csms.start(config, clock=clock)
    try:
        from simulators.station import Station, StationSpec

        await csms.store.stations.add("CS001", None, clock.now())
        station = Station(StationSpec("CS001"), url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp",
                          clock=clock)
        await station.start()
        await request_certificate(station)
        first = (await eventually(lambda: _accepted(csms, "CS001")))[0]
        assert await csms.renewal.check() == []  # valid for a year: nothing to do

        clock.t += timedelta(days=340)  # 25 days left, renew_before_days is 30
        assert await csms.renewal.check() == ["CS001"]

        async def renewed() -> list:
            return [c for c in await _accepted(csms, "CS001") if c.serial != first.serial]

        second = (await eventually(renewed))[0]
        assert second.not_after > first.not_after
        assert station.certificates.chain[0].serial_number == int(second.serial, 16)
        assert await csms.renewal.check() == []  # the new one is far from expiry
        await station.stop()
    finally:
        await csms.stop()


async def test_A04_security_events_are_stored_and_critical_ones_flagged(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    queue = csms.events.subscribe()
    await station.call("SecurityEventNotification", {
        "type": "TamperDetectionActivated", "timestamp": "2026-12-01T10:00:00Z",
        "techInfo": "enclosure opened"})
    await station.call("SecurityEventNotification", {
        "type": "InvalidMessages", "timestamp": "2026-12-01T10:05:00+01:00"})
    events = await csms.store.security_events.list(station_id="CS001")
    assert [(e.type, e.critical) for e in events] == [
        ("InvalidMessages", False), ("TamperDetectionActivated", True)]
    assert events[1].tech_info == "enclosure opened"
    assert events[0].occurred_at == datetime(2026, 12, 1, 9, 5, tzinfo=UTC)
    critical = await csms.store.security_events.list(critical=True)
    assert [e.type for e in critical] == ["TamperDetectionActivated"]
    published = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(type(e).__name__, getattr(e, "type", None)) for e in published
            if type(e).__name__ == "SecurityEventReported"] == [
        ("SecurityEventReported", "TamperDetectionActivated"),
        ("SecurityEventReported", "InvalidMessages")]
    csms.events.unsubscribe(queue)


async def test_A04_security_event_with_a_bad_timestamp_gets_format_violation(
    make_station: StationFactory
) -> None:
    from simulators.station import CallFailed

    station = await make_station("CS001")
    with pytest.raises(CallFailed) as failed:
        await station.call("SecurityEventNotification",
                           {"type": "InvalidMessages", "timestamp": "yesterday"})
    assert failed.value.code == "FormatViolation"


async def test_A03_csrs_beyond_the_daily_cap_are_rejected(
    csms: Csms, make_station: StationFactory
) -> None:
    from csms.ocpp.security import MAX_CSRS_PER_DAY

    station = await make_station("CS001")
    for _ in range(MAX_CSRS_PER_DAY):
        assert (await station.call("SignCertificate", {"csr": csr_pem("CS001")}))[
            "status"] == "Accepted"
    reply = await station.call("SignCertificate", {"csr": csr_pem("CS001")})
    assert (reply["status"], reply["statusInfo"]["reasonCode"]) == ("Rejected",
                                                                     "TooManyRequests")
    assert len(await csms.store.certificates.list("CS001")) == MAX_CSRS_PER_DAY
