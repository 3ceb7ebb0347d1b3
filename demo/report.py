"""What the demo prints: the welcome, an hourly line during the night, the summary after.

Pure text from numbers, so the wording is in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from csms.store.plans import PlanTotals
from simulators.fleet import Summary


@dataclass(frozen=True)
class Welcome:
    scenario: str
    description: str
    start: datetime  # local time of the scenario
    end: datetime
    speed: float
    api: str  # base URL of the HTTP API
    dashboard: str | None  # None until the API serves a page at /
    docs: str
    ocpp: str
    token: str
    log: str


def welcome(w: Welcome) -> str:
    wall = (w.end - w.start) / w.speed
    return "\n".join([
        f"csms demo: {w.description}",
        f"Simulating {w.start:%Y-%m-%d %H:%M} to {w.end:%Y-%m-%d %H:%M} "
        f"(UTC{w.start:%z}) at {w.speed:g}x: about {_duration(wall)}.",
        "Cars with ISO 15118 tell the CSMS their departure and energy; the other drivers",
        "use an app (the HTTP API). The scheduler plans every car under the transformer limit.",
        "",
        f"  Dashboard     {w.dashboard or '(not built into this version)'}",
        f"  API docs      {w.docs}",
        f"  Admin token   {w.token}",
        "                (log in with it, or: curl -H 'Authorization: Bearer <token>' "
        f"{w.api}api/stations)",
        f"  Stations      {w.ocpp}",
        f"  Logs          {w.log}",
        "",
    ])


def hourly(now: datetime, ev_kw: float, household_kw: float, limit_kw: float | None,
           cars: int, charged_kwh: float) -> str:
    total = ev_kw + household_kw
    limit = f" of {limit_kw:.0f} kW" if limit_kw else " kW"
    return (f"  {now:%H:%M}  transformer {total:4.0f}{limit} "
            f"(households {household_kw:3.0f}, EVs {ev_kw:3.0f}) | "
            f"{cars:3d} cars plugged in | {charged_kwh:5.0f} kWh charged")


def summary(s: Summary, totals: PlanTotals, local: timedelta, wall: timedelta,
            uncontrolled: tuple[float, datetime] | None = None) -> str:
    """`uncontrolled`: the peak (kW, when) the same cars would have made at full power."""
    d = s.to_dict()
    plugged = [r for r in s.sessions if r.plugged_in]
    served = [r for r in plugged if r.satisfied]
    wanted, got = d["energy_requested_kwh"], d["energy_delivered_kwh"]
    share = f" ({100 * got / wanted:.1f}%)" if wanted else ""
    lines = [f"The night is over ({_duration(wall)}). What the stations metered:"]
    for node, p in d["peaks"].items():
        at = _local(p["peak_total_at"], local)
        limit = p["limit_kw"]
        verdict = ""
        if limit:
            verdict = (f", limit {limit:g} kW: "
                       + ("stayed under it" if p["peak_total_kw"] <= limit + 0.5 else "EXCEEDED"))
        lines.append(f"  transformer {node}: peak load {p['peak_total_kw']:.0f} kW "
                     f"(households and EVs) at {at}{verdict}")
        lines.append(f"    EVs alone peaked at {p['peak_ev_kw']:.0f} kW at "
                     f"{_local(p['peak_ev_at'], local)}")
    if uncontrolled is not None:
        kw, at = uncontrolled
        limits = [p["limit_kw"] for p in d["peaks"].values() if p["limit_kw"]]
        of_limit = f", {100 * kw / sum(limits):.0f}% of the limit" if limits else ""
        lines.append(f"    without smart charging (every car at full power on arrival): "
                     f"{kw:.0f} kW at {at.astimezone(UTC) + local:%H:%M}{of_limit}")
    lines += [
        f"  energy: {got:,.1f} of {wanted:,.1f} kWh wanted delivered{share}",
        f"  sessions: {len(served)} of {len(plugged)} cars left with the energy they wanted",
        f"  scheduler: {totals.plans} plans ({totals.fallbacks} fell back to equal shares), "
        f"{totals.profiles_sent} charging profiles sent, {totals.profiles_rejected} rejected",
    ]
    if d["stations_failed"]:
        lines.append(f"  {d['stations_failed']} of {d['stations']} stations failed to connect "
                     "(see the log)")
    return "\n".join(lines)


def _local(stamp: str | None, offset: timedelta) -> str:
    if not stamp:
        return "-"
    ts = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return f"{ts + offset:%H:%M}"


def _duration(span: timedelta) -> str:
    seconds = round(span.total_seconds())
    if seconds < 90:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
