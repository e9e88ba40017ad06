"""Cathode open-circuit voltage and capacity fade for Li|SE|cathode cells.

Simple, monotonic OCV(SOC) curves with the shape of the two common cathodes
(an NMC-like slope from ~3.4 to ~4.3 V; an LFP-like flat plateau near 3.42 V,
Padhi et al., J. Electrochem. Soc. 144 (1997) 1188), Nernst-like ends so the
usual voltage limits are always reached, and steep walls beyond full
(de)lithiation. SOC is the fraction of the capacity that is charged
(delithiated cathode); the cell voltage is OCV + overpotentials.
"""

from __future__ import annotations

import math

import numpy as np

_X_MIN = 1e-12
_WALL = 50.0  # V per unit SOC beyond the ends


def ocv(soc: np.ndarray | float, cathode: str) -> np.ndarray:
    """Open-circuit voltage (V vs Li) of the cathode at state of charge ``soc``."""
    x_raw = np.asarray(soc, dtype=float)
    x = np.clip(x_raw, _X_MIN, 1.0 - _X_MIN)
    nernst = np.log(x / (1.0 - x))
    wall = _WALL * (np.minimum(x_raw, 0.0) + np.maximum(x_raw - 1.0, 0.0))
    if cathode == "lfp":
        edges = 0.15 * (np.exp(-(1.0 - x) / 0.02) - np.exp(-x / 0.02))
        return 3.42 + 0.05 * (x - 0.5) + 0.03 * nernst + edges + wall
    return 3.55 + 0.6 * x + 0.05 * nernst + wall


def ocv_scalar(soc: float, cathode: str) -> float:
    """``ocv`` for one float, in plain Python (the potentiostatic solver calls it per trial)."""
    x = min(max(soc, _X_MIN), 1.0 - _X_MIN)
    nernst = math.log(x / (1.0 - x))
    wall = _WALL * (min(soc, 0.0) + max(soc - 1.0, 0.0))
    if cathode == "lfp":
        edges = 0.15 * (math.exp(-(1.0 - x) / 0.02) - math.exp(-x / 0.02))
        return 3.42 + 0.05 * (x - 0.5) + 0.03 * nernst + edges + wall
    return 3.55 + 0.6 * x + 0.05 * nernst + wall


def docv_scalar(soc: float, cathode: str) -> float:
    """d(OCV)/d(SOC) of ``ocv_scalar`` (V per unit SOC), for Newton solves."""
    wall = _WALL if (soc < 0.0 or soc > 1.0) else 0.0
    if not _X_MIN < soc < 1.0 - _X_MIN:
        return wall
    nernst = 1.0 / (soc * (1.0 - soc))
    if cathode == "lfp":
        edges = 0.15 / 0.02 * (math.exp(-(1.0 - soc) / 0.02) + math.exp(-soc / 0.02))
        return 0.05 + 0.03 * nernst + edges + wall
    return 0.6 + 0.05 * nernst + wall


def capacity(capacity0: float, discharged: np.ndarray | float, fade: float) -> np.ndarray:
    """Capacity (C) after ``discharged`` coulombs have been discharged in total.

    Each coulomb discharged removes ``fade`` coulomb of capacity, so a full-depth
    cycle (discharging the present capacity C) loses fade·C: the capacity falls
    geometrically by (1 − fade) per full-depth cycle. A floor of 1e-3·capacity0
    keeps the model defined for absurd runs.
    """
    q = np.asarray(discharged, dtype=float)
    if fade <= 0:
        return np.full_like(q, capacity0)
    return np.maximum(capacity0 - fade * q, 1e-3 * capacity0)


#: Nominal specific capacity (mAh/g) the simulator declares for its cathodes
#: (NCM622-like and LFP-like); with ``capacity`` (mAh/cm²) it sets the loading
#: the simulated cell reports, so 1 C on the simulator is its true capacity in 1 h.
NOMINAL_MAH_G = {"nmc": 160.0, "lfp": 150.0}
#: Voltage window the simulated cathodes are cycled in by default (V vs Li).
WINDOW_V = {"nmc": (3.0, 4.3), "lfp": (2.5, 4.0)}


def cathode_info(cathode: str, capacity_mah_cm2: float) -> dict[str, float | str]:
    """The cell metadata a lab would declare for the simulated cathode."""
    mah_g = NOMINAL_MAH_G[cathode]
    v_min, v_max = WINDOW_V[cathode]
    return {
        "chemistry": cathode,
        "loading_mg_cm2": capacity_mah_cm2 / mah_g * 1e3,
        "specific_capacity_mAh_g": mah_g,
        "v_min": v_min,
        "v_max": v_max,
    }


def soc_at(voltage: float, cathode: str) -> float:
    """The state of charge whose OCV is ``voltage`` (bisection; OCV is monotonic)."""
    lo, hi = -0.5, 1.5
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(ocv(mid, cathode)) < voltage:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def window_fraction(cathode: str, v_min: float, v_max: float) -> float:
    """Fraction of the capacity between OCV = v_min and OCV = v_max: what slow
    CC-CV cycling in that window can reach (the truth a measured mAh/g recovers)."""
    return min(soc_at(v_max, cathode), 1.0) - max(soc_at(v_min, cathode), 0.0)
