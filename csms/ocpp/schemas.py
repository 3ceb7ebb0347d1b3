"""Validation against the official OCPP 2.0.1 and 2.1 JSON schemas shipped in the `ocpp`
package. Every function takes the `version` of the connection (the subprotocol the station
chose, see server.py): a payload is judged by its connection's version's schemas only.

A schema error becomes the CALLERROR code the spec names for it (Part 4, 4.3): a wrong type
is TypeConstraintViolation, a missing field OccurrenceConstraintViolation, a bad value
PropertyConstraintViolation, an unknown field FormatViolation.

Every payload is first checked by a validator `fastjsonschema` compiled from the schema
(about 20x faster than `jsonschema`, which was a third of the CSMS's CPU under load). Only a
payload it refuses goes through `jsonschema`, which stays the authority: it names the
error, and a payload it accepts is accepted.

Both check a bounded copy of the official schema (`bounded`): OCPP's integer is 32 bits,
every decimal a station sends is within +-1e12, a meter's multiplier within +-12 (the CSMS
computes 10^multiplier) and every `date-time` is an RFC 3339 time in years 1970-2999 that
Python and PostgreSQL both hold. Out of range is PropertyConstraintViolation, a malformed
time FormatViolation. The bounds: docs/decisions/0021-csms-input-bounds.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from csms.clock import parse_ocpp
from csms.frames import FrameError

VERSION = "2.0.1"  # the default where no connection says otherwise
VERSIONS = ("2.0.1", "2.1")
_FOLDERS = {"2.0.1": "v201", "2.1": "v21"}

_CODES = {
    "type": "TypeConstraintViolation",
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "additionalProperties": "FormatViolation",
    "format": "FormatViolation",
}

INT32 = (-(2**31), 2**31 - 1)  # OCPP 2.0.1 Part 2, 2.1: integer is 32 bits
DECIMAL_LIMIT = 1e12  # beyond any power, energy, current or price a station reports
MULTIPLIER = (-12, 12)  # UnitOfMeasure.multiplier: an exponent of 10
YEARS = (1970, 2999)  # a station with an unset clock says 1970; Python stops at 9999
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def is_date_time(value: object) -> bool:
    """An RFC 3339 date-time (as OCPP wants) that parse_ocpp reads and PostgreSQL stores."""
    if not isinstance(value, str):
        return True  # the type keyword speaks for other types
    if len(value) > 40 or not _DATE_TIME.match(value):
        return False
    try:
        return YEARS[0] <= parse_ocpp(value).year <= YEARS[1]
    except (ValueError, OverflowError):
        return False


_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(is_date_time)


def _bound(node: Any) -> None:
    """Add the CSMS's bounds to a schema, in place (see the module's docstring)."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "integer":
            node.setdefault("minimum", INT32[0])
            node.setdefault("maximum", INT32[1])
        elif kind == "number":
            node.setdefault("minimum", -DECIMAL_LIMIT)
            node.setdefault("maximum", DECIMAL_LIMIT)
        for value in node.values():
            _bound(value)
    elif isinstance(node, list):
        for value in node:
            _bound(value)


def _folder(version: str) -> Any:
    """The `ocpp` package's schema folder for `version` (KeyError: not one we speak)."""
    return resources.files("ocpp") / _FOLDERS[version] / "schemas"


@cache
def bounded(action: str, response: bool, version: str = VERSION) -> dict[str, Any]:
    """The official schema of `action` in `version` with the CSMS's bounds added."""
    name = f"{action}{'Response' if response else 'Request'}.json"
    path = _folder(version) / name
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    unit = schema.get("definitions", {}).get("UnitOfMeasureType")
    if unit:
        unit["properties"]["multiplier"].update(minimum=MULTIPLIER[0], maximum=MULTIPLIER[1])
    _bound(schema)
    return schema


@cache
def known_actions(version: str = VERSION) -> frozenset[str]:
    """The actions (CALLs, either direction) `version` defines."""
    return frozenset(
        f.name.removesuffix("Request.json") for f in _folder(version).iterdir()
        if f.name.endswith("Request.json")
    )


@cache
def _validator(action: str, response: bool, version: str) -> Draft4Validator:
    return Draft4Validator(bounded(action, response, version), format_checker=_FORMATS)


@cache
def _fast(action: str, response: bool, version: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(
        bounded(action, response, version),
        use_default=False,  # never write schema defaults into a payload we store
        formats={"date-time": is_date_time},
        detailed_exceptions=False,
    )


def _check(action: str, payload: dict[str, Any], response: bool, message_id: str | None,
           version: str) -> None:
    if action not in known_actions(version):  # no schema: the caller should have asked
        raise FrameError("NotImplemented", f"OCPP {version} has no action {action!r}",
                         message_id)
    try:
        _fast(action, response, version)(payload)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    try:
        _validator(action, response, version).validate(payload)
    except ValidationError as exc:
        _raise(action, exc, message_id)


def _raise(action: str, error: ValidationError, message_id: str | None) -> None:
    code = _CODES.get(str(error.validator), "PropertyConstraintViolation")
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    raise FrameError(code, f"{action}: {where}: {error.message}"[:500], message_id)


def validate_request(action: str, payload: dict[str, Any], message_id: str | None = None,
                     version: str = VERSION) -> None:
    _check(action, payload, False, message_id, version)


def validate_response(action: str, payload: dict[str, Any], message_id: str | None = None,
                      version: str = VERSION) -> None:
    _check(action, payload, True, message_id, version)


@cache
def request_schema(action: str, version: str = VERSION) -> dict[str, Any]:
    """The action's request schema with its `$ref`s resolved in place, for documents (such as
    OpenAPI) in which the schema's own `#/definitions` cannot be reached. OCPP's types are
    not recursive, so resolving terminates."""
    path = _folder(version) / f"{action}Request.json"
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    definitions = schema.pop("definitions", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                return resolve(definitions[ref.removeprefix("#/definitions/")])
            return {k: resolve(v) for k, v in node.items() if k not in ("$schema", "$id")}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
