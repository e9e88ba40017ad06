"""Impedance of the circuit elements: CPE, p(R,CPE) arc, finite-length Warburg."""

from __future__ import annotations

import math

import numpy as np


def cpe_impedance(freq: np.ndarray, q: float, n: float) -> np.ndarray:
    """Constant-phase element, Z = 1/(Q (jω)^n); n = 1 is an ideal capacitor Q."""
    jw = 2j * np.pi * np.asarray(freq, dtype=float)
    return 1.0 / (q * jw**n)


def rq_impedance(freq: np.ndarray, r: float, q: float, n: float) -> np.ndarray:
    """Resistor in parallel with a CPE (a depressed semicircle of diameter r)."""
    jw = 2j * np.pi * np.asarray(freq, dtype=float)
    return r / (1.0 + r * q * jw**n)


def arc_apex_frequency(r: float, q: float, n: float) -> float:
    """Frequency of the top of a p(R,CPE) arc: ω·(RQ)^(1/n) = 1."""
    return 1.0 / (2.0 * math.pi * (r * q) ** (1.0 / n))


def effective_capacitance(r: float, q: float, n: float) -> float:
    """Capacitance of the ideal RC arc with the same R and apex as p(R,CPE):
    C = Q^(1/n)·R^(1/n − 1) (Brug et al., J. Electroanal. Chem. 176 (1984) 275). It tells a
    geometric (bulk, pF–nF) arc from an interfacial (µF) one whatever the apex frequencies."""
    return q ** (1.0 / n) * r ** (1.0 / n - 1.0)


def _tanh_ratio(s: np.ndarray) -> np.ndarray:
    """tanh(s)/s, with its series below |s| = 1e-2 where the quotient loses digits."""
    out = np.empty_like(s)
    small = np.abs(s) < 1e-2
    s2 = s[small] ** 2
    out[small] = 1.0 - s2 / 3.0 + 2.0 * s2 * s2 / 15.0
    big = ~small
    out[big] = np.tanh(s[big]) / s[big]
    return out


def finite_warburg_impedance(freq: np.ndarray, r_d: float, tau_d: float) -> np.ndarray:
    """Finite-length Warburg with a transmissive boundary, RD·tanh(√(jωτD))/√(jωτD).

    Semi-infinite (Z ∝ (jω)^−½, a 45° line) for ωτD ≫ 3, a resistor RD for ωτD ≪ 1
    (Barsoukov & Macdonald, Impedance Spectroscopy, 2nd ed., 2005). In a Li|SE|Li cell it is
    the salt concentration profile between the electrodes; RD = R_b(1 − t+)/t+.
    """
    s = np.sqrt(2j * np.pi * np.asarray(freq, dtype=float) * tau_d)
    return r_d * _tanh_ratio(np.atleast_1d(s)).reshape(s.shape)
