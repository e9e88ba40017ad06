"""Ion transport and interfacial kinetics shared by every cell model.

One place for the temperature laws and the linear-response constants, so the
impedance spectrum, the DC transients and the galvanostatic overpotentials of
one cell are the same physics seen through different experiments (the EIS
after a polarisation must agree with the currents during it).

Conventions
-----------
* Bulk conductivity, σ-form Arrhenius: σ(T) = σ25·exp(−Ea/k·(1/T − 1/T25)).
  R_b = L/(σ(T)·A).
* Salt diffusion in a binary electrolyte between two Li electrodes: the
  concentration overpotential of a symmetric cell relaxes through the odd
  Fourier modes of the finite layer, weights 8/(π²k²) and time constants τ/k²
  with τ = L²/(π²D) (Evans, Vincent & Bruce, Polymer 28 (1987) 2324; the
  same modes are the partial fractions of the finite-length Warburg
  R_D·tanh(√(jωτ_W))/√(jωτ_W), τ_W = L²/(4D) = π²τ/4).
  Its DC resistance R_D = R_b(1−t+)/t+, so the cell's DC resistance is
  R_s + R_b/t+ + R_int (Bruce & Vincent, J. Electroanal. Chem. 225 (1987) 1).
* Charge transfer: symmetric Butler–Volmer (α = 0.5), η = (2RT/F)·asinh(j/(2j0)),
  whose small-signal resistance is R_ct = RT/(F·j0·A) per interface
  (Bard & Faulkner, Electrochemical Methods, 2nd ed., §3.4).
"""

from __future__ import annotations

import math

import numpy as np

from drivers.sim.params import SimParams

K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K
FARADAY = 96485.33212  # C/mol
GAS_R = 8.314462618  # J/(mol K)
T_REF_K = 298.15
EPS0 = 8.8541878128e-12  # F/m


def kelvin(celsius: np.ndarray | float) -> np.ndarray | float:
    return celsius + 273.15


def arrhenius(ea: float, celsius: np.ndarray | float) -> np.ndarray | float:
    """exp(−Ea/k·(1/T − 1/T25)): 1 at 25 °C."""
    return np.exp(-ea / K_B_EV * (1.0 / kelvin(celsius) - 1.0 / T_REF_K))


def thermal_voltage(celsius: np.ndarray | float) -> np.ndarray | float:
    """RT/F in volts."""
    return GAS_R * kelvin(celsius) / FARADAY


def sigma_at(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """Bulk conductivity (S/cm) at the given temperature."""
    return p.sigma * arrhenius(p.ea, celsius)


def bulk_resistance(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """R_b = L/(σ(T)·A) in Ω."""
    return p.length_cm / (sigma_at(p, celsius) * p.area)


def ionic_resistance(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """Bulk plus grain-boundary resistance (the gb follows the bulk Arrhenius law)."""
    return bulk_resistance(p, celsius) * (1.0 + p.r_gb_ratio)


def geometric_capacitance(p: SimParams) -> float:
    """ε0·εr·A/L in F."""
    return EPS0 * p.eps_r * (p.area * 1e-4) / (p.length_cm * 1e-2)


def leakage_resistance(p: SimParams) -> float:
    """Electronic resistance through the electrolyte (inf when sigma_e = 0)."""
    if p.sigma_e <= 0:
        return math.inf
    return p.length_cm / (p.sigma_e * p.area)


def diffusivity_at(p: SimParams, celsius: float) -> float:
    return float(p.diffusivity * arrhenius(p.ea, celsius))


def tau_diffusion(p: SimParams, celsius: float) -> float:
    """Slowest relaxation time of the salt profile, τ = L²/(π²D), in s."""
    return p.length_cm**2 / (math.pi**2 * diffusivity_at(p, celsius))


def diffusion_resistance(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """R_D = R_b(1−t+)/t+: the concentration-polarisation resistance."""
    return ionic_resistance(p, celsius) * (1.0 - p.t_plus) / p.t_plus


def exchange_current(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """Li|SE exchange current density j0(T) in A/cm²."""
    return p.j0_a_cm2 * arrhenius(p.ea_int, celsius)


def cathode_exchange_current(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """Cathode j0 in A/cm², defined from r_cathode so R_ct,cat = r_cathode/A at 25 °C."""
    return thermal_voltage(25.0) / p.r_cathode * arrhenius(p.ea_int, celsius)


def charge_transfer_resistance(p: SimParams, celsius: np.ndarray | float) -> np.ndarray | float:
    """Small-signal resistance of one Li|SE interface, RT/(F·j0·A), in Ω."""
    return thermal_voltage(celsius) / (exchange_current(p, celsius) * p.area)


def bv_overpotential(
    current: float | np.ndarray, j0: np.ndarray | float, area: float, celsius: np.ndarray | float
) -> np.ndarray:
    """Symmetric Butler–Volmer overpotential (V) for ``current`` (A), sign of the current."""
    return 2.0 * thermal_voltage(celsius) * np.arcsinh(np.asarray(current) / (2.0 * j0 * area))


class DiffusionModes:
    """The odd Fourier modes of salt diffusion across the electrolyte.

    Mode amplitudes ``x`` are in amperes: each relaxes toward the cell current
    with time constant τ/k², and the concentration overpotential is
    R_D·Σ w_k x_k. Starting from rest under a constant current I the sum is
    R_D·I·(1 − Σ w_k exp(−k²t/τ)), the classic finite-layer build-up. The
    truncated series is renormalised so Σ w_k = 1 exactly (the first sample of
    a step then shows no concentration term, as it must).
    """

    def __init__(self, n_modes: int = 160) -> None:
        k = 2.0 * np.arange(n_modes) + 1.0
        self.k2 = k**2
        w = 8.0 / (math.pi**2 * self.k2)
        self.weights = w / w.sum()

    def zeros(self) -> np.ndarray:
        return np.zeros_like(self.k2)

    def decay(self, dt: np.ndarray | float, tau: float) -> np.ndarray:
        """exp(−k²·dt/τ) with shape (len(dt), n_modes) (or (n_modes,) for a scalar)."""
        dt = np.asarray(dt, dtype=float)
        return np.exp(-np.multiply.outer(np.maximum(dt, 0.0), self.k2) / tau)

    def relaxation(self, dt: np.ndarray | float, tau: float) -> np.ndarray | float:
        """S(t) = Σ w_k exp(−k²t/τ): 1 at t = 0, → 0 for t ≫ τ."""
        return self.decay(dt, tau) @ self.weights

    def relaxation_integral(self, dt: np.ndarray | float, tau: float) -> np.ndarray | float:
        """∫0^t S dt' = Σ w_k τ/k² (1 − exp(−k²t/τ))."""
        return (1.0 - self.decay(dt, tau)) @ (self.weights * tau / self.k2)

    def evolve(self, x0: np.ndarray, current: float, dt: np.ndarray | float, tau: float) -> np.ndarray:
        """Mode amplitudes after dt at constant current (rows per dt)."""
        return current + (x0 - current) * self.decay(dt, tau)

    def overpotential_factor(self, x0: np.ndarray, current: float, dt: np.ndarray, tau: float) -> np.ndarray:
        """Σ w_k x_k(dt) (A): multiply by R_D for the concentration overpotential."""
        return current + self.decay(dt, tau) @ (self.weights * (x0 - current))


MODES = DiffusionModes()
