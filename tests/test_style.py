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


VPP_FORBIDDEN = (r"\bimport csms\b", r"\bfrom csms\b", r"\bimport simulators\b",
                 r"\bfrom simulators\b", r"datetime\.now\(", r"datetime\.utcnow\(",
                 r"date\.today\(", r"time\.time\(", r"time\.monotonic\(", r"\bopen\(",
                 r"\bsocket\b", r"\basyncpg\b", r"\bpathlib\b", r"\btomllib\b", r"\basyncio\b")


def test_vpp_is_pure() -> None:
    """`vpp/` decides like `smart_charging/`: no I/O, no clock, never the CSMS; it may use
    the engine (docs/decisions/0029-vpp.md)."""
    import re

    offenders = [
        f"{path.relative_to(ROOT)}: {pattern}"
        for path in (ROOT / "vpp").rglob("*.py")
        for pattern in VPP_FORBIDDEN
        if re.search(pattern, path.read_text())
    ]
    assert (ROOT / "vpp" / "forecast.py").exists() and offenders == []
