"""Control laws over a cell model: constant current, DC polarisation, sweeps.

A Segment is one stretch of a step under one control law, in time ``tau``
since the segment began. ``eval`` is pure (any number of trial times: sample
grids, limit bisections) and ``commit`` moves the cell's state forward, so
the channel can compute a chunk, find where a limit is met, and only then
decide how far the cell really went.

* ``CurrentSegment``: constant current (or open circuit), closed form.
* ``PolarizationSegment``: ΔV on a symmetric Li cell, closed form (BVE).
* ``OxidationSegment``: sweep or hold of a Li-free host, algebraic per sample.
* ``ImplicitSegment``: any other potentiostatic law, stepped sample by sample
  on the constant-current solution (current held over each interval and
  solved so the voltage at its end is the target).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

from drivers.sim import transport
from drivers.sim.cells import CellModel, LithiumCell
from drivers.sim.chamber import Chamber
from drivers.sim.polarization import Polarization


@dataclass
class Bench:
    """The simulated cell on the bench: its model, its present state, its chamber."""

    cell: CellModel
    state: Any
    chamber: Chamber


@dataclass
class Trace:
    """Noise-free model values at a set of times."""

    E: np.ndarray
    I: np.ndarray  # noqa: E741 (the SAMPLE_DTYPE field name)
    Q: np.ndarray
    T: np.ndarray


class Segment(ABC):
    """One control law applied from the bench's present state on."""

    #: True when ``eval`` at any time is the model itself (limits may bisect it);
    #: False when values between samples are only known by interpolation.
    exact: bool = True
    #: Samples per chunk on a virtual clock: large for vectorised laws, small for
    #: stepped ones (whose cost is per sample, wasted past an early limit).
    chunk_samples: int = 2048

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.t0 = bench.state.t_abs
        self.tau_c = 0.0  # last committed time

    def temperature(self, tau: np.ndarray) -> np.ndarray:
        return np.asarray(self.bench.chamber.cell(self.t0 + np.asarray(tau, dtype=float)))

    @abstractmethod
    def eval(self, tau: np.ndarray) -> Trace:
        """Model values at times ``tau`` (≥ the last commit), without changing the cell."""

    @abstractmethod
    def commit(self, tau: float) -> None:
        """Advance the cell's state to ``tau``."""

    def truth(self) -> dict[str, Any]:
        return {}


class CurrentSegment(Segment):
    """Constant current (0 = open circuit), closed form in each model."""

    def __init__(self, bench: Bench, current: float) -> None:
        super().__init__(bench)
        self.current = float(current)
        self.snap = bench.state

    def eval(self, tau: np.ndarray) -> Trace:
        tau = np.asarray(tau, dtype=float)
        temp = self.temperature(tau)
        e = self.bench.cell.cc_voltage(self.snap, self.current, tau - self.tau_c, temp)
        return Trace(e, np.full(tau.shape, self.current), self.current * tau, temp)

    def commit(self, tau: float) -> None:
        dt = tau - self.tau_c
        if dt <= 0:
            return
        temp = float(self.temperature(np.asarray(tau)))
        self.snap = self.bench.cell.cc_advance(self.snap, self.current, dt, temp)
        self.bench.state = self.snap
        self.tau_c = tau


class PolarizationSegment(Segment):
    """Potentiostatic ΔV on a Li|SE|Li cell: the Bruce–Vincent–Evans transient."""

    def __init__(self, bench: Bench, e_applied: float) -> None:
        super().__init__(bench)
        cell = bench.cell
        assert isinstance(cell, LithiumCell) and not cell.host
        p = cell.p
        s = bench.state
        self.snap = s
        self.e_applied = float(e_applied)
        self.r_ct = float(transport.charge_transfer_resistance(p, s.temp))
        tau = transport.tau_diffusion(p, s.temp)
        self.r_d = float(transport.diffusion_resistance(p, s.temp))
        self.pol = Polarization(
            delta_v=self.e_applied - cell.ocv(s),
            r_s=p.r_series,
            r_b=float(transport.ionic_resistance(p, s.temp)),
            t_plus=p.t_plus,
            r0_int=2.0 * self.r_ct * s.drift,
            rss_int=2.0 * self.r_ct * p.rss_ratio,
            tau=tau,
            tau_int=p.tau_int_ratio * tau,
        )

    def eval(self, tau: np.ndarray) -> Trace:
        tau = np.asarray(tau, dtype=float)
        return Trace(
            np.full(tau.shape, self.e_applied), self.pol.current(tau), self.pol.charge(tau), self.temperature(tau)
        )

    def commit(self, tau: float) -> None:
        if tau <= self.tau_c:
            return
        conc = self.pol.concentration_voltage(tau)
        self.bench.state = dataclasses.replace(
            self.snap,
            t_abs=self.t0 + tau,
            temp=float(self.temperature(np.asarray(tau))),
            drift=float(self.pol.r_int(tau)) / (2.0 * self.r_ct),
            modes=np.full_like(self.snap.modes, conc / self.r_d if self.r_d > 0 else 0.0),
        )
        self.tau_c = tau

    def truth(self) -> dict[str, Any]:
        return {"polarization": self.pol.summary()}


class OxidationSegment(Segment):
    """Sweep (rate ≠ 0) or hold (rate = 0) of a Li-free host: LSV physics, per sample."""

    def __init__(self, bench: Bench, e_start: float, rate: float) -> None:
        super().__init__(bench)
        cell = bench.cell
        assert isinstance(cell, LithiumCell) and cell.host
        self.snap = bench.state
        self.model = cell.oxidation(self.snap.temp)
        self.e_start = float(e_start)
        self.rate = float(rate)
        self.q_c = 0.0
        self.i_c = float(self.model.solve(np.array([self.e_start]), self.rate)[1][0])
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def eval(self, tau: np.ndarray) -> Trace:
        tau = np.asarray(tau, dtype=float)
        _, current = self.model.solve(self.e_start + self.rate * tau, self.rate)
        t_all = np.concatenate(([self.tau_c], tau))
        i_all = np.concatenate(([self.i_c], current))
        q = self.q_c + np.cumsum(0.5 * (i_all[1:] + i_all[:-1]) * np.diff(t_all))
        self._cache = (tau, current, q)
        return Trace(self.e_start + self.rate * tau, current, q, self.temperature(tau))

    def commit(self, tau: float) -> None:
        if tau <= self.tau_c:
            return
        if self._cache is not None and self._cache[0].size and self._cache[0][0] <= tau <= self._cache[0][-1]:
            taus, currents, charges = self._cache
            q = float(np.interp(tau, taus, charges))
            i = float(np.interp(tau, taus, currents))
        else:
            tr = self.eval(np.array([tau]))
            q, i = float(tr.Q[0]), float(tr.I[0])
        self.bench.state = dataclasses.replace(
            self.snap,
            t_abs=self.t0 + tau,
            temp=float(self.temperature(np.asarray(tau))),
            oxidised=self.snap.oxidised + q,
        )
        self.q_c, self.i_c, self.tau_c = q, i, tau
        self._cache = None

    def truth(self) -> dict[str, Any]:
        m = self.model
        return {
            "oxidation": {
                "esw": m.esw,
                "tafel_v_per_efold": m.b,
                "log_k": m.log_k,
                "r_ohm": m.r_ohm,
                "c_dl": m.c_dl,
                "calibrated": m.calibrated,
            }
        }


@dataclass
class _Row:
    tau: float
    tau_before: float
    state_before: Any
    current: float
    state_after: Any
    q_after: float


class ImplicitSegment(Segment):
    """Any voltage law E(tau), stepped: over each sample interval the current is
    constant and solved so the model's voltage at the interval's end is E(tau)."""

    exact = False
    chunk_samples = 32

    def __init__(self, bench: Bench, target: Callable[[float], float]) -> None:
        super().__init__(bench)
        self.target = target
        self.snap = bench.state
        self.q_c = 0.0
        self.i_prev = 0.0
        self._rows: list[_Row] = []

    def _voltage(self, s: Any, current: float, dt: float, temp: float) -> float:
        return float(self.bench.cell.cc_voltage(s, current, np.array([dt]), np.array([temp]))[0])

    def _solve(self, s: Any, dt: float, temp: float, e_target: float) -> float:
        def f(i: float) -> float:
            return self._voltage(s, i, dt, temp) - e_target

        direct = getattr(self.bench.cell, "current_for_voltage", None)  # a model's own fast solve
        if direct is not None:
            found = direct(s, dt, temp, e_target, self.i_prev)
            if found is not None:
                return float(found)
        i0 = self.i_prev
        f0 = f(i0)
        if f0 == 0.0:
            return i0
        delta = 1e-6 + abs(i0) * 1e-3
        slope = (f(i0 + delta) - f0) / delta
        if not slope > 0:
            slope = 1.0
        step = -f0 / slope
        a, b = sorted((i0, i0 + 2.0 * step))
        fa, fb = f(a), f(b)
        for _ in range(60):
            if fa <= 0 <= fb:
                break
            width = b - a
            if fa > 0:
                a -= 2.0 * width + 1e-12
                fa = f(a)
            if fb < 0:
                b += 2.0 * width + 1e-12
                fb = f(b)
            if max(abs(a), abs(b)) > 1e3:
                break
        if not fa <= 0 <= fb:  # compliance: the voltage cannot be reached
            return a if abs(fa) < abs(fb) else b
        return brentq(f, a, b, xtol=1e-18, rtol=1e-12)

    def eval(self, tau: np.ndarray) -> Trace:
        tau = np.atleast_1d(np.asarray(tau, dtype=float))
        temps = self.temperature(tau)
        cell = self.bench.cell
        s, tau_prev, q = self.snap, self.tau_c, self.q_c
        rows: list[_Row] = []
        e_out, i_out, q_out = np.empty(tau.size), np.empty(tau.size), np.empty(tau.size)
        for n, (t, temp) in enumerate(zip(tau, temps, strict=True)):
            dt = max(float(t) - tau_prev, 0.0)
            current = self._solve(s, dt, float(temp), float(self.target(float(t))))
            self.i_prev = current
            e_out[n] = self._voltage(s, current, dt, float(temp))
            after = cell.cc_advance(s, current, dt, float(temp))
            q += current * dt
            rows.append(_Row(float(t), tau_prev, s, current, after, q))
            i_out[n], q_out[n] = current, q
            s, tau_prev = after, float(t)
        self._rows = rows
        return Trace(e_out, i_out, q_out, temps)

    def commit(self, tau: float) -> None:
        if tau <= self.tau_c:
            return
        for row in self._rows:
            if tau <= row.tau:
                if tau == row.tau:
                    state, q = row.state_after, row.q_after
                else:
                    dt = tau - row.tau_before
                    temp = float(self.temperature(np.asarray(tau)))
                    state = self.bench.cell.cc_advance(row.state_before, row.current, dt, temp)
                    q = row.q_after - row.current * (row.tau - tau)
                break
        else:  # beyond what was evaluated: step there directly
            self.eval(np.array([tau]))
            row = self._rows[-1]
            state, q = row.state_after, row.q_after
        self.snap = self.bench.state = state
        self.q_c, self.tau_c = q, tau
        self._rows = []
