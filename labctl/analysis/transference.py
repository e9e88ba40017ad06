"""Cation transference number by the Bruce–Vincent–Evans DC-polarisation method.

A symmetric Li|SE|Li cell is held at a small ΔV (≈10 mV) until the current decays from its
initial value I0 to a steady state Iss; impedance before and after gives the interfacial
resistances R0 and Rss. Evans, Vincent & Bruce, Polymer 28 (1987) 2324, eq. (6):

    t+ = Iss·(ΔV − I0·R0) / (I0·(ΔV − Iss·Rss))

The result depends strongly on how I0 is taken (the first sample is already partly decayed;
the ohmic estimate relies on the EIS), so the I0 convention is part of every result:

- ``"first_sample"``: the current at the first sample after the step.
- ``"ohmic"``: ΔV / R_total with R_total = R_bulk + R0 from the EIS before polarisation
  (the current the cell draws before any concentration gradient exists).
- ``"extrapolated"``: the early decay extrapolated to t = 0 by a straight-line fit of I
  against √t, the short-time limit of diffusion in a slab: the polarisation series
  Σ_odd 8/(π²k²)·exp(−k²t/τ) equals 1 − (4/π^1.5)·√(t/τ) to better than 1e-4 for t < 0.3τ.
  (A single exponential is deliberately not offered: its first mode carries only 8/π² of
  the decay, so extrapolating it to t = 0 underestimates I0 by several per cent.)

Iss is the mean current over the end of the hold (by default the longer of the last 5 % and
the last 60 s), with a steadiness check: the relative change of a straight-line fit across
that window. All currents may be negative (negative ΔV); magnitudes are used consistently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labctl.jsonable import to_jsonable

I0Method = Literal["first_sample", "ohmic", "extrapolated"]

_FORMULA = "t+ = Iss*(dV - I0*R0) / (I0*(dV - Iss*Rss))  [Evans, Vincent & Bruce, Polymer 28 (1987) 2324]"


@dataclass(frozen=True)
class InitialCurrent:
    """I0 and how it was obtained."""

    I0_A: float
    convention: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class SteadyCurrent:
    """Iss over the end window and whether the current was still moving there.

    ``rel_change`` is (fitted slope × window length) / mean: the fractional drift of the
    current across the averaging window. ``is_steady`` is ``abs(rel_change) <= max_rel_change``.
    """

    Iss_A: float
    window_start_s: float
    window_end_s: float
    n_samples: int
    slope_A_per_s: float
    rel_change: float
    is_steady: bool
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class TransferenceResult:
    """Bruce–Vincent–Evans t+ with every input it was computed from.

    ``current_ratio`` is Iss/I0 (the uncorrected value some papers report as t+);
    ``plausible`` is False when t+ falls outside (0, 1], which usually means a drifting
    interface or a wrong I0 convention rather than exotic physics.
    """

    t_plus: float
    current_ratio: float
    delta_V: float
    I0_A: float
    Iss_A: float
    R0_ohm: float
    Rss_ohm: float
    i0_convention: str
    plausible: bool
    iss_is_steady: bool | None
    iss_rel_change: float | None
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def transference_number(
    delta_V: float,
    I0: float,
    Iss: float,
    R0: float,
    Rss: float,
    *,
    i0_convention: str = "given",
    steady: SteadyCurrent | None = None,
    initial: InitialCurrent | None = None,
) -> TransferenceResult:
    """t+ from ΔV (V), I0 and Iss (A), R0 and Rss (Ω) by Evans–Vincent–Bruce (1987), eq. 6.

    ΔV, I0 and Iss must share a sign (the current follows the applied step); magnitudes
    are used. Raises ValueError when ΔV − I·R ≤ 0 for either state (the interface would
    take more than the whole applied voltage, so the inputs are inconsistent).
    """
    for name, v in (("delta_V", delta_V), ("I0", I0), ("Iss", Iss), ("R0", R0), ("Rss", Rss)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v!r}")
    if delta_V == 0 or I0 == 0 or Iss == 0:
        raise ValueError(f"delta_V, I0 and Iss must be non-zero, got {delta_V!r}, {I0!r}, {Iss!r}")
    if not (np.sign(delta_V) == np.sign(I0) == np.sign(Iss)):
        raise ValueError(f"delta_V, I0 and Iss must have the same sign, got {delta_V!r} V, {I0!r} A, {Iss!r} A")
    if R0 < 0 or Rss < 0:
        raise ValueError(f"R0 and Rss must be >= 0 ohm, got R0={R0!r}, Rss={Rss!r}")
    dv, i0, iss = abs(delta_V), abs(I0), abs(Iss)
    num_drop, den_drop = dv - i0 * R0, dv - iss * Rss
    if num_drop <= 0:
        raise ValueError(f"I0*R0 ({i0 * R0:.4g} V) must be smaller than delta_V ({dv:.4g} V)")
    if den_drop <= 0:
        raise ValueError(f"Iss*Rss ({iss * Rss:.4g} V) must be smaller than delta_V ({dv:.4g} V)")
    t_plus = iss * num_drop / (i0 * den_drop)
    conventions: dict[str, Any] = {
        "formula": _FORMULA,
        "i0_convention": i0_convention,
        "R0_Rss": "interfacial (charge-transfer/SEI) resistances from EIS before/after the hold",
        "sign": "magnitudes of delta_V, I0, Iss are used",
    }
    if initial is not None:
        conventions["i0_details"] = dict(initial.details)
    if steady is not None:
        conventions["iss"] = dict(steady.conventions)
    return TransferenceResult(
        t_plus=float(t_plus),
        current_ratio=float(iss / i0),
        delta_V=float(delta_V),
        I0_A=float(I0),
        Iss_A=float(Iss),
        R0_ohm=float(R0),
        Rss_ohm=float(Rss),
        i0_convention=i0_convention,
        plausible=bool(0.0 < t_plus <= 1.0),
        iss_is_steady=None if steady is None else steady.is_steady,
        iss_rel_change=None if steady is None else steady.rel_change,
        conventions=conventions,
    )


def initial_current(
    t: np.ndarray,
    I_A: np.ndarray,
    convention: I0Method = "first_sample",
    *,
    t_step: float | None = None,
    delta_V: float | None = None,
    R_total: float | None = None,
    fit_window_s: tuple[float, float] | None = None,
) -> InitialCurrent:
    """I0 from a chronoamperogram by the named convention (see the module docstring).

    ``t_step`` is when the voltage step was applied (default: the first time stamp).
    ``"ohmic"`` needs ``delta_V`` and ``R_total`` (Ω, bulk + interfacial from the EIS before).
    ``"extrapolated"`` fits I = I0 − c·√(t − t_step) to the samples with t − t_step in
    ``fit_window_s``. Default window: from the first sample after the step to half the time
    the excess current (I − Iss, Iss from the last 5 %) takes to halve, i.e. about τ/4, well
    inside the range where the √t law holds (it does to 1e-4 up to 0.3τ).
    """
    t, cur = _trace(t, I_A)
    t0 = float(t[0]) if t_step is None else float(t_step)
    after = t >= t0
    if not np.any(after):
        raise ValueError(f"t_step ({t0!r} s) is after the last sample ({t[-1]!r} s)")
    if convention == "first_sample":
        k = int(np.argmax(after))
        return InitialCurrent(
            float(cur[k]),
            "first_sample",
            {"t_first_sample_s": float(t[k]), "t_after_step_s": float(t[k] - t0)},
        )
    if convention == "ohmic":
        if delta_V is None or R_total is None:
            raise ValueError("convention 'ohmic' needs delta_V and R_total (from the EIS before the hold)")
        if not (R_total > 0 and math.isfinite(R_total)):
            raise ValueError(f"R_total must be a positive finite resistance, got {R_total!r}")
        return InitialCurrent(
            float(delta_V / R_total), "ohmic", {"delta_V": float(delta_V), "R_total_ohm": float(R_total)}
        )
    if convention != "extrapolated":
        raise ValueError(f"convention must be 'first_sample', 'ohmic' or 'extrapolated', got {convention!r}")

    return _extrapolated_i0(t - t0, cur, after, fit_window_s)


def _extrapolated_i0(
    tau: np.ndarray, cur: np.ndarray, after: np.ndarray, fit_window_s: tuple[float, float] | None
) -> InitialCurrent:
    """I0 from I = I0 − c·√τ fitted over the window (τ: time since the step)."""
    if fit_window_s is None:
        lo, hi = float(tau[after][0]), _half_decay_time(tau[after], cur[after]) / 2.0
    else:
        lo, hi = float(fit_window_s[0]), float(fit_window_s[1])
        if not hi > lo >= 0:
            raise ValueError(f"fit_window_s must satisfy 0 <= start < end, got {fit_window_s!r}")
    sel = (tau >= lo) & (tau <= hi)
    if np.count_nonzero(sel) < 3:
        raise ValueError(
            f"fit_window_s ({lo:.4g}..{hi:.4g} s after the step) holds {np.count_nonzero(sel)} samples; "
            "need at least 3 to extrapolate"
        )
    x, y = tau[sel], cur[sel]
    if np.count_nonzero(sel) > 3:
        (slope, intercept), cov = np.polyfit(np.sqrt(x), y, 1, cov=True)
        i0_stderr = float(np.sqrt(cov[1, 1]))
    else:  # too few points for a residual variance
        slope, intercept = np.polyfit(np.sqrt(x), y, 1)
        i0_stderr = float("inf")
    i0 = float(intercept)
    return InitialCurrent(
        i0,
        "extrapolated",
        {
            "model": "I = I0 - c*sqrt(t - t_step)",
            "fit_window_s": [lo, hi],
            "fit_window": "given" if fit_window_s is not None else "first sample .. half the half-decay time",
            "n_samples": int(np.count_nonzero(sel)),
            "slope_A_per_sqrt_s": float(slope),
            "I0_stderr_A": i0_stderr,
        },
    )


def steady_state_current(
    t: np.ndarray,
    I_A: np.ndarray,
    *,
    window_fraction: float = 0.05,
    window_min_s: float = 60.0,
    max_rel_change: float = 0.01,
) -> SteadyCurrent:
    """Iss = mean current over the end of the hold, plus a steadiness check.

    The window is the longer of the last ``window_fraction`` of the hold and the last
    ``window_min_s`` seconds (never longer than the hold). Steady means the straight-line
    fit over the window changes by at most ``max_rel_change`` (fraction) across it.
    """
    t, cur = _trace(t, I_A)
    if not 0 < window_fraction <= 1:
        raise ValueError(f"window_fraction must be in (0, 1], got {window_fraction!r}")
    if window_min_s < 0:
        raise ValueError(f"window_min_s must be >= 0, got {window_min_s!r}")
    hold = float(t[-1] - t[0])
    width = min(max(window_fraction * hold, window_min_s), hold)
    sel = t >= t[-1] - width
    if np.count_nonzero(sel) < 3:
        raise ValueError(f"the Iss window (last {width:.4g} s) holds fewer than 3 samples")
    x, y = t[sel], cur[sel]
    mean = float(y.mean())
    slope = float(np.polyfit(x - x[0], y, 1)[0])
    span = float(x[-1] - x[0])
    rel = slope * span / abs(mean) if mean != 0 else float("inf")
    return SteadyCurrent(
        Iss_A=mean,
        window_start_s=float(x[0]),
        window_end_s=float(x[-1]),
        n_samples=int(x.size),
        slope_A_per_s=slope,
        rel_change=float(rel),
        is_steady=bool(abs(rel) <= max_rel_change),
        conventions={
            "Iss": "mean current over the end window",
            "window": f"longer of last {window_fraction:.3g} of the hold and last {window_min_s:.3g} s",
            "steadiness": f"|slope * window / mean| <= {max_rel_change:.3g}",
        },
    )


def analyze_polarization(
    t: np.ndarray,
    I_A: np.ndarray,
    delta_V: float,
    R0: float,
    Rss: float,
    *,
    i0_convention: I0Method = "first_sample",
    R_total: float | None = None,
    t_step: float | None = None,
    fit_window_s: tuple[float, float] | None = None,
    window_fraction: float = 0.05,
    window_min_s: float = 60.0,
    max_rel_change: float = 0.01,
) -> TransferenceResult:
    """Extract Iss and I0 (by ``i0_convention``) from the hold (t, I) and compute t+."""
    steady = steady_state_current(
        t, I_A, window_fraction=window_fraction, window_min_s=window_min_s, max_rel_change=max_rel_change
    )
    initial = initial_current(
        t,
        I_A,
        i0_convention,
        t_step=t_step,
        delta_V=delta_V,
        R_total=R_total,
        fit_window_s=fit_window_s,
    )
    return transference_number(
        delta_V,
        initial.I0_A,
        steady.Iss_A,
        R0,
        Rss,
        i0_convention=i0_convention,
        steady=steady,
        initial=initial,
    )


# --------------------------------------------------------------------------- internals


def _half_decay_time(tau: np.ndarray, cur: np.ndarray) -> float:
    """Time after the step at which |I| − |Iss| first falls to half its first-sample value."""
    mag = np.abs(cur)
    iss = float(np.median(mag[-max(3, mag.size // 20) :]))
    excess = mag - iss
    if excess[0] <= 0:
        raise ValueError("the current does not decay after the step; cannot extrapolate I0")
    below = np.flatnonzero(excess <= 0.5 * excess[0])
    if below.size == 0:
        raise ValueError("the current never decays to half its initial excess; cannot place the fit window")
    return float(tau[below[0]])


def _trace(t: Any, current: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float)
    cur = np.asarray(current, dtype=float)
    if t.ndim != 1 or cur.ndim != 1:
        raise ValueError(f"t and I_A must be one-dimensional, got shapes {t.shape} and {cur.shape}")
    if t.size != cur.size:
        raise ValueError(f"t and I_A must have the same length, got {t.size} and {cur.size}")
    if t.size < 3:
        raise ValueError(f"t and I_A need at least 3 samples, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(cur))):
        raise ValueError("t or I_A contains NaN or infinite values")
    if np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    return t, cur
