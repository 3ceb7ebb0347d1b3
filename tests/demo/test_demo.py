"""`csms demo` as a newcomer runs it: the CLI in a subprocess, then what it printed, used
over HTTP. A short evening (17:00-18:00) at 1200x keeps it to seconds."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SITE = "residential"  # the site file's name (config/sites/residential.toml)
STATIONS = 120


async def _line(stdout: asyncio.StreamReader, seen: list[str]) -> str:
    line = (await asyncio.wait_for(stdout.readline(), 90)).decode()
    assert line, "the demo exited early:\n" + "".join(seen)
    seen.append(line)
    return line


async def test_demo_plays_a_night_that_the_api_shows_and_stops_on_ctrl_c(
    private_dir: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms.cli", "demo", "--port", "0", "--api-port", "0",
        "--speed", "1200", "--end", "18:00", "--data-dir", str(private_dir),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while "The clock stopped" not in await _line(proc.stdout, seen):
            pass
        out = "".join(seen)
        token = re.search(r"Admin token\s+(\S+)", out)
        docs = re.search(r"API docs\s+(\S+)", out)
        dashboard = re.search(r"Dashboard\s+(http\S+)", out)
        assert token and docs and dashboard, out
        assert "stayed under it" in out and "EXCEEDED" not in out, out
        assert re.search(r"scheduler: [1-9]\d* plans \(0 fell back", out), out
        api = docs.group(1).removesuffix("docs")
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        async with httpx.AsyncClient(base_url=dashboard.group(1), timeout=15) as browser:
            # the dashboard: sign in with the printed token, then the overview lists the
            # community's stations
            assert (await browser.get("/")).headers["location"].startswith("/login")
            signed_in = await browser.post("/login", data={"token": token.group(1), "next": "/"})
            assert signed_in.status_code == 303
            overview = await browser.get("/")
            assert overview.status_code == 200 and SITE in overview.text
            listed = await browser.get("/stations")
            assert listed.status_code == 200 and "RES001" in listed.text
            assert (await browser.get(docs.group(1))).status_code == 200
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=15) as http:
            stations = (await http.get("api/stations")).json()
            plans = (await http.get(f"api/sites/{SITE}/plans", params={"limit": 1000})).json()
            transactions = (await http.get("api/transactions")).json()
            latest = await http.get(f"api/sites/{SITE}/plan")
        # the community connected over OCPP and stays online once the night is over
        assert len(stations) == STATIONS
        assert all(s["online"] for s in stations), [s for s in stations if not s["online"]]
        # cars came and went (those still there at the end left with it) ...
        assert transactions and not any(t["active"] for t in transactions)
        # ... and the scheduler planned them and sent the stations their profiles
        assert latest.status_code == 200
        assert max(p["sessions"] for p in plans) >= 1
        assert sum(p["profiles_sent"] for p in plans) >= 1
        assert not any(p["fallback_used"] for p in plans)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
