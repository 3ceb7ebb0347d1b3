"""Run OSQP on a `Qp`, warm-started from the last plan, and pull the answer back inside
every limit.

OSQP is a first-order method: its answer satisfies the constraints only to a tolerance,
and it may stop on an iteration or time limit. So the status is checked (anything but
"solved" means the caller falls back) and `project` makes every answer strictly safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import clarabel
import numpy as np
import osqp
import scipy.sparse as sp

from smart_charging.problem import Grid, Qp


@dataclass(frozen=True)
class SolverSettings:
    """OSQP settings that matter here; tolerances are absolute in kW / kWh."""

    eps_abs: float = 1e-3
    eps_rel: float = 1e-3
    max_iter: int = 10000
    time_limit_s: float = 10.0
    polish: bool = False
    adaptive_rho: bool = True
    # before the equal-share fallback, solve the same QP with Clarabel (interior point)
    interior_backup: bool = True


@dataclass(frozen=True)
class SolveResult:
    """What OSQP returned; `ok` is True only for status "solved" with a finite answer."""

    v: np.ndarray
    dual: np.ndarray
    status: str
    ok: bool
    iterations: int
    setup_seconds: float
    solve_seconds: float
    reused_factorisation: bool


@dataclass
class OsqpSession:
    """An OSQP workspace kept between solves.

    When the sparsity pattern is unchanged (a re-plan inside the same slot grid after
    an event) only numbers are updated, skipping the symbolic setup.
    """

    settings: SolverSettings = field(default_factory=SolverSettings)
    _solver: osqp.OSQP | None = None
    _pattern: tuple[bytes, ...] | None = None
    _rho: float = 0.1

    def solve(self, qp: Qp, warm_v: np.ndarray | None = None,
              warm_dual: np.ndarray | None = None, scaling: int = 10) -> SolveResult:
        """Solve; `scaling=0` turns off OSQP's Ruiz scaling (the retry for tiny problems,
        where scaling nearly-empty slots can stall it)."""
        s = self.settings
        pattern = (qp.P.indptr.tobytes(), qp.P.indices.tobytes(),
                   qp.A.indptr.tobytes(), qp.A.indices.tobytes(), bytes([scaling]))
        t0 = time.perf_counter()
        reused = self._solver is not None and pattern == self._pattern
        if reused:
            assert self._solver is not None
            self._solver.update(q=qp.q, l=qp.lo, u=qp.hi, Px=qp.P.data, Ax=qp.A.data)
            self._solver.update_settings(max_iter=s.max_iter, time_limit=s.time_limit_s)
        else:
            self._solver = osqp.OSQP()
            # start from the step size the last solve settled on: saves re-adapting it
            self._solver.setup(qp.P, qp.q, qp.A, qp.lo, qp.hi, rho=self._rho, eps_abs=s.eps_abs,
                               eps_rel=s.eps_rel, max_iter=s.max_iter,
                               time_limit=s.time_limit_s, polishing=s.polish,
                               adaptive_rho=s.adaptive_rho, verbose=False, warm_starting=True,
                               scaling=scaling)
            self._pattern = pattern
        solver = self._solver
        if warm_v is not None and warm_dual is not None:
            solver.warm_start(*qp.complete_warm(warm_v, warm_dual))
        t1 = time.perf_counter()
        res = solver.solve(raise_error=False)
        t2 = time.perf_counter()
        v = np.asarray(res.x, dtype=float)
        dual = np.asarray(res.y, dtype=float)
        status = str(res.info.status)
        ok = res.info.status_val == osqp.SolverStatus.OSQP_SOLVED and bool(np.isfinite(v).all())
        if ok:
            self._rho = float(res.info.rho_estimate)
        else:
            self._solver, self._pattern = None, None  # never reuse a workspace that failed
            self._rho = 0.1
        return SolveResult(v, dual, status, ok, int(res.info.iter), t1 - t0, t2 - t1, reused)


def solve_interior(qp: Qp, max_iter: int = 200, time_limit_s: float = 10.0) -> SolveResult:
    """Solve the same QP with Clarabel, an interior-point method: slower per problem
    than a warm OSQP re-plan but indifferent to scaling, so it is what runs before the
    equal-share fallback when OSQP stops on its iteration limit or "solved inaccurate".

    Clarabel's form is A v + s = b with s in a cone: equal rows go to the zero cone,
    finite upper and lower bounds each to a non-negative row.
    """
    t0 = time.perf_counter()
    A = sp.csr_matrix(qp.A)
    lo, hi = qp.lo, qp.hi
    eq = np.isfinite(lo) & np.isfinite(hi) & (np.abs(hi - lo) <= 1e-12)
    up = np.isfinite(hi) & ~eq
    dn = np.isfinite(lo) & ~eq
    A_c = sp.vstack([A[eq], A[up], -A[dn]], format="csc")
    b = np.concatenate([hi[eq], hi[up], -lo[dn]])
    cones = [clarabel.ZeroConeT(int(eq.sum())), clarabel.NonnegativeConeT(int(up.sum() + dn.sum()))]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.max_iter = max_iter
    settings.time_limit = time_limit_s
    P = sp.triu(qp.P, format="csc")
    solver = clarabel.DefaultSolver(P, np.asarray(qp.q, dtype=float), A_c, b, cones, settings)
    t1 = time.perf_counter()
    sol = solver.solve()
    t2 = time.perf_counter()
    v = np.asarray(sol.x, dtype=float)
    z = np.asarray(sol.z, dtype=float)
    # duals back in OSQP's convention (one signed multiplier per row of A)
    dual = np.zeros(len(lo))
    n_eq, n_up = int(eq.sum()), int(up.sum())
    dual[eq] = z[:n_eq]
    dual[up] += z[n_eq : n_eq + n_up]
    dual[dn] -= z[n_eq + n_up :]
    status = str(sol.status)
    # AlmostSolved: reduced accuracy, still far inside what `project` then makes exact
    ok = status in ("Solved", "AlmostSolved") and bool(np.isfinite(v).all())
    return SolveResult(v, dual, f"clarabel {status}", ok, int(sol.iterations), t1 - t0, t2 - t1,
                       False)


def project(grid: Grid, x: np.ndarray) -> np.ndarray:
    """The largest schedule inside every limit obtained by scaling x down.

    Clip each pair to [0, cap], cap each session's energy at its need, then scale every
    pair by the tightest factor headroom/load of the rows it counts in. Because all
    coefficients are non-negative, scaling one pair down never pushes another row up.
    """
    x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), 0.0, grid.cap_kw)
    if grid.n_pairs == 0:
        return x
    got = grid.delivered_kwh(x)
    over = np.where(got > grid.need_kwh, grid.need_kwh / np.maximum(got, 1e-12), 1.0)
    x = x * over[grid.pair_session]
    loads = grid.row_loads(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(loads > grid.headroom, grid.headroom / loads, 1.0)
    factor = np.clip(factor, 0.0, 1.0)
    pair_factor = np.ones(grid.n_pairs)
    for r in range(len(grid.rows)):
        touches = grid.row_coef[r, grid.pair_session] > 0
        f = factor[r, grid.pair_slot]
        pair_factor = np.where(touches, np.minimum(pair_factor, f), pair_factor)
    return x * pair_factor


def violations(grid: Grid, x: np.ndarray) -> float:
    """Largest amount by which x exceeds any row or pair limit (0 when all hold)."""
    if grid.n_pairs == 0:
        return 0.0
    worst_row = float(np.max(grid.row_loads(x) - grid.headroom, initial=0.0))
    worst_cap = float(np.max(x - grid.cap_kw, initial=0.0))
    return max(worst_row, worst_cap, float(np.max(-x, initial=0.0)))
