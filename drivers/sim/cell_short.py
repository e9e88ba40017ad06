"""A shorted cell holder (or a blank of two stainless-steel discs pressed together).

What the ``leads`` protocol measures: only the leads and contacts remain,
Z = R_s + jωL (``r_series``, ``inductance``), and DC E = I·R_s. It is the truth
a lead calibration must recover, and the same R_s every other simulated cell
puts in series, so an ``eis`` run corrected with that calibration recovers the
bulk resistance alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from drivers.sim import impedance as zel
from drivers.sim.cellbase import COMPLIANCE_V, CellModel, CellState


class ShortCell(CellModel):
    """R_s + jωL: leads, contacts and the holder, no electrolyte."""

    kind = "short"

    def initial_state(self, t_abs: float, celsius: float) -> CellState:
        return CellState(t_abs=t_abs, temp=celsius)

    def cc_voltage(self, s: CellState, current: float, dt: np.ndarray, temp: np.ndarray) -> np.ndarray:
        return np.clip(np.full(np.shape(dt), current * self.p.r_series), -COMPLIANCE_V, COMPLIANCE_V)

    def cc_advance(self, s: CellState, current: float, dt: float, temp_end: float) -> CellState:
        return dataclasses.replace(s, t_abs=s.t_abs + dt, temp=temp_end)

    def impedance(self, s: CellState, freq: np.ndarray, celsius: float) -> np.ndarray:
        return zel.series_front(self.p, zel.omega(freq)) * np.ones(np.shape(freq), dtype=complex)

    def dc_resistance(self, s: CellState, celsius: float) -> float:
        return self.p.r_series
