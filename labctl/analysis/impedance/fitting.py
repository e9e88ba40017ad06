"""One circuit fitted from its seeds (trust-region least squares), put in canonical
arc order, with standard errors from the Jacobian at the optimum."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from labctl.analysis.impedance.circuits import CircuitSpec
from labctl.analysis.impedance.constants import GEOMETRIC_CAPACITANCE_MAX_F
from labctl.analysis.impedance.elements import arc_apex_frequency, effective_capacitance
from labctl.analysis.impedance.parameterisation import _bounds, _Data, _dp_dtheta, _from_theta, _model_and_jacobian
from labctl.analysis.impedance.seeding import _weighted_rows


@dataclass
class _Result:
    spec: CircuitSpec
    theta: np.ndarray
    chi2: float
    jac: np.ndarray  # Jacobian of the real weighted residual vector, (2N, p)
    bic: float


def _fit_one(spec: CircuitSpec, data: _Data, seeds: list[np.ndarray]) -> _Result | None:
    """Refine seeds with TRF: a short polish of each, then full convergence of the best (of
    the best two for the two-arc Li|Li circuit)."""
    lo, hi = _bounds(spec, data)
    w2 = np.concatenate([data.w, data.w])[:, None]
    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = theta.tobytes()  # least_squares asks for fun and jac at the same point
        if key not in cache:
            cache.clear()
            zm, j = _model_and_jacobian(spec, theta, data)
            cache[key] = (_weighted_rows(zm - data.z, data.w), np.concatenate([j.real, j.imag]) * w2)
        return cache[key]

    def fun(theta: np.ndarray) -> np.ndarray:
        return evaluate(theta)[0]

    def jac(theta: np.ndarray) -> np.ndarray:
        return evaluate(theta)[1]

    def run(x0: np.ndarray, max_nfev: int) -> Any:
        try:
            return least_squares(
                fun,
                np.clip(x0, lo + 1e-9, hi - 1e-9),
                jac=jac,
                bounds=(lo, hi),
                method="trf",
                x_scale="jac",
                ftol=1e-9,
                xtol=1e-9,
                gtol=1e-9,
                max_nfev=max_nfev,
            )
        except (ValueError, np.linalg.LinAlgError):
            return None

    polished = [s for s in (run(x0, 12) for x0 in seeds) if s is not None and np.isfinite(s.cost)]
    if not polished:
        return None
    ranked = sorted(polished, key=lambda s: s.cost)
    starts = ranked[:1]
    if spec.diffusion and len(spec.arc_labels) == 2:
        # two-arc Li|Li circuits: also converge the best polished seed that is elsewhere: a
        # seed that starts far off (an absurd L from the grid) can trail after 12 evaluations
        # yet lead to the global minimum, while the leader settles in a local one where the
        # Warburg, gone semi-infinite, and the interfacial arc share the low frequencies
        # (elsewhere in the arcs: seeds differing only in a semi-infinite Warburg's τD are
        # one basin)
        arcs = [i for i, k in enumerate(spec.param_names) if k not in ("RD", "tauD")]
        starts += [s for s in ranked[1:] if np.max(np.abs(s.x[arcs] - ranked[0].x[arcs])) > 0.5][:1]
    sol = None
    for start in starts:
        final = run(start.x, 60)
        cand = final if final is not None and final.cost <= start.cost else start
        if sol is None or cand.cost < sol.cost:
            sol = cand
    chi2 = float(2.0 * sol.cost)
    m = 2 * data.n
    bic = m * math.log(max(chi2, 1e-300) / m) + spec.n_params * math.log(m)
    return _canonical(_Result(spec, sol.x, chi2, sol.jac, bic), data)


def _canonical(res: _Result, data: _Data) -> _Result:
    """Order two arcs by falling apex frequency: arc 1 = bulk, arc 2 = grain boundary.

    With an interfacial arc (Li electrodes) the bulk arc is the one with the smaller
    effective capacitance instead: geometric pF–nF against interfacial µF, which stays
    right when a resistive electrolyte's bulk arc peaks below a small interface arc."""
    p = _from_theta(res.spec, res.theta, data)
    if res.spec.interface and res.spec.n_arcs == 0 and _ceff(p, "int") < GEOMETRIC_CAPACITANCE_MAX_F:
        # the only arc of a Li|Li fit is the bulk arc (the interface is too small to see):
        # same parameter vector, named R1/Q1/n1
        return _Result(replace(res.spec, n_arcs=1, interface=False), res.theta, res.chi2, res.jac, res.bic)
    if res.spec.interface and res.spec.n_arcs == 1:
        first, second = "1", "int"
        ordered = _ceff(p, "1") <= _ceff(p, "int")
    elif res.spec.n_arcs == 2:
        first, second = "1", "2"
        ordered = _apex(p, 2) <= _apex(p, 1)
    else:
        return res
    if ordered:
        return res
    names = res.spec.param_names
    perm = list(range(len(names)))
    for k in ("R", "Q", "n"):
        a, b = names.index(f"{k}{first}"), names.index(f"{k}{second}")
        perm[a], perm[b] = b, a
    return _Result(res.spec, res.theta[perm], res.chi2, res.jac[:, perm], res.bic)


def _apex(p: dict[str, float], i: int | str) -> float:
    return arc_apex_frequency(p[f"R{i}"], p[f"Q{i}"], p[f"n{i}"])


def _ceff(p: dict[str, float], i: int | str) -> float:
    return effective_capacitance(p[f"R{i}"], p[f"Q{i}"], p[f"n{i}"])


def _covariance(res: _Result, n_obs: int) -> np.ndarray:
    """s²·(JᵀJ)⁺ via the SVD of the column-normalised J (not of JᵀJ, which squares the
    condition number): directions the data do not determine (an arc above the band) are
    dropped without corrupting well-determined combinations such as R0 + R1."""
    s2 = res.chi2 / max(n_obs - res.spec.n_params, 1)
    norms = np.linalg.norm(res.jac, axis=0)
    norms[norms == 0] = 1.0
    pj = np.linalg.pinv(res.jac / norms, rcond=1e-10)
    return s2 * (pj @ pj.T) / np.outer(norms, norms)


def _stderr(res: _Result, data: _Data) -> tuple[dict[str, float], float]:
    """Standard errors of the SI parameters and of R_total = R0 + Σ R_i (all arcs)."""
    cov = _si_covariance(res, data)
    se = {k: math.sqrt(cov[i, i]) if cov[i, i] >= 0 else math.nan for i, k in enumerate(res.spec.param_names)}
    r_names = ["R0"] + [f"R{a}" for a in res.spec.arc_labels]
    return se, _sum_stderr(res, data, r_names, cov)


def _si_covariance(res: _Result, data: _Data) -> np.ndarray:
    """Covariance of the SI parameters, (dp/dθ)·cov(θ)·(dp/dθ)ᵀ."""
    jac = _dp_dtheta(res.spec, res.theta, data)
    return jac @ _covariance(res, 2 * data.n) @ jac.T


def _sum_stderr(res: _Result, data: _Data, names: list[str], cov: np.ndarray | None = None) -> float:
    """Standard error of the sum of the SI parameters ``names`` (correlations included);
    ``cov``: their SI covariance if already computed."""
    if cov is None:
        cov = _si_covariance(res, data)
    idx = [res.spec.param_names.index(k) for k in names]
    var = float(np.sum(cov[np.ix_(idx, idx)]))
    return math.sqrt(var) if var >= 0 else math.nan
