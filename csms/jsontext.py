"""JSON text as the CSMS accepts it from stations and API clients: strict, and only what
it can compute with and store.

Python's `json` reads NaN, Infinity and -Infinity (not JSON), turns 1e309 into infinity,
reads integers of any length, recurses once per nesting level and lets `\\u0000` and lone
UTF-16 surrogates (`\\ud800`) into strings, which no PostgreSQL text and no UTF-8 encoder
take. `loads` refuses all of these with `Unholdable`, so neither the OCPP-J parser
(csms/frames.py) nor the HTTP API (csms/api/guard.py) passes them on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32  # OCPP 2.0.1 nests about 8 levels, the API's bodies fewer
MAX_INT_DIGITS = 20  # beyond any int64; schemas and models bound integers further
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Unholdable(Exception):
    """Well-formed JSON holding what the CSMS refuses to hold; `data` is what was parsed,
    when parsing finished."""

    def __init__(self, problem: str, data: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.data = data


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; ValueError when it is not JSON, Unholdable (see the module)."""
    problems: list[str] = []
    try:
        data = json.loads(
            text,
            parse_constant=lambda name: problems.append(f"{name} is not a JSON number"),
            parse_float=lambda s: _finite(s, problems),
            parse_int=lambda s: _integer(s, problems),
        )
    except RecursionError:
        raise Unholdable(f"nested deeper than {max_depth} levels") from None
    if not problems and ("\\u" in text or text.count("[") + text.count("{") > max_depth):
        problems.extend(_unholdable(data, max_depth))
    if problems:
        raise Unholdable(problems[0][:200], data)
    return data


def unstorable(text: str) -> bool:
    """Does `text` hold NUL or a lone surrogate?"""
    return UNSTORABLE.search(text) is not None


def _finite(text: str, problems: list[str]) -> float:
    value = float(text)
    if not math.isfinite(value):
        problems.append(f"{text[:40]} is beyond what a double holds")
        return 0.0
    return value


def _integer(text: str, problems: list[str]) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        problems.append(f"an integer of {len(text)} digits")
        return 0
    return int(text)


def _unholdable(data: Any, max_depth: int) -> list[str]:
    """Nesting deeper than max_depth, or a string (key or value) no UTF-8 text can store.
    Iterative: the point is to refuse what recursion would choke on."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        elif isinstance(item, str):
            if UNSTORABLE.search(item):
                return ["a string holds NUL or a lone UTF-16 surrogate"]
            continue
        else:
            continue
        if depth > max_depth:
            return [f"nested deeper than {max_depth} levels"]
        stack.extend((child, depth + 1) for child in children)
    return []
