"""Lint is part of the test command: `ruff check` over the whole repository."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_smart_charging_never_reads_the_clock() -> None:
    """The engine is pure: time is an argument (see docs/architecture.md)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "smart_charging").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(call in line for call in ("datetime.now(", "time.time(", "date.today("))
    ]
    assert offenders == []


def test_csms_and_simulators_never_import_each_other() -> None:
    """The wire rule (docs/architecture.md): only demo/, the composition root, imports both."""
    rules = {"csms": ("simulators", "demo"), "simulators": ("csms", "demo")}
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for package, forbidden in rules.items()
        for path in (ROOT / package).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(tuple(f"{kw} {name}" for kw in ("import", "from")
                                          for name in forbidden))
        and line.lstrip().split()[1].split(".")[0] in forbidden
    ]
    assert offenders == []
