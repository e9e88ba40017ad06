"""The voltammetric measurement loops of the MethodSCRIPT emulator, on the cell physics.

``meas_loop_cv``, ``_swv``, ``_dpv``, ``_npv``, ``_acv``, ``_lsp`` and ``_pad`` are built from
the simulator's own steps: a potential sweep per CV segment, and for the pulse techniques
one potentiostatic hold per base and per pulse period, the current sampled at the end of
each (as the instruments sample at the end of a pulse to let the charging current decay;
MethodSCRIPT manual v1.8, the techniques' descriptions, and the argument order of the
vendor's example scripts). Each technique yields, per data point, the values of its output
variables in the order the loop declares them, with their variable types (appendix C):
``da`` set potential, ``ab`` measured potential, ``ba`` current, ``db`` set current,
``cc``/``cd`` real/imaginary impedance.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from drivers.sim import SimChannel
from labctl.channel import StepContext
from labctl.clock import Clock
from labctl.steps import ConstantCurrent, ConstantVoltage, Impedance, Limits, Step, VoltageSweep

#: One output value: (number, variable type, is a current that carries a range code).
Output = tuple[float, str, bool]
Point = tuple[Output, ...]

#: Output variables each loop declares (the variable names come first in its arguments).
OUTPUTS = {"cv": 2, "swv": 4, "dpv": 2, "npv": 2, "acv": 6, "lsp": 2, "pad": 2}
#: The ``MXXXX`` technique numbers (PalmSens technique numbering: LSV 0, DPV 1, SWV 2,
#: NPV 3, ACV 4, CV 5, PAD 8; LSP is this emulator's own, the manual lists no number).
TECHNIQUE_CODES = {"dpv": 0x0001, "swv": 0x0002, "npv": 0x0003, "acv": 0x0004, "cv": 0x0005, "pad": 0x0008,
                   "lsp": 0x000F}
NEEDS_GALVANOSTAT = ("lsp",)


@dataclass(frozen=True)
class _FrequencyPoint(Impedance):
    """One impedance point at ``f_start`` (ACV's small-signal measurement)."""

    @property
    def kind(self) -> str:
        return "Impedance"

    def frequencies(self) -> np.ndarray:
        return np.asarray([self.f_start])


class Cell:
    """Runs the simulator's steps to their end, one after another, on the instrument clock."""

    def __init__(self, sim: SimChannel, clock: Clock, abort: threading.Event, on_sample: Callable[[float], None]):
        self.sim, self.clock, self.abort, self.on_sample = sim, clock, abort, on_sample

    def rows(self, step: Step) -> Iterator[np.void]:
        ctx = StepContext(clock=self.clock, t_origin=self.clock.now(), interrupt=self.abort, max_block_wall=0.05)
        run = self.sim.run_step(step, ctx)
        try:
            for chunk in run:
                for row in chunk:
                    self.on_sample(ctx.t_origin + float(row["t"]))
                    yield row
                if self.abort.is_set():
                    return
        finally:
            run.close()

    def hold(self, potential: float, seconds: float) -> float:
        """The current at the end of a potentiostatic hold."""
        last = None
        for row in self.rows(ConstantVoltage(voltage=potential, limits=Limits(max_time=seconds),
                                             sample_period=seconds)):
            last = row
        return math.nan if last is None else float(last["I"])

    def galvanostatic(self, current: float, seconds: float) -> float:
        """The potential at the end of a galvanostatic hold."""
        last = None
        for row in self.rows(ConstantCurrent(current=current, limits=Limits(max_time=seconds), sample_period=seconds)):
            last = row
        return math.nan if last is None else float(last["E"])


def _steps(begin: float, end: float, step: float) -> np.ndarray:
    """The staircase from begin toward end in |step| increments (end included when reached)."""
    size = abs(step)
    if size <= 0:
        raise ValueError("step must not be 0")
    count = math.floor(abs(end - begin) / size + 1e-9)
    return begin + math.copysign(size, end - begin) * np.arange(count + 1)


def cv(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, vertex1, vertex2, step, rate [nscans(n)]: begin → v1 → v2 → begin, n times."""
    begin, v1, v2, step, rate = a
    if rate <= 0 or step == 0:
        raise ValueError("scan rate and step must be positive")
    for _ in range(max(1, round(options.get("nscans", 1)))):
        for start, stop in ((begin, v1), (v1, v2), (v2, begin)):
            if start == stop:
                continue
            sweep = VoltageSweep(start=start, stop=stop, rate=rate, sample_period=abs(step) / rate)
            for row in cell.rows(sweep):
                yield ((float(row["E"]), "da", False), (float(row["I"]), "ba", True))


def swv(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, end, step, amplitude, frequency: forward and reverse half periods per step."""
    begin, end, step, amplitude, frequency = a
    half = 0.5 / frequency
    for e in _steps(begin, end, step):
        forward = cell.hold(e + amplitude, half)
        reverse = cell.hold(e - amplitude, half)
        yield ((e, "da", False), (forward - reverse, "ba", True), (forward, "ba", True), (reverse, "ba", True))


def dpv(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, end, step, pulse potential, pulse time, rate: I(pulse) − I(before the pulse)."""
    begin, end, step, pulse, pulse_time, rate = a
    interval = abs(step) / rate
    if pulse_time >= interval:
        raise ValueError("pulse time must be shorter than step / rate")
    for e in _steps(begin, end, step):
        base = cell.hold(e, interval - pulse_time)
        top = cell.hold(e + pulse, pulse_time)
        yield ((e, "da", False), (top - base, "ba", True))


def npv(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, end, step, pulse time, rate: pulses from the begin potential to each step."""
    begin, end, step, pulse_time, rate = a
    interval = abs(step) / rate
    if pulse_time >= interval:
        raise ValueError("pulse time must be shorter than step / rate")
    for e in _steps(begin, end, step):
        cell.hold(begin, interval - pulse_time)
        yield ((e, "da", False), (cell.hold(e, pulse_time), "ba", True))


def acv(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, end, step, rate, amplitude, frequency: DC staircase with the AC response."""
    begin, end, step, rate, amplitude, frequency = a
    for e in _steps(begin, end, step):
        dc = cell.hold(e, abs(step) / rate)
        point = _FrequencyPoint(f_start=frequency, f_stop=frequency * 10.0, amplitude=amplitude, bias=e,
                                bias_vs_ocv=False)
        z = next((complex(float(r["z_re"]), float(r["z_im"])) for r in cell.rows(point)), complex(math.nan))
        ac_current = amplitude / abs(z) if abs(z) > 0 else math.nan
        yield ((e, "da", False), (dc, "ba", True), (amplitude, "da", False), (ac_current, "ba", True),
               (z.real, "cc", False), (z.imag, "cd", False))


def lsp(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """begin, end, step, rate (A, A, A, A/s): a current staircase, the potential measured."""
    begin, end, step, rate = a
    for i in _steps(begin, end, step):
        yield ((cell.galvanostatic(i, abs(step) / rate), "ab", False), (i, "db", False))


def pad(cell: Cell, a: list[float], options: dict[str, float]) -> Iterator[Point]:
    """dc, pulse potential, pulse time, interval, run time, mode (1 DC, 2 pulse, 3 difference)."""
    dc, pulse, pulse_time, interval, run_time, mode = a
    if pulse_time >= interval or round(mode) not in (1, 2, 3):
        raise ValueError("pulse time must be shorter than the interval; mode 1, 2 or 3")
    for _ in range(max(1, int(run_time / interval + 1e-9))):
        base = cell.hold(dc, interval - pulse_time)
        top = cell.hold(pulse, pulse_time)
        value = {1: base, 2: top, 3: top - base}[round(mode)]
        yield ((dc if round(mode) == 1 else pulse, "da", False), (value, "ba", True))


TECHNIQUES: dict[str, Callable[[Cell, list[float], dict[str, float]], Iterator[Point]]] = {
    "cv": cv, "swv": swv, "dpv": dpv, "npv": npv, "acv": acv, "lsp": lsp, "pad": pad,
}
