"""The station's own reading of blocks B, C and D against a scripted CSMS: local list
versions, the authorization cache, per-message limits and network profiles."""

from __future__ import annotations


def _entry(token: str, status: str | None = "Accepted") -> dict:
    entry: dict = {"idToken": {"idToken": token, "type": "ISO14443"}}
    if status is not None:
        entry["idTokenInfo"] = {"status": status}
    return entry


async def test_D01_differential_needs_a_higher_version_and_removes_entries(peer, stations):
    st = stations(peer.url)
    await st.start()
    full = await peer.result("SendLocalList", {
        "versionNumber": 5, "updateType": "Full",
        "localAuthorizationList": [_entry("A"), _entry("B", "Blocked")]})
    assert full["status"] == "Accepted"
    assert (await peer.result("GetLocalListVersion", {}))["versionNumber"] == 5
    stale = await peer.result("SendLocalList", {
        "versionNumber": 5, "updateType": "Differential",
        "localAuthorizationList": [_entry("C")]})
    assert stale["status"] == "VersionMismatch"
    diff = await peer.result("SendLocalList", {
        "versionNumber": 6, "updateType": "Differential",
        "localAuthorizationList": [_entry("A", None), _entry("C")]})
    assert diff["status"] == "Accepted"
    assert {k[0]: v["status"] for k, v in st.local_auth.local_list.items()} == {
        "B": "Blocked", "C": "Accepted"}
    assert st.device_model.value("LocalAuthListCtrlr", "Entries") == "2"


async def test_D01_more_entries_than_items_per_message_is_a_callerror(peer, stations):
    st = stations(peer.url)
    await st.start()
    st.device_model.put("LocalAuthListCtrlr", "ItemsPerMessage", "1")
    kind, code = await peer.call("SendLocalList", {
        "versionNumber": 1, "updateType": "Full",
        "localAuthorizationList": [_entry("A"), _entry("B")]})
    assert (kind, code) == ("error", "OccurrenceConstraintViolation")
    st.device_model.put("DeviceDataCtrlr", "ItemsPerMessageGetVariables", "1")
    kind, code = await peer.call("GetVariables", {"getVariableData": [
        {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}}] * 2})
    assert (kind, code) == ("error", "OccurrenceConstraintViolation")


async def test_C11_clear_cache_empties_it_and_is_rejected_when_disabled(peer, stations):
    st = stations(peer.url)
    await st.start()
    peer.answers["Authorize"] = {"idTokenInfo": {"status": "Accepted"}}
    assert await st.present_token(1, "A") == "Accepted"
    assert ("A", "ISO14443") in st.local_auth.cache
    assert (await peer.result("ClearCache", {}))["status"] == "Accepted"
    assert st.local_auth.cache == {}
    st.device_model.put("AuthCacheCtrlr", "Enabled", "false")
    assert (await peer.result("ClearCache", {}))["status"] == "Rejected"


async def test_B09_network_profile_downgrade_is_rejected(peer, stations):
    st = stations(peer.url)
    await st.start()
    profile = {"ocppVersion": "OCPP20", "ocppTransport": "JSON",
               "ocppCsmsUrl": "wss://csms.example/ocpp", "messageTimeout": 30,
               "securityProfile": 1, "ocppInterface": "Wired0"}
    ok = await peer.result("SetNetworkProfile", {"configurationSlot": 2,
                                                 "connectionData": profile})
    assert ok["status"] == "Accepted" and st.network_slots[2] == profile
    st.device_model.put("SecurityCtrlr", "SecurityProfile", "2")
    refused = await peer.result("SetNetworkProfile", {"configurationSlot": 3,
                                                      "connectionData": profile})
    assert refused["status"] == "Rejected"
    assert refused["statusInfo"]["reasonCode"] == "SecurityDowngrade"
