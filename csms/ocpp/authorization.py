"""Block C, authorization: Authorize (C01) and the idTokenInfo other answers carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.cost import tariff_message
from csms.ocpp.deps import Deps
from csms.store.tokens import TokenRepo

NO_AUTH_TYPES = ("NoAuthorization", "Central")


async def id_token_info(tokens: TokenRepo, id_token: Payload, now: datetime) -> Payload:
    """Unknown tokens are Unknown; a NoAuthorization token (free vending) is Accepted."""
    if id_token["type"] == "NoAuthorization":
        return {"status": "Accepted"}
    token = await tokens.get(id_token["idToken"], id_token["type"])
    if token is None:
        return {"status": "Unknown"}
    info: Payload = {"status": token.status_at(now)}
    if token.group_id:
        info["groupIdToken"] = {"idToken": token.group_id, "type": "Central"}
    return info


@dataclass(frozen=True)
class Authorize:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        info = await id_token_info(self.deps.store.tokens, req["idToken"], self.deps.clock.now())
        if info["status"] == "Accepted":  # I01: the driver's tariff
            info |= await tariff_message(self.deps.store, req["idToken"])
        return {"idTokenInfo": info}
