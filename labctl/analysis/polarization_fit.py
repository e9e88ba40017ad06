"""Fit of a potentiostatic-polarisation current transient to finite-layer diffusion.

After a small step ΔV on a symmetric Li|SE|Li cell the current relaxes as the salt
gradient builds up across the electrolyte layer (Evans, Vincent & Bruce, Polymer 28
(1987) 2324; DESIGN §5):

    I(t) = Iss + (I0 − Iss)·S(t/τ),   S(x) = Σ_odd k 8/(π²k²)·exp(−k²x),   τ = L²/(π²D)

Fitting the whole transient gives τ, so a hold can be judged *steady* by its length in
units of τ (the excess current left after n·τ is below (8/π²)·e⁻ⁿ of I0 − Iss: 0.5 % at
5τ) instead of by a dI/dt threshold, which a slow cell passes long before it is steady.
When the hold is short the fitted Iss is the extrapolation t → ∞ of the same law, with the
standard errors of (Iss, I0, τ) from the fit's covariance.

How: the samples are averaged into ~200 log-spaced time bins (weights = samples per bin,
so the fit costs the same for a 100-sample and a 10⁶-sample hold), τ is found by a
bounded 1-D search over log τ with (Iss, I0 − Iss) solved linearly at each τ (variable
projection), and the covariance is s²·(JᵀWJ)⁻¹ from the three-parameter Jacobian at the
optimum, s² the weighted residual variance. It assumes white current noise: correlated
noise or drift makes these standard errors too small, which ``residual_structure`` (the
lag-1 autocorrelation of the binned residuals) helps to notice.

Pure numpy/scipy: no file or instrument access (DESIGN §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from labctl.jsonable import to_jsonable

#: Excess current fraction left after n·τ is (8/π²)·exp(−n); 5τ leaves 0.55 % of I0 − Iss.
STEADY_TAUS = 5.0

_N_BINS = 200
_N_TERMS = 400  # odd terms up to k = 799: exp(−k²·x) is negligible for x ≥ 1e-4


def relaxation(x: np.ndarray) -> np.ndarray:
    """S(x) = Σ_odd k 8/(π²k²)·exp(−k²x) for x = t/τ ≥ 0 (S(0) = 1).

    Below x = 1e-4 the series would need more terms; there the short-time form
    1 − (4/π^1.5)·√x (exact to < 1e-6 there) is used instead.
    """
    x = np.asarray(x, dtype=float)
    k2 = np.arange(1, 2 * _N_TERMS, 2, dtype=float) ** 2
    xs = np.maximum(x, 1e-4)
    s = np.exp(-np.multiply.outer(xs, k2)) @ (8.0 / (math.pi**2 * k2))
    short = 1.0 - 4.0 / math.pi**1.5 * np.sqrt(np.maximum(x, 0.0))
    return np.where(x < 1e-4, short, s)


def _relaxation_slope(x: np.ndarray) -> np.ndarray:
    """dS/dx."""
    x = np.asarray(x, dtype=float)
    k2 = np.arange(1, 2 * _N_TERMS, 2, dtype=float) ** 2
    xs = np.maximum(x, 1e-4)
    d = -np.exp(-np.multiply.outer(xs, k2)) @ (8.0 / math.pi**2 * np.ones_like(k2))
    short = -2.0 / math.pi**1.5 / np.sqrt(np.maximum(x, 1e-12))
    return np.where(x < 1e-4, short, d)


@dataclass(frozen=True)
class TransientFit:
    """Iss, I0 (the law's value at t = 0) and τ with standard errors and correlation.

    ``hold_over_tau`` is the hold's length in units of the fitted τ; ``excess_at_end`` the
    fitted (I − Iss)/Iss left at the last sample. ``cov`` is the covariance of
    (Iss, I0, τ) in A, A, s.
    """

    Iss_A: float
    I0_A: float
    tau_s: float
    Iss_stderr_A: float
    I0_stderr_A: float
    tau_stderr_s: float
    cov: tuple[tuple[float, float, float], ...]
    hold_s: float
    hold_over_tau: float
    excess_at_end: float
    residual_rms_A: float
    residual_structure: float
    n_samples: int
    tau_at_bound: bool
    conventions: dict[str, Any] = field(default_factory=dict)

    def current(self, t: np.ndarray) -> np.ndarray:
        return self.Iss_A + (self.I0_A - self.Iss_A) * relaxation(np.asarray(t, dtype=float) / self.tau_s)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def _bins(t: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-spaced time bins: mean t, mean I and sample count per non-empty bin."""
    if t.size <= _N_BINS:
        return t, cur, np.ones_like(t)
    edges = np.geomspace(t[0], t[-1] * (1 + 1e-12), _N_BINS + 1)
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, _N_BINS - 1)
    n = np.bincount(idx, minlength=_N_BINS).astype(float)
    st = np.bincount(idx, weights=t, minlength=_N_BINS)
    si = np.bincount(idx, weights=cur, minlength=_N_BINS)
    keep = n > 0
    return st[keep] / n[keep], si[keep] / n[keep], n[keep]


def _covariance(jac: np.ndarray, s2: float) -> np.ndarray:
    """s²·(JᵀJ)⁻¹, scaled to unit columns first; infinite where the data do not pin a parameter."""
    scale = np.linalg.norm(jac, axis=0)
    if np.any(scale == 0) or not np.all(np.isfinite(jac)):
        return np.full((3, 3), np.inf)
    js = jac / scale
    _u, sv, vt = np.linalg.svd(js, full_matrices=False)
    if sv[-1] <= sv[0] * 1e-10:
        return np.full((3, 3), np.inf)
    cov_s = (vt.T / sv**2) @ vt
    return s2 * cov_s / np.outer(scale, scale)


def fit_transient(t: np.ndarray, I_A: np.ndarray) -> TransientFit:
    """Fit I(t) = Iss + (I0 − Iss)·S(t/τ) to a hold's samples (t in s since the step, > 0).

    Raises ValueError when the trace is unusable (fewer than 10 samples, non-finite values,
    no decay to fit).
    """
    t = np.asarray(t, dtype=float)
    cur = np.asarray(I_A, dtype=float)
    if t.ndim != 1 or t.shape != cur.shape:
        raise ValueError(f"t and I_A must be 1-D of equal length, got {t.shape} and {cur.shape}")
    ok = np.isfinite(t) & np.isfinite(cur) & (t > 0)
    t, cur = t[ok], cur[ok]
    if t.size < 10:
        raise ValueError(f"need at least 10 samples after the step to fit the transient, got {t.size}")
    order = np.argsort(t)
    t, cur = t[order], cur[order]
    sign = 1.0 if np.median(cur) >= 0 else -1.0
    mag = sign * cur
    tb, ib, wb = _bins(t, mag)
    sw = np.sqrt(wb)

    def solve(log_tau: float) -> tuple[float, np.ndarray]:
        s = relaxation(tb / math.exp(log_tau))
        a = np.column_stack([1.0 - s, s]) * sw[:, None]  # I = Iss·(1 − S) + I0·S
        coef, *_ = np.linalg.lstsq(a, ib * sw, rcond=None)
        r = ib * sw - a @ coef
        return float(r @ r), coef

    lo, hi = math.log(t[0] / 20.0), math.log(t[-1] * 50.0)
    grid = np.linspace(lo, hi, 41)
    costs = [solve(g)[0] for g in grid]
    k = int(np.argmin(costs))
    a_, b_ = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    best = minimize_scalar(lambda g: solve(g)[0], bounds=(a_, b_), method="bounded", options={"xatol": 1e-6})
    log_tau = float(best.x)
    tau = math.exp(log_tau)
    at_bound = log_tau - lo < 0.05 or hi - log_tau < 0.05
    cost, (iss, i0) = solve(log_tau)
    if not (i0 > iss):
        raise ValueError("the current does not decay after the step: no diffusion transient to fit")

    x = tb / tau
    s = relaxation(x)
    jac = np.column_stack([1.0 - s, s, (i0 - iss) * _relaxation_slope(x) * (-x / tau)]) * sw[:, None]
    dof = max(tb.size - 3, 1)
    s2 = cost / dof
    cov = _covariance(jac, s2)
    if at_bound:  # the optimum is the search's edge: τ (and so Iss) is not determined by the data
        cov = np.full((3, 3), np.inf)
    resid = (ib - (iss * (1 - s) + i0 * s)) * sw
    rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if resid.size > 3 and np.std(resid) > 0 else 0.0
    err = np.sqrt(np.diag(cov))
    hold = float(t[-1])
    excess_end = (i0 - iss) * float(relaxation(np.array([hold / tau]))[0]) / iss if iss != 0 else math.inf
    return TransientFit(
        Iss_A=sign * float(iss),
        I0_A=sign * float(i0),
        tau_s=tau,
        Iss_stderr_A=float(err[0]),
        I0_stderr_A=float(err[1]),
        tau_stderr_s=float(err[2]),
        cov=tuple(tuple(float(v) for v in row) for row in cov),
        hold_s=hold,
        hold_over_tau=hold / tau,
        excess_at_end=float(excess_end),
        residual_rms_A=float(math.sqrt(cost / float(wb.sum()))),
        residual_structure=rho,
        n_samples=int(t.size),
        tau_at_bound=bool(at_bound),
        conventions={
            "model": "I = Iss + (I0 - Iss)*sum_odd 8/(pi^2 k^2) exp(-k^2 t/tau) "
            "[Evans, Vincent & Bruce, Polymer 28 (1987) 2324]",
            "fit": f"{_N_BINS} log-spaced time bins weighted by sample count; variable projection over log tau",
            "stderr": "from the fit covariance, residual variance scaled (assumes white noise)",
            "steady": f"hold >= {STEADY_TAUS:g} tau (excess current < 0.6 % of I0 - Iss)",
        },
    )
