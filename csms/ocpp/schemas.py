"""Validation against the official OCPP 2.0.1 JSON schemas shipped in the `ocpp` package.

A schema error becomes the CALLERROR code the spec names for it (Part 4, 4.3): a wrong type
is TypeConstraintViolation, a missing field OccurrenceConstraintViolation, a bad value
PropertyConstraintViolation, an unknown field FormatViolation.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError
from ocpp.messages import MessageType, get_validator

from csms.frames import FrameError

VERSION = "2.0.1"

_CODES = {
    "type": "TypeConstraintViolation",
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "additionalProperties": "FormatViolation",
}


@cache
def known_actions() -> frozenset[str]:
    folder = resources.files("ocpp") / "v201" / "schemas"
    return frozenset(
        f.name.removesuffix("Request.json") for f in folder.iterdir()
        if f.name.endswith("Request.json")
    )


def _validator(action: str, response: bool) -> Draft4Validator:
    kind = MessageType.CallResult if response else MessageType.Call
    return get_validator(kind, action, VERSION)


def _raise(action: str, error: ValidationError, message_id: str | None) -> None:
    code = _CODES.get(str(error.validator), "PropertyConstraintViolation")
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    raise FrameError(code, f"{action}: {where}: {error.message}"[:500], message_id)


def validate_request(action: str, payload: dict[str, Any], message_id: str | None = None) -> None:
    try:
        _validator(action, response=False).validate(payload)
    except ValidationError as exc:
        _raise(action, exc, message_id)


def validate_response(action: str, payload: dict[str, Any], message_id: str | None = None) -> None:
    try:
        _validator(action, response=True).validate(payload)
    except ValidationError as exc:
        _raise(action, exc, message_id)
