"""Li metal at interfaces: active area of a thin deposit, nucleation, shorts.

* Stripping a deposit from a host (Cu, SS): the Li that is left keeps its full
  active area until only ``knee_charge`` remains, then the area (θ) shrinks in
  proportion, so the Butler–Volmer overpotential asinh(j/(2·j0·θ)) rises in a
  knee and runs to the 1.0 V cutoff within ~1e-8 of the knee charge: the
  charge at the cutoff is the remaining inventory (what Adams et al.,
  Adv. Energy Mater. 8 (2018) 1702097, rely on for CE_avg).
* Nucleation on a bare host: an extra overpotential at plating onset that
  decays over a small plated charge (Pei et al., Nano Lett. 17 (2017) 1132:
  the nucleation overpotential is the dip minus the growth plateau).
* Shorts above the critical current density: dendrites need a charge
  q* = q0·(ccd/j)^m passed at j > ccd (damage accumulates over half-cycles,
  Miner's rule), then a shorting path forms in parallel with the electrolyte;
  a hard short collapses |V| to a few mV, a soft short leaves a noisy, falling
  |V| (Kasemchainan et al., Nat. Mater. 18 (2019) 1105; Lu et al.,
  Adv. Energy Mater. 12 (2022) 2200382 on the soft/hard distinction).
"""

from __future__ import annotations

import math

import numpy as np

from drivers.sim.params import SimParams

#: Active-area floor: with it the stripping overpotential at zero inventory is
#: ~30·(2RT/F) > 1.5 V, so a 1.0 V cutoff is met while Li is still left (~1e-8
#: of the knee charge), never in the Li-free branch.
THETA_MIN = 1e-15

#: A host counts as bare (nucleation needed, bare OCV) below this fraction of the knee charge.
BARE_FRACTION = 1e-6

#: Hard short: the shorting resistance falls log-linearly from R_START to r_short.
HARD_R_START = 1e6  # Ω
HARD_TAU = 20.0  # s
#: Soft short: resistance relative to the cell's, falling with TAU_SOFT, fluctuating.
SOFT_TAU = 900.0  # s
SOFT_FINAL = 0.3
SOFT_INITIAL = 3.0
SOFT_LOG_AMPLITUDE = 0.5


def active_fraction(inventory: np.ndarray | float, knee: float) -> np.ndarray:
    """Share of the electrode still covered by Li (1 above the knee charge)."""
    return np.clip(np.asarray(inventory, dtype=float) / knee, 0.0, 1.0) + THETA_MIN


def nucleation_overpotential(plated_since_bare: np.ndarray, p: SimParams) -> np.ndarray:
    """Extra plating overpotential (V, positive) after plating started on a bare host."""
    q_nuc = p.nuc_charge * 3.6 * p.area
    return p.nuc_eta * np.exp(-np.asarray(plated_since_bare) / q_nuc)


class ShortModel:
    """When a Li cell shorts above its CCD, and how the short conducts afterwards."""

    def __init__(self, p: SimParams) -> None:
        self.p = p
        self.q0 = p.short_q0 * 3600.0 * p.ccd_a_cm2  # C/cm² at j → ccd
        rng = np.random.default_rng([p.seed, 0x5407])
        n = 8
        self._omega = 2 * math.pi / rng.uniform(5.0, 300.0, n)
        self._phase = rng.uniform(0, 2 * math.pi, n)
        self._amp = rng.uniform(0.5, 1.0, n)
        self._amp /= math.sqrt(0.5 * np.sum(self._amp**2))  # unit rms

    def damage_rate(self, current: float) -> float:
        """d(damage)/dt in 1/s at constant ``current``; shorting at damage = 1."""
        j = abs(current) / self.p.area
        ccd = self.p.ccd_a_cm2
        if j <= ccd * (1 + 1e-6):
            return 0.0
        q_star = self.q0 * (ccd / j) ** self.p.short_m
        return j / q_star

    def charge_to_short(self, current_density: float) -> float:
        """q* in C/cm² at a current density (A/cm²) above the CCD (inf at or below)."""
        ccd = self.p.ccd_a_cm2
        if current_density <= ccd * (1 + 1e-6):
            return math.inf
        return self.q0 * (ccd / current_density) ** self.p.short_m

    def fluctuation(self, t: np.ndarray) -> np.ndarray:
        """Deterministic, seeded, unit-rms wobble of a soft short."""
        t = np.asarray(t, dtype=float)
        return np.sin(np.multiply.outer(t, self._omega) + self._phase) @ self._amp

    def resistance(self, since_onset: np.ndarray, r_cell: np.ndarray | float) -> np.ndarray:
        """Resistance of the shorting path (Ω) a time after it formed."""
        s = np.maximum(np.asarray(since_onset, dtype=float), 0.0)
        if self.p.short_kind == "hard":
            r = self.p.r_short
            return r * (HARD_R_START / r) ** np.exp(-s / HARD_TAU)
        envelope = SOFT_FINAL + SOFT_INITIAL * np.exp(-s / SOFT_TAU)
        return np.asarray(r_cell) * envelope * np.exp(SOFT_LOG_AMPLITUDE * self.fluctuation(s))


def shunted(e_open: np.ndarray, r_short: np.ndarray, r_cell: np.ndarray | float) -> np.ndarray:
    """Terminal voltage of a cell (Thevenin E_open, R_cell) with a parallel short."""
    return e_open * r_short / (r_short + r_cell)
