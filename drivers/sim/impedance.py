"""Impedance elements, the bulk arc, and how long a measured point takes.

The cell models assemble their spectra from these elements; the circuits are
the ones solid-electrolyte papers fit (bulk R‖CPE with the geometric
capacitance, CPE spike of blocking electrodes, interfacial R‖CPE and the
finite-length diffusion element for Li electrodes), so a correct fitter can
recover the truth exactly up to the noise.

References: Irvine, Sinclair & West, Adv. Mater. 2 (1990) 132 (capacitance
ranges of bulk and grain-boundary arcs); Brug et al., J. Electroanal. Chem.
176 (1984) 275 (CPE ↔ effective capacitance); Lasia, Electrochemical
Impedance Spectroscopy and its Applications (2014), ch. 4 (finite-length
diffusion).
"""

from __future__ import annotations

import math

import numpy as np

from drivers.sim import transport
from drivers.sim.params import SimParams

#: A frequency point lasts max(PERIODS/f, MIN_POINT_S) + OVERHEAD_S: a few
#: periods of the sine for the lock-in/FFT, never less than the settling time.
PERIODS = 3.0
MIN_POINT_S = 0.5
OVERHEAD_S = 0.2


def point_duration(freq: float) -> float:
    """Cell time (s) that measuring one frequency point takes."""
    return max(PERIODS / freq, MIN_POINT_S) + OVERHEAD_S


def omega(freq: np.ndarray) -> np.ndarray:
    return 2.0 * math.pi * np.asarray(freq, dtype=float)


def cpe(q: float, n: float, w: np.ndarray) -> np.ndarray:
    """Constant-phase element 1/(Q(jω)^n)."""
    return 1.0 / (q * (1j * w) ** n)


def r_cpe(r: float, q: float, n: float, w: np.ndarray) -> np.ndarray:
    """R in parallel with a CPE."""
    return r / (1.0 + r * q * (1j * w) ** n)


def q_for_capacitance(c: float, r: float, n: float) -> float:
    """CPE Q whose R‖CPE arc has the effective capacitance c (Brug): Q = C^n·R^(n−1)."""
    return c**n * r ** (n - 1.0)


def finite_length_diffusion(r_d: float, tau_w: float, w: np.ndarray) -> np.ndarray:
    """Transmissive finite-length Warburg R_D·tanh(√(jωτ))/√(jωτ) (DC limit R_D)."""
    x = np.sqrt(1j * w * tau_w)
    return r_d * np.tanh(x) / x


def bulk_arc(p: SimParams, celsius: float, w: np.ndarray) -> np.ndarray:
    """R_b‖CPE_b (geometric capacitance) plus the optional grain-boundary arc."""
    rb = float(transport.bulk_resistance(p, celsius))
    cb = transport.geometric_capacitance(p)
    z = r_cpe(rb, q_for_capacitance(cb, rb, p.n_bulk), p.n_bulk, w)
    if p.r_gb_ratio > 0:
        rgb = rb * p.r_gb_ratio
        cgb = cb * p.gb_cap_ratio
        z = z + r_cpe(rgb, q_for_capacitance(cgb, rgb, p.n_bulk), p.n_bulk, w)
    return z


def series_front(p: SimParams, w: np.ndarray) -> np.ndarray:
    """jωL + R_s: leads and contacts."""
    return 1j * w * p.inductance + p.r_series


def with_noise(z: np.ndarray, rel: float, rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian error with rms |δZ| = rel·|Z| (split over real and imaginary parts)."""
    if rel <= 0:
        return z
    n = rng.standard_normal((np.size(z), 2))
    scale = rel * np.abs(z) / math.sqrt(2.0)
    return z + scale * (n[:, 0] + 1j * n[:, 1])
