"""csms/scheduling imports only downward: never the API, the app or the CLI (which build
on it), and its decision modules do no I/O, so they are tested without sockets."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "csms" / "scheduling"
ABOVE = ("csms.api", "csms.app", "csms.cli", "csms.dashboard", "csms.server")
PURE = ("demand", "limits", "reserved_load", "v2x")
IO = ("asyncio", "asyncpg", "csms.store", "csms.commands", "csms.connection", "socket")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_package_never_imports_what_builds_on_it() -> None:
    offenders = {p.name: sorted(m for m in imports(p) if m.startswith(ABOVE))
                 for p in PACKAGE.glob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_decisions_do_no_io() -> None:
    offenders = {name: sorted(m for m in imports(PACKAGE / f"{name}.py") if m.startswith(IO))
                 for name in PURE}
    assert {k: v for k, v in offenders.items() if v} == {}
