"""Block C, authorization: Authorize (C01) and the idTokenInfo other answers carry.

One place builds an idTokenInfo from the token table, for Authorize, TransactionEvent
answers and local list entries alike: the status now, the group (C09: `groupIdToken`, as
the group's own row in the table when there is one) and how long a station may cache it
(`cacheExpiryDateTime`: the token's expiry, C10). A PIN (C04) is a token of type KeyCode.
An Authorize carrying a contract certificate (C07, Plug & Charge) is answered with its
certificateStatus as well, checked by csms/iso15118.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from csms import metrics
from csms.clock import to_ocpp
from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.cost import tariff_message
from csms.ocpp.deps import Deps
from csms.store.tokens import IdToken, TokenRepo
from csms.v2g import ALL_MODES, Terms

log = structlog.get_logger()

NO_AUTH_TYPES = ("NoAuthorization", "Central")
MASTER_PASS = ("AuthCtrlr", "MasterPassGroupId")


def token_info(token: IdToken, now: datetime, group: IdToken | None = None) -> Payload:
    """The idTokenInfo for a known token; `group`: the token its group id names, if any."""
    info: Payload = {"status": token.status_at(now)}
    if token.group_id:
        info["groupIdToken"] = {
            "idToken": token.group_id, "type": group.type if group is not None else "Central"}
    if token.expires_at is not None and info["status"] == "Accepted":
        info["cacheExpiryDateTime"] = to_ocpp(token.expires_at)
    return info


async def id_token_info(tokens: TokenRepo, id_token: Payload, now: datetime) -> Payload:
    """Unknown tokens are Unknown, but a PIN no one holds is Invalid (C04.FR.01); a
    NoAuthorization token (free vending) is Accepted."""
    if id_token["type"] == "NoAuthorization":
        return {"status": "Accepted"}
    token = await tokens.get(id_token["idToken"], id_token["type"])
    if token is None:
        return {"status": "Invalid" if id_token["type"] == "KeyCode" else "Unknown"}
    group = await tokens.group_token(token.group_id) if token.group_id else None
    return token_info(token, now, group)


async def is_master_pass(deps: Deps, station_id: str, info: Payload) -> bool:
    """C16: whether the token's group is the station's AuthCtrlr.MasterPassGroupId."""
    group = (info.get("groupIdToken") or {}).get("idToken")
    if not group:
        return False
    for v in await deps.store.devices.variables(station_id, MASTER_PASS[0]):
        if v.variable == MASTER_PASS[1] and v.attribute_type == "Actual" and v.value:
            return v.value == group
    return False


@dataclass(frozen=True)
class Authorize:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now = self.deps.clock.now()
        info = await id_token_info(self.deps.store.tokens, req["idToken"], now)
        answer: Payload = {"idTokenInfo": info}
        if req.get("certificate") or req.get("iso15118CertificateHashData"):
            answer["certificateStatus"] = status = await self._contract(ctx, req, now)
            if status != "Accepted":  # C07.FR.13-17: a bad contract is an Invalid token
                answer["idTokenInfo"] = info = {"status": "Invalid"}
        if info["status"] == "Accepted":  # I01: the driver's tariff
            info |= await tariff_message(self.deps.store, req["idToken"])
            if ctx.ocpp_version == "2.1":  # Q01: left out, the car may only charge
                modes = await self._allowed_energy_transfer(req["idToken"]["idToken"])
                if modes:
                    answer["allowedEnergyTransfer"] = modes
        return answer

    async def _allowed_energy_transfer(self, id_token: str) -> list[str] | None:
        """Q01 V2X authorization: every mode, bidirectional ones included, for the token
        of a vehicle whose standing terms let it discharge; None (charging only) else."""
        vehicle = (await self.deps.store.v2g.vehicles_by_token([id_token])).get(id_token)
        if vehicle is None or not Terms(vehicle.v2g_opted_in, vehicle.v2g_mode).may_discharge:
            return None
        return list(ALL_MODES)

    async def _contract(self, ctx: StationContext, req: Payload, now: datetime) -> str:
        """C07: the contract certificate's status; without an ISO 15118 configuration no
        chain can be verified, so none is accepted."""
        service = self.deps.iso15118
        if service is None:
            status, why = "CertChainError", "no ISO 15118 configuration"
        else:
            status, why = await service.contract_status(
                ctx.station_id, req.get("certificate"), req.get("iso15118CertificateHashData"),
                now)
        if status != "Accepted":
            log.warning("authorize.contract_refused", station_id=ctx.station_id,
                        id_token=req["idToken"]["idToken"], status=status, reason=why)
            metrics.contracts_refused.labels(status).inc()
        return status
