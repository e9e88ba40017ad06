"""t+ with its standard error, warnings and a validity verdict (Bruce–Vincent–Evans).

    t+ = Iss·(ΔV − I0·R0) / (I0·(ΔV − Iss·Rss))     (Evans, Vincent & Bruce, Polymer 28 (1987) 2324)

Each input comes with a standard error: R_bulk and R0 (correlated, one fit of the
spectrum before the hold), Rss (the spectrum after), I0 and Iss (the transient fit, or the
end-window mean). They are propagated to first order with the full input covariance
(numerical Jacobian, central differences): σ²(t+) = g·C·gᵀ.

Why a verdict and not just a number: the formula subtracts the interfacial voltage drop
from ΔV. When the interface takes almost all of ΔV (R_int ≫ R_bulk: a thick SEI, a poor
contact) ΔV − I0·R0 and ΔV − Iss·Rss are small differences of large numbers, and a 0.3 %
error in R0 moves t+ by tens of per cent. Such a result is reported with its (large)
standard error and marked invalid with the reason, instead of a confident number that is
really noise. With the "ohmic" I0 = ΔV/(R_bulk + R0) the formula reduces algebraically to
t+ = Iss·R_bulk/(ΔV − Iss·Rss): the ill-conditioning then sits in the denominator.

Pure numpy: no file or instrument access (DESIGN §1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.jsonable import to_jsonable

#: Largest standard error of a t+ called valid: 3σ then stays within ±0.03.
MAX_STDERR = 0.01
#: Below this fraction of ΔV left after the interfacial drop, the result is invalid outright.
MIN_DROP_FRACTION = 0.02
#: Below this fraction, a warning (the interface dominates; t+ is sensitive to R0/Rss).
WARN_DROP_FRACTION = 0.10

_NAMES = ("R_bulk0", "R0", "Rss", "I0", "Iss")


@dataclass(frozen=True)
class Measured:
    """A value and its standard error (inf or nan: not known)."""

    value: float
    stderr: float


@dataclass(frozen=True)
class TPlusAssessment:
    """t+ and how far to trust it.

    ``valid`` is False with ``reason`` when the standard error exceeds ``max_stderr``, is
    unknown, when the interfacial drop leaves less than ``MIN_DROP_FRACTION`` of ΔV, or t+
    is outside (0, 1] by more than 2σ. ``contributions`` is each input's share of σ²(t+).
    """

    t_plus: float
    t_plus_stderr: float
    valid: bool
    reason: str
    warnings: tuple[str, ...]
    drop_fraction_0: float
    drop_fraction_ss: float
    contributions: dict[str, float]
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def pair_covariance(se_a: float | None, se_b: float | None, se_sum: float | None) -> np.ndarray:
    """2×2 covariance of (a, b) from their standard errors and that of a + b (one fit).

    var(a + b) = var(a) + var(b) + 2cov(a, b); a missing error counts as 0 (a term the
    fit left out), a missing error of the sum as no correlation.
    """
    va = 0.0 if se_a is None else float(se_a) ** 2
    vb = 0.0 if se_b is None else float(se_b) ** 2
    c = 0.0 if se_sum is None else (float(se_sum) ** 2 - va - vb) / 2.0
    if math.isfinite(va) and math.isfinite(vb):
        lim = math.sqrt(va * vb)
        c = max(-lim, min(lim, c)) if math.isfinite(c) else 0.0
    return np.array([[va, c], [c, vb]])


def propagate(f: Callable[[np.ndarray], float], x: np.ndarray, cov: np.ndarray) -> tuple[float, np.ndarray]:
    """σ of f(x) to first order, and each input's share of the variance."""
    x = np.asarray(x, dtype=float)
    grad = np.zeros_like(x)
    for i in range(x.size):
        if cov[i, i] == 0:
            continue
        h = 1e-6 * max(abs(x[i]), 1e-300)
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    active = grad != 0
    if not np.all(np.isfinite(cov[np.ix_(active, active)])):
        return math.inf, np.full(x.size, math.nan)
    var = float(grad @ cov @ grad)
    share = grad * (cov @ grad) / var if var > 0 else np.zeros_like(x)
    return math.sqrt(max(var, 0.0)), share


def assess_t_plus(
    delta_V: float,
    *,
    R_bulk0: Measured,
    R0: Measured,
    R_bulk0_R0_cov: float,
    Rss: Measured,
    I0: Measured,
    Iss: Measured,
    I0_Iss_cov: float = 0.0,
    i0_ohmic: bool = False,
    max_stderr: float = MAX_STDERR,
) -> TPlusAssessment:
    """Bruce–Vincent–Evans t+ from magnitudes, with σ(t+) and the verdict.

    With ``i0_ohmic`` I0 is ΔV/(R_bulk0 + R0) (its own ``stderr`` is ignored: it comes from
    the resistances' covariance).
    """
    dv = abs(delta_V)
    x0 = np.array([R_bulk0.value, R0.value, Rss.value, abs(I0.value), abs(Iss.value)], dtype=float)
    cov = np.zeros((5, 5))
    cov[0, 0], cov[1, 1] = R_bulk0.stderr**2, R0.stderr**2
    cov[0, 1] = cov[1, 0] = R_bulk0_R0_cov
    cov[2, 2] = Rss.stderr**2
    cov[3, 3] = 0.0 if i0_ohmic else I0.stderr**2
    cov[4, 4] = Iss.stderr**2
    if not i0_ohmic:
        cov[3, 4] = cov[4, 3] = I0_Iss_cov
    cov = np.where(np.isnan(cov), np.inf, cov)

    def i0_of(x: np.ndarray) -> float:
        return dv / (x[0] + x[1]) if i0_ohmic else float(x[3])

    def t_of(x: np.ndarray) -> float:
        i0 = i0_of(x)
        return x[4] * (dv - i0 * x[1]) / (i0 * (dv - x[4] * x[2]))

    i0 = i0_of(x0)
    t_plus = t_of(x0)
    drop0, drop_ss = (dv - i0 * x0[1]) / dv, (dv - x0[4] * x0[2]) / dv
    stderr, share = propagate(t_of, x0, cov)
    warnings: list[str] = []
    reasons: list[str] = []
    for label, frac in (("dV - I0*R0", drop0), ("dV - Iss*Rss", drop_ss)):
        if frac < MIN_DROP_FRACTION:
            reasons.append(
                f"ill-conditioned: {label} is {100 * frac:.2g} % of dV (the interface takes almost all of "
                f"the applied voltage), so t+ is a small difference of large numbers"
            )
        elif frac < WARN_DROP_FRACTION:
            warnings.append(f"{label} is only {100 * frac:.2g} % of dV: t+ is sensitive to the interfacial resistance")
    if not math.isfinite(stderr):
        reasons.append("t+ uncertainty unknown: an input's standard error is not determined by the data")
    elif stderr > max_stderr:
        worst = _NAMES[int(np.nanargmax(share))] if np.any(np.isfinite(share)) else "?"
        reasons.append(
            f"uncertain: t+ = {t_plus:.3f} +/- {stderr:.3f} (more than the {max_stderr:g} allowed; "
            f"largest contribution: {worst})"
        )
    if math.isfinite(stderr) and not (-2 * stderr < t_plus <= 1 + 2 * stderr):
        reasons.append(f"implausible: t+ = {t_plus:.3f} is outside (0, 1] by more than 2 standard errors")
    return TPlusAssessment(
        t_plus=float(t_plus),
        t_plus_stderr=float(stderr),
        valid=not reasons,
        reason="; ".join(reasons),
        warnings=tuple(warnings),
        drop_fraction_0=float(drop0),
        drop_fraction_ss=float(drop_ss),
        contributions={n: float(s) for n, s in zip(_NAMES, share, strict=True)},
        conventions={
            "stderr": "first-order propagation of the input covariance (numerical Jacobian)",
            "inputs": "R_bulk0, R0 correlated (one fit); Rss from the spectrum after; I0, Iss from the hold",
            "valid": f"stderr <= {max_stderr:g}, dV - I*R >= {MIN_DROP_FRACTION:g}*dV for both states, "
            "t+ within 2 stderr of (0, 1]",
        },
    )


def as_measured(value: float, stderr: float | None) -> Measured:
    """A value whose missing standard error is unknown (inf), never silently 0."""
    return Measured(float(value), math.inf if stderr is None else float(stderr))


def summary(values: Mapping[str, Measured]) -> dict[str, dict[str, float]]:
    """Inputs as {name: {value, stderr}} for the run file."""
    return {k: {"value": v.value, "stderr": v.stderr} for k, v in values.items()}
