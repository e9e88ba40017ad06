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


def capacity(capacity0: float, throughput: np.ndarray | float, fade: float) -> np.ndarray:
    """Capacity (C) after a charge throughput (C): ``fade`` lost per cycle of 2·capacity0."""
    if fade <= 0:
        return np.full_like(np.asarray(throughput, dtype=float), capacity0)
    cycles = np.asarray(throughput, dtype=float) / (2.0 * capacity0)
    return capacity0 * np.exp(math.log1p(-fade) * cycles)
