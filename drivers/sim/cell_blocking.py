"""SS|SE|SS: the ion-blocking cell used for conductivity and Arrhenius measurements."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from drivers.sim import impedance as zel
from drivers.sim import transport
from drivers.sim.cellbase import COMPLIANCE_V, CellModel, CellState


@dataclass(frozen=True, eq=False)
class BlockingState(CellState):
    v_dl: float = 0.0  # V across the two double layers (in series)


class BlockingCell(CellModel):
    """SS|SE|SS: R_s + (R_b‖CPE_b + CPE_dl) with electronic leakage across the electrolyte.

    DC: the double layers charge through R_b (a capacitor C = Q_dl·A/2 for the
    two electrodes in series), discharged by the electronic leakage R_e.
    """

    kind = "ss"

    def initial_state(self, t_abs: float, celsius: float) -> BlockingState:
        return BlockingState(t_abs=t_abs, temp=celsius)

    @property
    def c_dl(self) -> float:
        return self.p.q_dl * self.p.area / 2.0

    def _v(self, s: BlockingState, current: float, dt: np.ndarray | float) -> np.ndarray:
        r_e = transport.leakage_resistance(self.p)
        if math.isinf(r_e):
            return s.v_dl + current * np.asarray(dt) / self.c_dl
        r_i = float(transport.ionic_resistance(self.p, s.temp))
        tau = (r_i + r_e) * self.c_dl
        return current * r_e + (s.v_dl - current * r_e) * np.exp(-np.asarray(dt) / tau)

    def cc_voltage(self, s: BlockingState, current: float, dt: np.ndarray, temp: np.ndarray) -> np.ndarray:
        v = self._v(s, current, dt)
        r_i = transport.ionic_resistance(self.p, temp)
        r_e = transport.leakage_resistance(self.p)
        i_ion = current if math.isinf(r_e) else (current * r_e - v) / (r_i + r_e)
        e = current * self.p.r_series + v + i_ion * r_i
        return np.clip(e, -COMPLIANCE_V, COMPLIANCE_V)

    def cc_advance(self, s: BlockingState, current: float, dt: float, temp_end: float) -> BlockingState:
        return dataclasses.replace(s, t_abs=s.t_abs + dt, temp=temp_end, v_dl=float(self._v(s, current, dt)))

    def impedance(self, s: BlockingState, freq: np.ndarray, celsius: float) -> np.ndarray:
        p = self.p
        w = zel.omega(freq)
        z = zel.bulk_arc(p, celsius, w) + zel.cpe(p.q_dl * p.area / 2.0, p.n_dl, w)
        r_e = transport.leakage_resistance(p)
        if not math.isinf(r_e):
            z = z * r_e / (z + r_e)
        return zel.series_front(p, w) + z

    def dc_resistance(self, s: BlockingState, celsius: float) -> float:
        return self.p.r_series + transport.leakage_resistance(self.p)
