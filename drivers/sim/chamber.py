"""A temperature chamber and the cell inside it, in closed form.

The chamber air approaches its set point as a first-order lag (time constant
``tau_chamber``) and the cell lags the air by ``tau_cell``: two cascaded lags,
solved exactly, so the temperature at any instant is a pure function of the
time since the last set-point change. Every model evaluates its physics at
the cell temperature of the sample it computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Chamber:
    """Set point history reduced to the last change (closed-form state)."""

    tau_chamber: float
    tau_cell: float
    setpoint: float  # °C
    t_set: float = 0.0  # absolute clock time of the last set-point change
    air0: float = 25.0  # chamber air temperature at t_set
    cell0: float = 25.0  # cell temperature at t_set

    @classmethod
    def at(cls, celsius: float, tau_chamber: float, tau_cell: float, t_now: float) -> Chamber:
        """A chamber that has sat at ``celsius`` forever."""
        return cls(tau_chamber, tau_cell, celsius, t_now, celsius, celsius)

    def air(self, t_abs: np.ndarray | float) -> np.ndarray | float:
        s = np.maximum(np.asarray(t_abs, dtype=float) - self.t_set, 0.0)
        return self.setpoint + (self.air0 - self.setpoint) * np.exp(-s / self.tau_chamber)

    def cell(self, t_abs: np.ndarray | float) -> np.ndarray | float:
        """Cell temperature (°C) at absolute clock time(s)."""
        s = np.maximum(np.asarray(t_abs, dtype=float) - self.t_set, 0.0)
        t1, t2 = self.tau_chamber, self.tau_cell
        a = self.air0 - self.setpoint
        c = self.cell0 - self.setpoint
        if t2 <= 0:
            return self.air(t_abs)
        e1 = np.exp(-s / t1)
        e2 = np.exp(-s / t2)
        if math.isclose(t1, t2, rel_tol=1e-9):
            return self.setpoint + a * (s / t1) * e1 + c * e1
        return self.setpoint + a * t1 / (t1 - t2) * (e1 - e2) + c * e2

    def set(self, celsius: float, t_abs: float) -> None:
        """Change the set point at ``t_abs`` (the present state carries over)."""
        air, cell = float(self.air(t_abs)), float(self.cell(t_abs))
        self.setpoint, self.t_set, self.air0, self.cell0 = celsius, t_abs, air, cell
