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
