"""Id tokens (RFID cards, app tokens...) that stations may authorize: create, read, update,
delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep, not_found
from csms.api.models import IdToken, IdTokenCreate, IdTokenFields, TokenType

router = APIRouter(prefix="/api/id-tokens", tags=["id tokens"])


@router.get("", dependencies=[require(Permission.READ)])
async def list_id_tokens(parts: PartsDep) -> list[IdToken]:
    return [IdToken.model_validate(t) for t in await parts.store.tokens.list()]


@router.post("", status_code=status.HTTP_201_CREATED,
             dependencies=[require(Permission.ID_TOKENS)],
             responses={409: {"description": "the token exists (use PUT to change it)"}})
async def create_id_token(body: IdTokenCreate, parts: PartsDep) -> IdToken:
    created = await parts.store.tokens.create(
        body.id_token, body.type, parts.clock.now(), status=body.status,
        group_id=body.group_id, expires_at=body.expires_at,
    )
    if not created:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"id token {body.type}/{body.id_token} exists")
    return IdToken.model_validate(body.model_dump())


@router.get("/{type}/{id_token}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such token"}})
async def get_id_token(type: TokenType, id_token: str, parts: PartsDep) -> IdToken:
    token = await parts.store.tokens.get(id_token, type)
    if token is None:
        raise not_found(f"id token {type}/{id_token}")
    return IdToken.model_validate(token)


@router.put("/{type}/{id_token}", dependencies=[require(Permission.ID_TOKENS)],
            responses={201: {"model": IdToken, "description": "created"}})
async def put_id_token(
    type: TokenType, id_token: Annotated[str, Path(max_length=36)], body: IdTokenFields,
    parts: PartsDep, response: Response,
) -> IdToken:
    """Create the token or replace its status, group and expiry."""
    existed = await parts.store.tokens.get(id_token, type) is not None
    await parts.store.tokens.add(id_token, type, parts.clock.now(), status=body.status,
                                 group_id=body.group_id, expires_at=body.expires_at)
    if not existed:
        response.status_code = status.HTTP_201_CREATED
    return IdToken(id_token=id_token, type=type, **body.model_dump())


@router.delete("/{type}/{id_token}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require(Permission.ID_TOKENS)],
               responses={404: {"description": "no such token"}})
async def delete_id_token(type: TokenType, id_token: str, parts: PartsDep) -> None:
    if not await parts.store.tokens.remove(id_token, type, parts.clock.now()):
        raise not_found(f"id token {type}/{id_token}")
