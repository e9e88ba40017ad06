"""Resistance and inductance of the leads and cell holder, from a spectrum of a short.

With the cell replaced by a short (or two stainless-steel discs pressed together), what is
left in series is Z = R + jωL: lead and contact resistance and the loop inductance of the
cables and holder. Every electrolyte measurement on that channel carries the same R in its
high-frequency intercept (and the same jωL bending its highest frequencies), so R is
subtracted from the intercept before σ = L/(R_b·A) (DESIGN §4).

Both parameters enter linearly, so the fit is a weighted linear least-squares problem with
a closed-form solution and covariance: minimise Σ w²[(Z' − R)² + (Z'' − ωL)²] with
w = 1/|Z| (modulus weighting: the error of an impedance analyser is a fraction of |Z|).
Standard errors: s²·(JᵀWJ)⁻¹ with s² the weighted residual variance (2n − 2 degrees of
freedom). A spectrum that is not a short shows itself by a capacitive (Z'' < 0) part or a
residual far above the noise; the result is then invalid with the reason.

Pure numpy: no file or instrument access (DESIGN §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.jsonable import to_jsonable

#: A short's R is leads and contacts: above this the "short" is a cell or an open clamp.
MAX_SHORT_OHM = 100.0
#: The model must explain the spectrum to this relative rms (noise of a good analyser ≲ 1 %).
MAX_REL_RESIDUAL = 0.05


@dataclass(frozen=True)
class LeadsResult:
    """R (Ω) and L (H) of the leads with standard errors, and whether the spectrum was a short."""

    r_ohm: float
    r_stderr_ohm: float
    l_h: float
    l_stderr_h: float
    rel_residual: float
    n_points: int
    f_min_hz: float
    f_max_hz: float
    valid: bool
    reason: str = ""
    warnings: tuple[str, ...] = ()
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def fit_leads(freq: np.ndarray, z: np.ndarray) -> LeadsResult:
    """Fit Z = R + jωL to a spectrum of a shorted holder (``freq`` Hz, complex ``z`` Ω)."""
    f = np.asarray(freq, dtype=float).ravel()
    zz = np.asarray(z, dtype=complex).ravel()
    ok = np.isfinite(f) & np.isfinite(zz) & (f > 0)
    f, zz = f[ok], zz[ok]
    if f.size < 3:
        raise ValueError(f"need at least 3 finite points to fit R + jwL, got {f.size}")
    w_ang = 2.0 * math.pi * f
    mod = np.abs(zz)
    if np.any(mod == 0):
        raise ValueError("|Z| = 0 at some frequency: the instrument reported no impedance")
    wt2 = 1.0 / mod**2
    # normal equations decouple: R from the real parts, L from the imaginary parts
    r = float(np.sum(wt2 * zz.real) / np.sum(wt2))
    l_h = float(np.sum(wt2 * w_ang * zz.imag) / np.sum(wt2 * w_ang**2))
    res_re, res_im = zz.real - r, zz.imag - w_ang * l_h
    rss = float(np.sum(wt2 * (res_re**2 + res_im**2)))
    dof = max(2 * f.size - 2, 1)
    s2 = rss / dof
    r_se = math.sqrt(s2 / float(np.sum(wt2)))
    l_se = math.sqrt(s2 / float(np.sum(wt2 * w_ang**2)))
    rel = math.sqrt(rss / f.size)  # rms of residual / |Z|

    reasons: list[str] = []
    warnings: list[str] = []
    capacitive = zz.imag < -MAX_REL_RESIDUAL * mod
    if np.count_nonzero(capacitive) > max(1, f.size // 10):
        reasons.append(
            f"not a short: Z'' < 0 (capacitive) at {np.count_nonzero(capacitive)} of {f.size} points; "
            "is there a cell or an open clamp in the holder?"
        )
    if r > MAX_SHORT_OHM:
        reasons.append(f"not a short: R = {r:.4g} ohm > {MAX_SHORT_OHM:g} ohm (leads and contacts are ohms at most)")
    if r < 0:
        reasons.append(f"R = {r:.4g} ohm is negative: the instrument's own calibration is off")
    if rel > MAX_REL_RESIDUAL:
        reasons.append(
            f"R + jwL explains the spectrum only to {100 * rel:.2g} % rms (allowed {100 * MAX_REL_RESIDUAL:g} %)"
        )
    if l_h < 0:
        warnings.append(f"L = {l_h:.3g} H is negative (open-lead compensation of the analyser?)")
    if r_se > 0.05 * abs(r):
        warnings.append(f"R is known to only {100 * r_se / abs(r):.2g} %")
    return LeadsResult(
        r_ohm=r,
        r_stderr_ohm=r_se,
        l_h=l_h,
        l_stderr_h=l_se,
        rel_residual=rel,
        n_points=int(f.size),
        f_min_hz=float(f.min()),
        f_max_hz=float(f.max()),
        valid=not reasons,
        reason="; ".join(reasons),
        warnings=tuple(warnings),
        conventions={
            "model": "Z = R + j*omega*L (leads, contacts, holder)",
            "fit": "weighted linear least squares, weights 1/|Z| (modulus weighting), closed form",
            "stderr": "from the fit covariance, residual variance scaled",
            "valid": f"no capacitive part, R <= {MAX_SHORT_OHM:g} ohm, rms residual <= {MAX_REL_RESIDUAL:g} of |Z|",
        },
    )
