"""Expected arrivals from a site's own history: how many cars plug in by weekday and hour,
with a spread, so a forecast counts the cars that are not here yet.

Pure: past sessions in, synthetic engine `Session`s out. Counts are per calendar day of the
history (days without a session count as zero), so a quiet Sunday is not averaged away;
the quantiles of those daily counts give the forecast's band.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from smart_charging import Session, Site

Bucket = tuple[int, int]  # (weekday 0 = Monday, local hour)


@dataclass(frozen=True)
class PastSession:
    """A finished session as history keeps it: no driver, only times and energy."""

    arrival: datetime
    departure: datetime
    energy_kwh: float
    opted_out: bool = False


@dataclass(frozen=True)
class BucketStats:
    """Cars arriving in one weekday-hour: daily counts' quantiles (by exceedance: `p90` is
    the count reached on 90% of days, the low one) and a typical stay."""

    p90: float
    p50: float
    p10: float
    stay: timedelta
    energy_kwh: float
    opted_out_share: float


@dataclass(frozen=True)
class ArrivalModel:
    """Per (weekday, hour) in the site's local time; an empty model expects nobody."""

    buckets: dict[Bucket, BucketStats]
    utc_offset: timedelta = timedelta(0)
    days: int = 0  # calendar days of history behind it

    def stats(self, at: datetime) -> BucketStats | None:
        local = at.astimezone(UTC) + self.utc_offset
        return self.buckets.get((local.weekday(), local.hour))


def learn(history: Sequence[PastSession], utc_offset: timedelta, first_day: date,
          last_day: date) -> ArrivalModel:
    """The arrival model of the sessions that started on [first_day, last_day] (local)."""
    if last_day < first_day:
        return ArrivalModel({}, utc_offset, 0)
    per_day: dict[Bucket, dict[date, list[PastSession]]] = defaultdict(lambda: defaultdict(list))
    for s in history:
        local = s.arrival.astimezone(UTC) + utc_offset
        if first_day <= local.date() <= last_day:
            per_day[(local.weekday(), local.hour)][local.date()].append(s)
    n_days = (last_day - first_day).days + 1
    weekdays = [sum(1 for k in range(n_days)
                    if (first_day + timedelta(days=k)).weekday() == wd) for wd in range(7)]
    buckets: dict[Bucket, BucketStats] = {}
    for (wd, hour), by_day in per_day.items():
        counts = [len(v) for v in by_day.values()]
        counts += [0] * max(0, weekdays[wd] - len(counts))
        sessions = [s for v in by_day.values() for s in v]
        stays = [(s.departure - s.arrival).total_seconds() for s in sessions]
        p10, p50, p90 = np.quantile(np.asarray(counts, dtype=float), (0.1, 0.5, 0.9))
        buckets[(wd, hour)] = BucketStats(
            p90=float(p10), p50=float(p50), p10=float(p90),
            stay=timedelta(seconds=float(np.median(stays))),
            energy_kwh=float(np.median([s.energy_kwh for s in sessions])),
            opted_out_share=sum(s.opted_out for s in sessions) / len(sessions))
    return ArrivalModel(buckets, utc_offset, n_days)


@dataclass(frozen=True)
class ExpectedArrival:
    """A car the history expects. `rank` orders the cars of one hour: the first `p90`
    of them come on 90% of days, up to `p10` on 10% (see `Scenario`)."""

    session: Session
    rank: int
    bucket_p90: float
    bucket_p50: float


def expected(model: ArrivalModel, site: Site, plugged: Sequence[Session], now: datetime,
             hours: int = 24) -> list[ExpectedArrival]:
    """Cars expected to arrive from `now` for `hours`, up to the high (P10) count of each
    hour, each on an EVSE free at that time (none free: not counted, the site is full).
    Arrivals are spread evenly within their hour; stay and energy are the hour's medians."""
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for s in plugged:
        busy[s.evse_id].append((s.arrival, s.departure))
    out: list[ExpectedArrival] = []
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    for h in range(hours + 1):
        start = hour0 + timedelta(hours=h)
        st = model.stats(start)
        if st is None:
            continue
        n = int(np.ceil(st.p10))
        opted_every = round(1 / st.opted_out_share) if st.opted_out_share > 0 else 0
        for i in range(n):
            arrival = start + timedelta(hours=(i + 0.5) / max(n, 1))
            if arrival < now or arrival >= now + timedelta(hours=hours):
                continue
            departure = arrival + max(st.stay, timedelta(minutes=15))
            evse = next((e for e in site.evses
                         if all(b <= arrival or departure <= a for a, b in busy[e.id])), None)
            if evse is None:
                continue
            busy[evse.id].append((arrival, departure))
            session = Session(
                id=f"expected-{arrival.isoformat()}-{i}", evse_id=evse.id, arrival=arrival,
                departure=departure, energy_wanted_kwh=st.energy_kwh,
                opted_out=bool(opted_every) and (i + 1) % opted_every == 0)
            out.append(ExpectedArrival(session, i, st.p90, st.p50))
    return out
