"""Every CSMS-initiated OCPP 2.0.1 action is reachable over HTTP, from one table: the body is
the OCPP request (checked against the official schema, published in OpenAPI) unless the
command has a short body of its own."""

from __future__ import annotations

from csms.api.commands import COMMANDS
from csms.app import Csms
from csms.ocpp.routes import routes
from csms.ocpp.schemas import known_actions
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory


def test_every_action_a_csms_sends_has_a_command() -> None:
    charger_initiated = set(routes(None)) - {"DataTransfer"}  # type: ignore[arg-type]
    assert {c.action for c in COMMANDS} == known_actions() - charger_initiated
    assert len({c.path for c in COMMANDS}) == len(COMMANDS)


async def test_openapi_publishes_the_ocpp_request_schema(client: Client) -> None:
    spec = (await client(None).get("/openapi.json")).json()
    prefix = "/api/stations/{station_id}/commands"
    for command in COMMANDS:
        assert f"{prefix}{command.path}" in spec["paths"], command.action
    get_log = spec["paths"][f"{prefix}/get-log"]["post"]
    schema = get_log["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["logType", "log"]  # requestId is filled in when left out
    assert schema["properties"]["log"]["properties"]["remoteLocation"]["maxLength"] == 512
    assert "$ref" not in str(schema)  # resolved: the OCPP `definitions` are not in OpenAPI


async def test_an_ocpp_request_body_reaches_the_station_and_its_reply_comes_back(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")

    reply = await operator.post("/api/stations/CS001/commands/get-base-report",
                                json={"reportBase": "ConfigurationInventory"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["action"] == "GetBaseReport"
    assert body["reply"]["status"] == "Accepted"
    request_id = body["request"]["requestId"]
    assert isinstance(request_id, int) and request_id > 0
    again = await operator.post("/api/stations/CS001/commands/get-base-report",
                                json={"reportBase": "ConfigurationInventory", "requestId": 77})
    assert again.json()["request"]["requestId"] == 77
    assert "GetBaseReport" in station.received_calls

    version = await operator.post("/api/stations/CS001/commands/get-local-list-version",
                                  json={})
    assert version.status_code == 200, version.text
    assert isinstance(version.json()["reply"]["versionNumber"], int)
    status = await operator.post("/api/stations/CS001/commands/get-transaction-status",
                                 json={})
    assert status.json()["reply"]["messagesInQueue"] is False


async def test_an_ocpp_request_the_schema_refuses_is_422_and_never_sent(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")
    for path, body in [
        ("get-log", {"logType": "DiagnosticsLog"}),  # no `log`
        ("get-log", {"logType": "Everything", "log": {"remoteLocation": "ftp://x"}}),
        ("set-display-message", {"message": {"id": "one"}}),
        ("reserve-now", {"id": 1, "expiryDateTime": "2026-12-04T20:00:00Z",
                         "idToken": {"idToken": "T", "type": "ISO14443"}, "extra": 1}),
    ]:
        bad = await operator.post(f"/api/stations/CS001/commands/{path}", json=body)
        assert bad.status_code == 422, (path, bad.text)
        assert bad.json()["detail"][0]["type"] == "ocpp_schema"
    assert not {"GetLog", "SetDisplayMessage", "ReserveNow"} & set(station.received_calls)
    not_an_object = await operator.post("/api/stations/CS001/commands/get-log", json=[1])
    assert not_an_object.status_code == 422


async def test_a_command_the_station_does_not_implement_is_502_with_its_code(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station._handlers.pop("ClearCache", None)
    reply = await client("operator").post("/api/stations/CS001/commands/clear-cache", json={})
    assert reply.status_code == 502, reply.text
    assert reply.json()["code"] == "NotImplemented"


async def test_certificates_and_network_profiles_are_for_admins(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    body = {"certificateType": "CSMSRootCertificate", "certificate": "-----BEGIN..."}
    denied = await client("operator").post(
        "/api/stations/CS001/commands/install-certificate", json=body)
    assert denied.status_code == 403
    allowed = await client("admin").post(
        "/api/stations/CS001/commands/install-certificate", json=body)
    assert allowed.status_code in (200, 502), allowed.text  # it reached the station
