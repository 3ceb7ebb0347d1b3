"""The package must stay pure: no I/O, no clock, no CSMS or simulator imports."""

import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "smart_charging"
FORBIDDEN = [
    r"\bimport csms\b", r"\bfrom csms\b", r"\bimport simulators\b", r"\bfrom simulators\b",
    r"datetime\.now\(", r"datetime\.utcnow\(", r"date\.today\(", r"time\.time\(",
    r"\bopen\(", r"\bsocket\b", r"\basyncpg\b", r"\bpathlib\b", r"\btomllib\b",
]


@pytest.mark.parametrize("path", sorted(PKG.glob("*.py")), ids=lambda p: p.name)
def test_module_is_pure(path: Path) -> None:
    text = path.read_text()
    for pattern in FORBIDDEN:
        assert not re.search(pattern, text), f"{path.name} matches {pattern}"
