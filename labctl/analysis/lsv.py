"""Oxidation onset (electrochemical stability limit) from a linear sweep voltammogram.

"The" onset is a convention, not a material constant: on a Tafel-type current every method
lands somewhere else, so all three are computed and returned, and the chosen one is copied
to ``onset_V``.

- ``"threshold"``: first potential where the current density exceeds ``j_threshold``
  (default 0.05 mA/cm², within the 0.01–0.1 mA/cm² range used in the SE literature) and
  stays above it for ``consecutive`` samples, linearly interpolated between the two samples
  that bracket the crossing. Raw current density, no background subtraction.
- ``"tangent"``: intersection of the baseline tangent and the tangent at the steepest rise.
  Default on a **log10 |j|** scale, where a Tafel current is a straight line and the
  intersection marks where the faradaic current emerges from the background (so it sits
  below the threshold onset by roughly Tafel slope × log10(j_threshold / j_background)).
  Because the background is curved on a log scale (leakage grows with E), the baseline
  tangent is fitted locally, over ``tangent_baseline_span_V`` before the knee (the last point
  before the steepest rise whose slope is under 10 % of the steepest slope), unless
  ``baseline_window_V`` is given. On the ``"linear"`` scale the baseline is the baseline
  window and the steepest rise is usually at the end of the sweep, so that variant depends
  on how far the sweep went.
- ``"dIdV"``: first potential where the Savitzky–Golay-smoothed dj/dE exceeds
  ``dIdV_factor`` × the baseline derivative level (|median| + robust std of dj/dE over the
  baseline window), sustained for ``consecutive`` samples.

The baseline window is the first ``baseline_fraction`` of the swept potential range unless
``baseline_window_V`` is given. Samples are assumed evenly spaced in time (constant scan rate);
derivatives are taken along the sample index and divided by dE/dn, so noisy or slightly
non-monotonic measured potentials are fine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.signal import savgol_filter

from labctl.jsonable import to_jsonable

OnsetMethod = Literal["threshold", "tangent", "dIdV"]
_METHODS = ("threshold", "tangent", "dIdV")


@dataclass(frozen=True)
class LSVOnsetResult:
    """Onset potentials (V) by all three methods; ``onset_V`` is the one named by ``method``.

    A method that finds no onset inside the sweep reports NaN (None in ``as_dict``).
    ``details`` holds each method's intermediate numbers (baseline level, tangent slopes,
    derivative threshold) so a plot can show how the onset was found.
    """

    onset_V: float
    method: str
    threshold_V: float
    tangent_V: float
    dIdV_V: float
    j_threshold_mA_cm2: float
    baseline_j_mA_cm2: float
    details: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def lsv_onset(
    E_V: np.ndarray,
    I_A: np.ndarray,
    area_cm2: float,
    scan_rate_V_s: float,
    *,
    method: OnsetMethod = "threshold",
    j_threshold_mA_cm2: float = 0.05,
    consecutive: int = 5,
    tangent_scale: Literal["log", "linear"] = "log",
    baseline_fraction: float = 0.2,
    baseline_window_V: tuple[float, float] | None = None,
    tangent_baseline_span_V: float = 0.2,
    savgol_window_V: float = 0.03,
    savgol_polyorder: int = 2,
    dIdV_factor: float = 10.0,
) -> LSVOnsetResult:
    """Onset of oxidation from an anodic LSV: E (V), I (A), electrode area (cm²), scan rate (V/s)."""
    _check_options(
        method, tangent_scale, area_cm2, scan_rate_V_s, j_threshold_mA_cm2, consecutive, baseline_fraction, dIdV_factor
    )
    E, cur = _check_sweep(E_V, I_A)
    j = cur * 1e3 / area_cm2  # mA/cm²
    dE_per_sample = (E[-1] - E[0]) / (E.size - 1)
    win = _savgol_window(E.size, dE_per_sample, savgol_window_V, savgol_polyorder)

    bl = _baseline_mask(E, baseline_fraction, baseline_window_V)
    j_smooth = savgol_filter(j, win, savgol_polyorder)
    dE_dn = savgol_filter(E, win, savgol_polyorder, deriv=1)
    dE_dn = np.where(np.abs(dE_dn) > 1e-12, dE_dn, dE_per_sample)
    baseline_j = float(np.median(j[bl]))
    noise = float(1.4826 * np.median(np.abs(np.diff(j[bl]))) / math.sqrt(2))  # per-sample noise (robust)

    threshold_V, th_details = _threshold_onset(E, j, j_threshold_mA_cm2, consecutive)
    local_span = None if baseline_window_V is not None else tangent_baseline_span_V
    tangent_V, tan_details = _tangent_onset(
        E, j_smooth, dE_dn, bl, win, savgol_polyorder, tangent_scale, noise, consecutive, local_span
    )
    didv_V, d_details = _didv_onset(E, j, dE_dn, bl, win, savgol_polyorder, dIdV_factor, consecutive)
    onsets = {"threshold": threshold_V, "tangent": tangent_V, "dIdV": didv_V}

    conventions = {
        "method": method,
        "current_density": "I / area, mA/cm^2, raw (no background subtraction)",
        "threshold": f"first sustained (>= {consecutive} samples) crossing of {j_threshold_mA_cm2} mA/cm^2, "
        "linearly interpolated",
        "tangent": f"baseline tangent x steepest-rise tangent on {tangent_scale} scale"
        + (
            f" (log10|j|); baseline fitted over {tangent_baseline_span_V} V before the knee"
            if tangent_scale == "log" and baseline_window_V is None
            else "; baseline fitted over the baseline window"
        ),
        "dIdV": f"Savitzky-Golay dj/dE > {dIdV_factor} x baseline derivative level (|median| + robust std)",
        "savgol": {
            "window_samples": int(win),
            "window_V": float(win * dE_per_sample),
            "polyorder": savgol_polyorder,
        },
        "baseline_window_V": [float(E[bl].min()), float(E[bl].max())],
        "scan_rate_V_s": float(scan_rate_V_s),
        "area_cm2": float(area_cm2),
    }
    return LSVOnsetResult(
        onset_V=float(onsets[method]),
        method=method,
        threshold_V=float(threshold_V),
        tangent_V=float(tangent_V),
        dIdV_V=float(didv_V),
        j_threshold_mA_cm2=float(j_threshold_mA_cm2),
        baseline_j_mA_cm2=baseline_j,
        details={
            "baseline_noise_mA_cm2": noise,
            "threshold": th_details,
            "tangent": tan_details,
            "dIdV": d_details,
        },
        conventions=conventions,
    )


# --------------------------------------------------------------------------- internals


def _check_options(
    method: str,
    tangent_scale: str,
    area_cm2: float,
    scan_rate_V_s: float,
    j_threshold_mA_cm2: float,
    consecutive: int,
    baseline_fraction: float,
    dIdV_factor: float,
) -> None:
    """Refuse a bad option with its name and what is allowed."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if tangent_scale not in ("log", "linear"):
        raise ValueError(f"tangent_scale must be 'log' or 'linear', got {tangent_scale!r}")
    if not (area_cm2 > 0 and math.isfinite(area_cm2)):
        raise ValueError(f"area_cm2 must be a positive finite number, got {area_cm2!r}")
    if not (scan_rate_V_s > 0 and math.isfinite(scan_rate_V_s)):
        raise ValueError(f"scan_rate_V_s must be a positive finite number (anodic sweep), got {scan_rate_V_s!r}")
    if not (j_threshold_mA_cm2 > 0 and math.isfinite(j_threshold_mA_cm2)):
        raise ValueError(f"j_threshold_mA_cm2 must be positive, got {j_threshold_mA_cm2!r}")
    if consecutive < 1:
        raise ValueError(f"consecutive must be >= 1, got {consecutive!r}")
    if not 0 < baseline_fraction < 1:
        raise ValueError(f"baseline_fraction must be in (0, 1), got {baseline_fraction!r}")
    if dIdV_factor <= 0:
        raise ValueError(f"dIdV_factor must be positive, got {dIdV_factor!r}")


def _check_sweep(E_V: np.ndarray, I_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E and I as float arrays of one anodic sweep (at least 20 finite samples, E rising)."""
    E = np.asarray(E_V, dtype=float)
    cur = np.asarray(I_A, dtype=float)
    if E.ndim != 1 or cur.ndim != 1 or E.size != cur.size:
        raise ValueError(f"E_V and I_A must be 1-D arrays of equal length, got shapes {E.shape} and {cur.shape}")
    if E.size < 20:
        raise ValueError(f"E_V and I_A need at least 20 samples, got {E.size}")
    if not (np.all(np.isfinite(E)) and np.all(np.isfinite(cur))):
        raise ValueError("E_V or I_A contains NaN or infinite values")
    if E[-1] <= E[0]:
        raise ValueError(f"E_V must sweep upwards (anodic LSV), got {E[0]:.4g} V -> {E[-1]:.4g} V")
    return E, cur


def _savgol_window(n_samples: int, dE_per_sample: float, window_V: float, polyorder: int) -> int:
    """The Savitzky–Golay window in samples: odd, at most the sweep, longer than the order."""
    win = _odd(max(round(window_V / dE_per_sample), polyorder + 2))
    if win > n_samples:
        win = n_samples if n_samples % 2 else n_samples - 1
    if win <= polyorder:
        raise ValueError(f"savgol_window_V ({window_V} V) is too short for savgol_polyorder {polyorder}")
    return win


def _baseline_mask(E: np.ndarray, fraction: float, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        lo = float(E[0])
        hi = lo + fraction * (float(E.max()) - lo)
    else:
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:
            raise ValueError(f"baseline_window_V must be (low, high) with high > low, got {window!r}")
    # Running maximum: the window ends the first time E passes ``hi``, so a noisy E that
    # dips back into the window later in the sweep does not drag onset data into the baseline.
    e_run = np.maximum.accumulate(E)
    mask = (lo <= E) & (e_run <= hi)
    if np.count_nonzero(mask) < 5:
        raise ValueError(f"baseline window {lo:.4g}..{hi:.4g} V holds fewer than 5 samples")
    return mask


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def _first_sustained(cond: np.ndarray, n: int, start: int = 0) -> int | None:
    """Index of the first run of at least ``n`` consecutive True values at or after ``start``."""
    if n == 1:
        idx = np.flatnonzero(cond[start:])
        return int(idx[0]) + start if idx.size else None
    c = np.concatenate(([0], np.cumsum(cond[start:].astype(int))))
    runs = c[n:] - c[:-n]
    idx = np.flatnonzero(runs == n)
    return int(idx[0]) + start if idx.size else None


def _interp_crossing(E: np.ndarray, y: np.ndarray, level: float, i: int) -> float:
    if i == 0:
        return float(E[0])
    y0, y1 = y[i - 1], y[i]
    if y1 == y0:
        return float(E[i])
    frac = min(max((level - y0) / (y1 - y0), 0.0), 1.0)
    return float(E[i - 1] + frac * (E[i] - E[i - 1]))


def _threshold_onset(E: np.ndarray, j: np.ndarray, j_th: float, n: int) -> tuple[float, dict[str, Any]]:
    i = _first_sustained(j > j_th, n)
    if i is None:
        return float("nan"), {"found": False}
    return _interp_crossing(E, j, j_th, i), {"found": True, "index": i, "above_at_start": i == 0}


def _tangent_onset(
    E: np.ndarray,
    j_smooth: np.ndarray,
    dE_dn: np.ndarray,
    bl: np.ndarray,
    win: int,
    order: int,
    scale: str,
    noise: float,
    n: int,
    local_span_V: float | None,
) -> tuple[float, dict[str, Any]]:
    """Tangent intersection; ``local_span_V`` (log scale) = width of the pre-rise baseline window."""
    after_bl = int(np.flatnonzero(bl)[-1]) + 1
    if scale == "log":
        noise_s = noise / math.sqrt(win)  # noise left after smoothing
        y = np.log10(np.maximum(np.abs(j_smooth), max(noise_s, 1e-15)))
        level = float(np.median(np.abs(j_smooth[bl])))
        # Search the steepest rise only where the current has clearly left the background,
        # otherwise the log of a noisy, near-zero baseline produces spurious steep slopes.
        start_cond = np.abs(j_smooth) > 3.0 * (level + 3.0 * noise_s)
    else:
        y = j_smooth
        start_cond = np.zeros_like(bl)
        start_cond[after_bl:] = True
    slope = savgol_filter(y, win, order, deriv=1) / dE_dn
    start = _first_sustained(start_cond, n, after_bl)
    if start is None:
        return float("nan"), {"found": False, "scale": scale}
    k = start + int(np.argmax(slope[start:]))
    s_k = float(slope[k])

    base = bl
    if scale == "log" and local_span_V is not None:
        # On a log scale the background is curved (leakage grows with E), so the baseline
        # tangent is taken locally: over ``local_span_V`` before the knee, the last point
        # before the steepest rise where the slope is still < 10 % of the steepest slope.
        quiet = np.flatnonzero(slope[:k] < 0.1 * s_k)
        if quiet.size:
            m = int(quiet[-1])
            local = (E[m] - local_span_V <= E) & (np.arange(E.size) <= m)
            if np.count_nonzero(local) >= 5:
                base = local
    a_b = np.polyfit(E[base], y[base], 1)  # baseline tangent: y = a_b[0]*E + a_b[1]
    if s_k <= a_b[0]:
        return float("nan"), {"found": False, "scale": scale}
    # Intersection of y = y_k + s_k (E - E_k) with the baseline y = m E + c.
    e_on = (a_b[1] - y[k] + s_k * E[k]) / (s_k - a_b[0])
    return float(e_on), {
        "found": True,
        "scale": scale,
        "baseline_window_V": [float(E[base].min()), float(E[base].max())],
        "baseline_slope": float(a_b[0]),
        "baseline_intercept": float(a_b[1]),
        "steepest_E_V": float(E[k]),
        "steepest_slope": s_k,
        "slope_unit": "decades/V" if scale == "log" else "mA/cm^2/V",
    }


def _didv_onset(
    E: np.ndarray,
    j: np.ndarray,
    dE_dn: np.ndarray,
    bl: np.ndarray,
    win: int,
    order: int,
    factor: float,
    n: int,
) -> tuple[float, dict[str, Any]]:
    d = savgol_filter(j, win, order, deriv=1) / dE_dn  # mA/cm^2 per V
    d_bl = d[bl]
    med = float(np.median(d_bl))
    level = abs(med) + 1.4826 * float(np.median(np.abs(d_bl - med)))
    level = max(level, 1e-12)
    limit = factor * level
    after = int(np.flatnonzero(bl)[-1]) + 1
    i = _first_sustained(d > limit, n, after)
    if i is None:
        return float("nan"), {"found": False, "baseline_level": level, "limit": limit}
    return _interp_crossing(E, d, limit, i), {
        "found": True,
        "baseline_level_mA_cm2_V": level,
        "limit_mA_cm2_V": limit,
        "index": i,
    }
