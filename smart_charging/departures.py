"""Departures are uncertain: how long cars really stay, against what the drivers said.

Drivers leave before (and after) the departure they enter. From past sessions of a
site (the CSMS reads them from its stored transactions; the engine only gets the
result) the distribution of the ratio actual stay / estimated stay is kept as a few
quantiles. The planner turns it into the probability that a car is already gone at a
slot, and a kWh planned there is worth that much less (see `Weights.departure_risk`
and docs/decisions/0001-engine-rules.md): energy is front-loaded exactly as far as history
says drivers leave early, instead of by a hand-tuned weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

MIN_STAY_S = 300.0  # an estimate under 5 minutes says nothing about the stay


@dataclass(frozen=True)
class PastStay:
    """One finished session: when it started, the departure the driver gave, when it
    really ended."""

    arrival: datetime
    estimated_departure: datetime
    departure: datetime


@dataclass(frozen=True)
class DepartureModel:
    """Quantiles of actual stay / estimated stay (sorted, equally spaced in
    probability from 0 to 1), learnt from `sessions` past stays."""

    stay_ratios: tuple[float, ...]
    sessions: int

    def __post_init__(self) -> None:
        if len(self.stay_ratios) < 2 or any(
                b < a for a, b in zip(self.stay_ratios, self.stay_ratios[1:], strict=False)):
            raise ValueError("stay_ratios: at least two quantiles, non-decreasing")

    def gone_probability(self, arrival: float, estimated_departure: float,
                         times: np.ndarray) -> np.ndarray:
        """P(the car has left by each of `times`), all as POSIX seconds: the share of
        past stays that were shorter, as a fraction of their estimate, than the time
        from arrival to each time is of this car's estimate."""
        stay = max(estimated_departure - arrival, MIN_STAY_S)
        ratio = (np.asarray(times, dtype=float) - arrival) / stay
        probs = np.linspace(0.0, 1.0, len(self.stay_ratios))
        return np.interp(ratio, np.asarray(self.stay_ratios), probs, left=0.0, right=1.0)


def learn_departures(history: Sequence[PastStay], quantiles: int = 21,
                     min_sessions: int = 30) -> DepartureModel | None:
    """The model from past stays, or None under `min_sessions` usable ones (then the
    planner trusts the estimates as before)."""
    ratios = []
    for h in history:
        est = (h.estimated_departure - h.arrival).total_seconds()
        real = (h.departure - h.arrival).total_seconds()
        if est >= MIN_STAY_S and real > 0:
            ratios.append(real / est)
    if len(ratios) < min_sessions:
        return None
    q = np.quantile(np.asarray(ratios), np.linspace(0.0, 1.0, quantiles))
    return DepartureModel(tuple(float(v) for v in np.maximum.accumulate(q)), len(ratios))
