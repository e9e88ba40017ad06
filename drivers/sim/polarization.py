"""DC polarisation of a Li|SE|Li cell by a small step ΔV (Bruce–Vincent–Evans).

The current follows the finite-layer solution the method rests on
(Evans, Vincent & Bruce, Polymer 28 (1987) 2324):

    I(t) = Iss + (I0 − Iss)·Σ_odd k 8/(π²k²)·exp(−k²t/τ),   τ = L²/(π²D)
    I0  = ΔV/(R_s + R_b + R0_int)
    Iss = ΔV/(R_s + R_b/t+ + Rss_int)

while the interfacial resistance drifts R0 → Rss (passivation under current,
exponential with its own time constant). The analysis treats everything but
the bulk arc (R_s + R_int) as the interfacial term, and with these definitions
t+ = Iss(ΔV − I0·R0)/(I0(ΔV − Iss·Rss)) holds exactly with R0 = R_s + R0_int
and Rss = R_s + Rss_int read off the spectra before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from drivers.sim.transport import MODES


@dataclass(frozen=True)
class Polarization:
    """The transient of one potentiostatic step ΔV on a symmetric Li cell."""

    delta_v: float  # V, applied minus open-circuit voltage
    r_s: float  # Ω
    r_b: float  # Ω, ionic (bulk + grain boundary)
    t_plus: float
    r0_int: float  # Ω, both interfaces, at the start
    rss_int: float  # Ω, both interfaces, after the drift
    tau: float  # s, L²/(π²D)
    tau_int: float  # s, drift time constant

    @property
    def i0(self) -> float:
        return self.delta_v / (self.r_s + self.r_b + self.r0_int)

    @property
    def iss(self) -> float:
        return self.delta_v / (self.r_s + self.r_b / self.t_plus + self.rss_int)

    @property
    def r_d(self) -> float:
        return self.r_b * (1.0 - self.t_plus) / self.t_plus

    def current(self, t: np.ndarray) -> np.ndarray:
        return self.iss + (self.i0 - self.iss) * MODES.relaxation(t, self.tau)

    def charge(self, t: np.ndarray) -> np.ndarray:
        """∫0^t I dt', exact."""
        return self.iss * np.asarray(t) + (self.i0 - self.iss) * MODES.relaxation_integral(t, self.tau)

    def r_int(self, t: np.ndarray | float) -> np.ndarray | float:
        return self.rss_int + (self.r0_int - self.rss_int) * np.exp(-np.asarray(t) / self.tau_int)

    def concentration_voltage(self, t: float) -> float:
        """The part of ΔV not dropped ohmically or at the interfaces: the salt gradient."""
        i = float(self.current(np.array([t]))[0])
        return self.delta_v - i * (self.r_s + self.r_b + float(self.r_int(t)))

    def summary(self) -> dict[str, float]:
        """Truth of the transient, for tests and the run file."""
        return {
            "delta_v": self.delta_v,
            "i0": self.i0,
            "iss": self.iss,
            "tau": self.tau,
            "tau_int": self.tau_int,
            "r_s": self.r_s,
            "r_b": self.r_b,
            "r0_int": self.r0_int,
            "rss_int": self.rss_int,
            "t_plus": self.t_plus,
            "t_plus_bve": self.t_plus_bve(),
        }

    def t_plus_bve(self) -> float:
        """What Bruce–Vincent–Evans returns on this transient (equals t_plus)."""
        r0 = self.r_s + self.r0_int
        rss = self.r_s + self.rss_int
        num = self.iss * (self.delta_v - self.i0 * r0)
        den = self.i0 * (self.delta_v - self.iss * rss)
        return num / den if den != 0 else math.nan
