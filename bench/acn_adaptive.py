"""Adaptive scheduling as published, OUR implementation, NOT Caltech's `adacharge`.

A baseline for `bench.acn_replay --algorithms adaptive`: the model-predictive "adaptive
scheduling algorithm" of Lee, Li, Low et al., "Adaptive Charging Networks: A Framework
for Smart Electric Vehicle Charging" (IEEE Trans. Smart Grid, 2021) and "ACN-Sim"
(Lee, Sharma, Low et al., IEEE Trans. Smart Grid, 2021), written here from the published
formulation with cvxpy. Caltech's own implementation (`adacharge`) is not on this
machine's package index and none of its code is used or copied; where the papers leave
a detail open, the choice made here is stated below and may differ from theirs.

Every period (5 minutes) the algorithm solves, over the horizon t = 0..T-1 up to the
latest *estimated* departure of the cars plugged in (T periods),

    maximise   sum_t sum_i (T - t) / T * r_i(t)          (quick charge, u_QC)
             - eta * sum_t sum_i r_i(t)^2                 (equal share, u_ES, eta = 1e-12)
    subject to 0 <= r_i(t) <= rbar_i                      while t < the estimated departure
               r_i(t) = 0                                 from the estimated departure on
               sum_t r_i(t) <= e_i                        (remaining demand, amp-periods)
               |sum_i A_ji r_i(t) exp(j phi_i)| <= c_j    (every infrastructure limit of
                                                           acnportal's network, exact
                                                           phasor magnitude: a cone)
               r_i(0) >= rmin_i for the cars given a minimum rate (below)

and sends r_i(0), quantised. The three published practical steps:

- Minimum pilot: cars are given the EVSE's minimum pilot (6 A, 8 A for ClipperCreek) in
  the first period as a lower bound, in order of estimated remaining time (earliest
  first), as long as that stays within every infrastructure limit and the car still
  needs at least one period at that rate; the others get no lower bound.
  (acnportal's `apply_minimum_charging_rate` does the same but orders by
  `SessionInfo.remaining_time`, which acnportal computes from the REAL departure; here
  only the estimate is used.)
- Quantisation (post-processing, whole amps): each first-period rate is rounded down to
  what its EVSE accepts (whole amps between the minimum and 32 A, or 0/8/16/24/32 A),
  anything under the minimum to 0.
- Reallocation of the rounding loss: one pass over the cars in order of their rounding
  loss (largest first), each raised to its next accepted pilot if the optimum was above
  the rounded value and the exact infrastructure check still passes.

Choices of ours: a car still plugged in after its estimated departure is planned as
leaving at the end of the current period (T >= 1), the same rule the engine gets in this
bench; the solver is Clarabel (the papers used ECOS/MOSEK; ECOS is not installed); if
the solver fails, the period's pilots are all zero and the failure is counted
(`fallbacks`). Cars are not given a per-car rate limit (the data has none).
"""

from __future__ import annotations

import numpy as np

ETA_EQUAL_SHARE = 1e-12


def make_adaptive_algo(eta: float = ETA_EQUAL_SHARE, solver: str = "CLARABEL"):
    import cvxpy as cp
    from acnportal.algorithms import BaseAlgorithm
    from acnportal.algorithms.utils import infrastructure_constraints_feasible

    class AdaptiveSchedulingAsPublished(BaseAlgorithm):
        """Quick charge + equal share MPC (published formulation, our code)."""

        def __init__(self) -> None:
            super().__init__()
            self.max_recompute = 1
            self.fallbacks: list[str] = []
            self.solver_status: dict[str, int] = {}

        # ------------------------------------------------------------- helpers

        def _accepted(self, info, k: int) -> np.ndarray:
            """Pilots EVSE k accepts, ascending, 0 included."""
            if info.is_continuous[k]:
                lo, hi = float(info.min_pilot[k]), float(info.max_pilot[k])
                steps = np.arange(np.ceil(lo), np.floor(hi) + 1)  # whole amps
            else:
                steps = np.asarray(info.allowable_pilots[k], dtype=float)
            return np.unique(np.concatenate(([0.0], steps[steps > 0])))

        def schedule(self, active_sessions):
            iface = self.interface
            info = iface.infrastructure_info()
            period = iface.period
            now = iface.current_time
            sessions = [s for s in active_sessions if s.remaining_demand > 1e-9]
            if not sessions:
                return {}
            n = len(sessions)
            idx = np.array([info.get_station_index(s.station_id) for s in sessions])
            # estimated periods left, at least the current one (our rule, as the engine's)
            left = np.array([max(int(s.estimated_departure - now), 1) for s in sessions])
            horizon = int(left.max())
            demand = np.array([s.remaining_demand * 1000 / info.voltages[k] * 60 / period
                               for s, k in zip(sessions, idx, strict=True)])  # amp-periods
            rbar = np.array([float(info.max_pilot[k]) for k in idx])
            rmin_evse = np.array([float(info.min_pilot[k]) for k in idx])

            # minimum pilot in the first period, earliest estimated departure first
            lower0 = np.zeros(n)
            trial = np.zeros(len(info.station_ids))
            for i in np.argsort(left, kind="stable"):
                k = idx[i]
                trial[k] = rmin_evse[i]
                if rmin_evse[i] <= demand[i] and infrastructure_constraints_feasible(
                        trial[:, None], info):
                    lower0[i] = rmin_evse[i]
                else:
                    trial[k] = 0.0

            ub = np.zeros((n, horizon))
            for i in range(n):
                ub[i, :left[i]] = rbar[i]
            weights = (horizon - np.arange(horizon)) / horizon  # (T - t) / T

            r = cp.Variable((n, horizon))
            cons = [r >= 0, r <= ub, cp.sum(r, axis=1) <= demand, r[:, 0] >= lower0]
            phi = np.deg2rad(np.asarray(info.phases, dtype=float)[idx])
            a = np.asarray(info.constraint_matrix, dtype=float)[:, idx]
            for j in range(a.shape[0]):
                if not np.any(a[j]):
                    continue
                m = np.vstack([a[j] * np.cos(phi), a[j] * np.sin(phi)])  # 2 x n
                cons.append(cp.norm(m @ r, 2, axis=0) <= float(info.constraint_limits[j]))
            objective = cp.Maximize(cp.sum(r @ weights) - eta * cp.sum_squares(r))
            prob = cp.Problem(objective, cons)
            try:
                prob.solve(solver=solver)
                status = prob.status
            except cp.error.SolverError as e:  # counted, pilots 0 this period
                status = f"error {type(e).__name__}"
            self.solver_status[status] = self.solver_status.get(status, 0) + 1
            if status not in ("optimal", "optimal_inaccurate") or r.value is None:
                self.fallbacks.append(f"t={now} {status}")
                return {s.station_id: [0.0] for s in sessions}
            opt = np.maximum(r.value[:, 0], 0.0)

            # quantise: round down to an accepted pilot
            accepted = [self._accepted(info, k) for k in idx]
            pilots = np.zeros(n)
            for i in range(n):
                ok = accepted[i][accepted[i] <= opt[i] + 1e-4]
                pilots[i] = ok[-1] if len(ok) else 0.0
            # reallocate the rounding loss: next accepted pilot, largest loss first
            rates = np.zeros(len(info.station_ids))
            rates[idx] = pilots
            for i in np.argsort(-(opt - pilots), kind="stable"):
                if opt[i] - pilots[i] <= 1e-4:
                    break
                higher = accepted[i][accepted[i] > pilots[i]]
                if not len(higher):
                    continue
                rates[idx[i]] = higher[0]
                if infrastructure_constraints_feasible(rates[:, None], info):
                    pilots[i] = higher[0]
                else:
                    rates[idx[i]] = pilots[i]
            return {s.station_id: [float(p)] for s, p in zip(sessions, pilots, strict=True)}

    return AdaptiveSchedulingAsPublished()
