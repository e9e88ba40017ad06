"""The interface every simulated cell model implements, and its state snapshot.

Every model answers three questions in closed form, vectorised over samples:

* ``cc_voltage(state, I, dt, T)``: the terminal voltage a time dt after
  ``state`` while a constant current I flows (I = 0 is open circuit);
* ``cc_advance(state, I, dt, T_end)``: the state after that time;
* ``impedance(state, f, T)``: the small-signal spectrum in that state.

Potentiostatic holds and sweeps are built on these by ``segments`` (closed
form where the physics allows, implicit stepping otherwise). States are
immutable snapshots, so evaluating a trial time (a limit bisection, a solver
iteration) can never disturb the cell.

Sign convention: E = V(working) − V(counter); positive current oxidises the
working electrode (strips Li from it; charges a cathode).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sim import transport
from drivers.sim.params import SimParams

#: Instrument compliance: no simulated terminal voltage exceeds this magnitude.
COMPLIANCE_V = 10.0


@dataclass(frozen=True, eq=False)
class CellState:
    """Snapshot of a cell at absolute clock time ``t_abs`` (cell at ``temp`` °C)."""

    t_abs: float
    temp: float


class CellModel(ABC):
    """A cell type: closed-form responses to constant current, and its spectrum."""

    kind: str = ""

    def __init__(self, p: SimParams) -> None:
        self.p = p

    @abstractmethod
    def initial_state(self, t_abs: float, celsius: float) -> CellState: ...

    @abstractmethod
    def cc_voltage(self, s: Any, current: float, dt: np.ndarray, temp: np.ndarray) -> np.ndarray:
        """Terminal voltage (V) at times dt after ``s`` under constant ``current`` (A)."""

    @abstractmethod
    def cc_advance(self, s: Any, current: float, dt: float, temp_end: float) -> Any:
        """The state dt after ``s`` under constant ``current``."""

    @abstractmethod
    def impedance(self, s: Any, freq: np.ndarray, celsius: float) -> np.ndarray:
        """Complex impedance (Ω) at ``freq`` (Hz)."""

    @abstractmethod
    def dc_resistance(self, s: Any, celsius: float) -> float:
        """Linear DC resistance (Ω, may be inf): the ω → 0 limit where one exists."""

    def ocv(self, s: Any) -> float:
        return float(self.cc_voltage(s, 0.0, np.zeros(1), np.array([s.temp]))[0])

    def truth(self, s: Any) -> dict[str, Any]:
        """Model quantities at the present state (for tests and the run file)."""
        p = self.p
        return {
            "cell": self.kind,
            "temperature": s.temp,
            "sigma": float(transport.sigma_at(p, s.temp)),
            "r_bulk": float(transport.bulk_resistance(p, s.temp)),
            "r_ionic": float(transport.ionic_resistance(p, s.temp)),
            "r_series": p.r_series,
            "ocv": self.ocv(s),
        }
