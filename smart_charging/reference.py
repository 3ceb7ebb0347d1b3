"""The bidirectional problem stated readably in cvxpy: the reference the fast OSQP path
(bidirectional.py) is tested against, and the place to try a formulation change first.

The layout (which lanes, pairs and rows) is fixed when the model is built; everything
that moves from one interval to the next (prices, loads, limits, stored energy, needs,
caps, a dispatch target) is a cvxpy Parameter, so `update` only sets numbers and cvxpy
reuses its canonicalisation. Slow (a few hundred ms on small sites): tests only.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from smart_charging.bidirectional import Lanes
from smart_charging.model import StepSeries, sample
from smart_charging.problem import Weights


class V2gReference:
    """min  energy cost + wear + delay + fairness + shortfall + flatness + overload
                + dispatch tracking (quadratic and linear)
    s.t. 0 <= charge <= cap, 0 <= discharge <= discharge cap,
         stored = stored now + eta_ch x charged - discharged / eta_dis (each slot),
         reserve <= stored <= capacity, the driver's energy at departure,
         every limit row: lower <= EV net <= limit - non-EV load + overload,
         overload <= what the non-EV load alone is over, backup discharge <= own load."""

    def __init__(self, lanes: Lanes, weights: Weights, tracking: bool = False) -> None:
        g, w = lanes, weights
        self.layout = (g.pair_lane.tobytes(), g.pair_slot.tobytes(), g.rows,
                       g.row_coef.tobytes(), g.soc.tobytes(), g.backup.tobytes())
        K, L, T, R = g.n_pairs, g.n_lanes, len(g.slots), len(g.rows)
        n_ses = len(g.sessions)
        lane, slot, h = g.pair_lane, g.pair_slot, g.pair_hours
        dt = g.slots.hours
        self.T = T

        # numbers that change every interval
        self.price = cp.Parameter(T, name="price")
        self.wear = cp.Parameter(L, nonneg=True, name="wear")
        self.cap_c = cp.Parameter(K, nonneg=True, name="cap_c")
        self.cap_d = cp.Parameter(K, nonneg=True, name="cap_d")
        self.stored_now = cp.Parameter(L, name="stored_now")
        self.e_lo = cp.Parameter(L, name="e_lo")
        self.e_hi = cp.Parameter(L, name="e_hi")
        self.end_lo = cp.Parameter(L, name="end_lo")
        self.end_hi = cp.Parameter(L, name="end_hi")
        self.need = cp.Parameter(L, nonneg=True, name="need")
        self.target = cp.Parameter(L, nonneg=True, name="target")
        self.room = cp.Parameter((R, T), name="limit_minus_load")
        self.upper = cp.Parameter((R, T), nonneg=True, name="room_at_least_0")
        self.lower = cp.Parameter((R, T), name="reverse_flow_floor")
        self.excess = cp.Parameter((R, T), nonneg=True, name="non_ev_over_limit")
        self.own_load = cp.Parameter(T, nonneg=True, name="own_load")
        self.fair_c = cp.Parameter(K, nonneg=True, name="fairness_c")
        self.fair_d = cp.Parameter(K, nonneg=True, name="fairness_d")
        self.quad_s = cp.Parameter(L, nonneg=True, name="shortfall_quadratic")
        # squares with a weight as sum_squares(sqrt(weight) x + sqrt(weight) offset): a
        # weight times the square of a parameter-shifted term is not DPP (no reuse)
        self.flat = cp.Parameter(T, nonneg=True, name="sqrt_flatness")
        self.flat_base = cp.Parameter(T, name="sqrt_flatness_x_load")
        self.track = cp.Parameter(T, name="sqrt_tracking_x_target") if tracking else None
        self.track_w = cp.Parameter(T, nonneg=True, name="sqrt_tracking") if tracking else None
        # the linear dispatch term: weight x hours x |net - target| where a target is set
        self.track_lin = cp.Parameter(T, nonneg=True, name="dispatch") if tracking else None
        self.track_kw = cp.Parameter(T, name="dispatch_x_target") if tracking else None

        self.c = cp.Variable(K, nonneg=True, name="charge_kw")
        self.d = cp.Variable(K, nonneg=True, name="discharge_kw")
        self.s = cp.Variable(L, nonneg=True, name="shortfall_kwh")
        self.o = cp.Variable((R, T), nonneg=True, name="overload")

        # structure: constant matrices
        per_slot = np.zeros((T, K))
        per_slot[slot, np.arange(K)] = 1.0
        per_lane_h = np.zeros((L, K))
        per_lane_h[lane, np.arange(K)] = h
        since = (lane[:, None] == lane[None, :]) & (slot[None, :] <= slot[:, None])
        soc_k = g.soc[lane]
        first = np.zeros((K, L))
        first[np.arange(K), lane] = 1.0
        last = np.zeros((L, K))
        for j in range(L):
            k = np.nonzero(lane == j)[0]
            if len(k):
                last[j, k[np.argmax(slot[k])]] = 1.0
        eta_c, eta_d = g.eta_c[lane], g.eta_d[lane]

        c, d, s, o = self.c, self.d, self.s, self.o
        stored = first @ self.stored_now + since.astype(float) @ (
            cp.multiply(eta_c * h, c) - cp.multiply(h / eta_d, d))
        self.stored = stored
        charged = per_lane_h @ c
        net_slot = per_slot @ (c - d)
        charge_slot = per_slot @ c
        cons = [c <= self.cap_c, d <= self.cap_d, s <= self.target, o <= self.excess]
        ks = np.nonzero(soc_k)[0]
        if len(ks):
            cons += [stored[ks] >= self.e_lo[lane[ks]], stored[ks] <= self.e_hi[lane[ks]]]
        plain = np.nonzero(~g.soc)[0]
        if len(plain):  # metered energy, as the charge-only engine has it
            cons += [charged[plain] + s[plain] >= self.target[plain],
                     charged[plain] + s[plain] <= self.need[plain]]
        with_soc = np.nonzero(g.soc & (last.sum(axis=1) > 0))[0]
        if len(with_soc):  # the driver's energy, counted in the battery
            end = last[with_soc] @ stored
            cons += [end + cp.multiply(g.eta_c[with_soc], s[with_soc]) >= self.end_lo[with_soc],
                     end + cp.multiply(g.eta_c[with_soc], s[with_soc]) <= self.end_hi[with_soc]]
        cons.append(s[n_ses:] == 0)  # a stationary battery has no driver
        for r in range(R):
            coef_c = per_slot * g.row_coef[r, lane]
            coef_d = per_slot * g.dis_coef[r, lane]
            flow = coef_c @ c + coef_d @ d
            if g.collinear[r]:
                cons += [flow - o[r] <= self.room[r], flow >= self.lower[r]]
            else:
                cons += [flow <= self.upper[r], o[r] == 0]
        kb = np.nonzero(g.backup[lane])[0]
        if len(kb):  # behind the meter: backup discharge covers the site's own load only
            cons.append(per_slot[:, kb] @ d[kb] <= self.own_load + charge_slot)

        hours_from_now = np.cumsum(dt) - dt / 2
        t_k = hours_from_now[slot]
        opted = np.array([x.opted_out for x in g.sessions] + [False] * (L - n_ses))
        is_ses = lane < n_ses
        delay = np.where(opted[lane], np.minimum(w.opted_out_delay * t_k, w.shortfall / 2),
                         np.where(is_ses, w.early * t_k, 0.0))
        prio = np.array([x.priority for x in g.sessions] + [0.0] * (L - n_ses))
        unit = np.outer(g.row_unit, dt)
        energy_cost = w.cost * cp.sum(cp.multiply(h, cp.multiply(self.price[slot], c - d)))
        wear = cp.sum(cp.multiply(h, cp.multiply(self.wear[lane], d)))
        objective = (
            energy_cost + wear + (h * delay) @ c
            + cp.sum(cp.multiply(self.fair_c, cp.square(c)))
            + cp.sum(cp.multiply(self.fair_d, cp.square(d)))
            + w.shortfall * prio @ s + cp.sum(cp.multiply(self.quad_s, cp.square(s)))
            + cp.sum_squares(cp.multiply(self.flat, charge_slot) + self.flat_base)
            + w.overload * cp.sum(cp.multiply(unit, o))
        )
        if tracking:
            assert self.track is not None and self.track_w is not None
            assert self.track_lin is not None and self.track_kw is not None
            objective = objective + cp.sum_squares(cp.multiply(self.track_w, net_slot)
                                                   - self.track)
            objective = objective + cp.sum(cp.abs(cp.multiply(self.track_lin, net_slot)
                                                  - self.track_kw))
        self.objective = objective
        self.problem = cp.Problem(cp.Minimize(objective), cons)
        self.weights = w

    def update(self, lanes: Lanes, target_kw: StepSeries | None = None) -> None:
        """Set this interval's numbers; the layout must be the one built for."""
        g, w = lanes, self.weights
        layout = (g.pair_lane.tobytes(), g.pair_slot.tobytes(), g.rows, g.row_coef.tobytes(),
                  g.soc.tobytes(), g.backup.tobytes())
        if layout != self.layout:
            raise ValueError("V2gReference: another layout; build a new model")
        dt = g.slots.hours
        S = g.scale_kw
        self.price.value = g.price
        self.wear.value = g.wear
        self.cap_c.value = g.cap_c
        self.cap_d.value = g.cap_d
        self.stored_now.value = g.e0
        self.e_lo.value, self.e_hi.value = g.e_lo, g.e_hi
        self.end_lo.value, self.end_hi.value = g.end_lo, g.end_hi
        self.need.value, self.target.value = g.need, g.target
        room = g.limit - g.load_hi
        self.room.value = np.where(np.isfinite(room), room, 1e9)
        self.upper.value = np.where(np.isfinite(g.upper), g.upper, 1e9)
        self.lower.value = np.where(np.isfinite(g.lower), g.lower, -1e9)
        self.excess.value = np.where(g.collinear[:, None], np.clip(g.load_hi - g.limit, 0, None),
                                     0.0)
        self.own_load.value = np.maximum(g.root_load_lo, 0.0)
        dts = dt[g.pair_slot]
        self.fair_c.value = np.where(g.cap_c > 0, w.fairness * dts / np.maximum(g.cap_c, 1e-3),
                                     0.0)
        self.fair_d.value = np.where(g.cap_d > 0, w.fairness * dts / np.maximum(g.cap_d, 1e-3),
                                     0.0)
        self.quad_s.value = w.shortfall_quadratic / np.maximum(g.target, 1.0)
        track = None if target_kw is None else sample(target_kw, g.slots.starts, g.slots.ends,
                                                       "max", 0.0)
        has = np.zeros(len(dt), dtype=bool) if track is None else np.isfinite(track)
        root_flat = np.sqrt(np.where(has, 0.0, w.flatness) * dt / S)
        self.flat.value = root_flat
        self.flat_base.value = root_flat * (g.root_load - g.least_root_load)
        if self.track is not None and self.track_w is not None:
            root_track = np.sqrt(np.where(has, w.tracking, 0.0) * dt / S)
            self.track_w.value = root_track
            self.track.value = root_track * (np.nan_to_num(track) if track is not None
                                             else np.zeros(len(dt)))
        if self.track_lin is not None and self.track_kw is not None:
            self.track_lin.value = np.where(has, w.dispatch, 0.0) * dt
            self.track_kw.value = self.track_lin.value * (
                np.nan_to_num(track) if track is not None else np.zeros(len(dt)))

    def solve(self) -> float:
        """Solve (Clarabel) and return the optimal objective."""
        self.problem.solve(solver=cp.CLARABEL)
        if self.problem.status not in ("optimal", "optimal_inaccurate"):
            raise RuntimeError(f"reference model: {self.problem.status}")
        return float(self.problem.value)

    def evaluate(self, lanes: Lanes, c: np.ndarray, d: np.ndarray, s: np.ndarray
                 ) -> tuple[float, float]:
        """The objective at a given schedule (with the least overload its rows imply)
        and the worst violation of any constraint there."""
        lowest = min(float(np.min(x, initial=0.0)) for x in (c, d, s))
        # the variables are declared >= 0; a first-order solver's -1e-9 is set to 0 and
        # counted as a violation of that size
        self.c.value, self.d.value, self.s.value = (np.maximum(x, 0.0) for x in (c, d, s))
        over = np.clip(lanes.row_loads(c, d) - np.asarray(self.room.value), 0.0, None)
        self.o.value = np.where(lanes.collinear[:, None], over, 0.0)
        worst = max((float(np.max(con.violation(), initial=0.0))
                     for con in self.problem.constraints), default=0.0)
        return float(self.objective.value), max(worst, -lowest)
