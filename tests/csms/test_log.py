"""Issue 11, defect 9: with `[log] json = true` a failed call's line carries its traceback."""

from __future__ import annotations

import io
import json

import structlog

from csms import log as logging_setup


def test_json_log_lines_carry_the_traceback() -> None:
    out = io.StringIO()
    logging_setup.configure("info", json=True, file=out)
    try:
        logger = structlog.get_logger("test")
        try:
            {}["missing"]
        except KeyError:
            logger.exception("call.failed", action="Heartbeat")
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue().strip().splitlines()[-1])
    assert line["event"] == "call.failed" and line["level"] == "error"
    assert "exc_info" not in line
    assert "Traceback" in line["exception"] and "KeyError: 'missing'" in line["exception"]
