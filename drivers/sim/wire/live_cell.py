"""A simulated cell that lives in (scaled) real time, for host-timed instrument emulators.

An SMU emulator does not run steps: it is told "source 1 mA, limit 2 V",
"output off", "read". ``LiveCell`` turns that into the physics simulator's
steps. It embeds a ``SimChannel`` on a private ``VirtualClock`` and, whenever
someone looks at the cell (a reading, a change of source), advances it to the
present cell time of its ``ScaledClock`` under whatever it was connected to
since the last look, as one or more short steps. The physics is therefore the
simulator's own (``drivers.sim``; a continued hold stays the same segment, a
constant current split into pieces gives the same voltages), readings are
taken exactly "now", and nothing runs while nobody looks, so an idle emulator
costs nothing and two runs with the same command timing see the same cell.

Source limits behave like an SMU's (2450 Reference Manual 2450-901-01 §2
"Source limits"; 2400 User's Manual 2400S-900-01 §6 "Compliance"): a current
source whose voltage would pass ±V_limit becomes a voltage source at the
limit, and returns to the set current when the load lets it; a voltage source
whose current would pass ±I_limit becomes a current source at the limit. Every
reading says whether the source was limited since the previous one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import drive
from labctl.channel import StepContext
from labctl.clock import Clock, ScaledClock, VirtualClock
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, Rest, Step

#: Cell type used when neither the emulator nor the parameters name one.
DEFAULT_CELL = "li_li"
#: The simulator's largest current (A): sources beyond it are clipped.
MAX_CURRENT = 1.0
#: Mode changes (limit reached, limit released) handled within one advance.
_MAX_SWITCHES = 8


@dataclass(frozen=True)
class OpenCircuit:
    """Nothing connected (output relay open, or a 0 A source with a high-impedance meter)."""


@dataclass(frozen=True)
class CurrentSource:
    """Source ``current`` (A); the voltage magnitude is limited to ``voltage_limit`` (V)."""

    current: float
    voltage_limit: float


@dataclass(frozen=True)
class VoltageSource:
    """Source ``voltage`` (V); the current magnitude is limited to ``current_limit`` (A)."""

    voltage: float
    current_limit: float


Source = OpenCircuit | CurrentSource | VoltageSource
Clamp = Literal["v+", "v-", "i+", "i-"] | None


@dataclass(frozen=True)
class Reading:
    """What an instrument measures at one instant (cell time ``t`` in s)."""

    t: float
    E: float
    I: float  # noqa: E741 (the SAMPLE_DTYPE name)
    T: float
    limited: bool  # the source was held at its limit at some time since the previous reading


def resolve_cell_type(params: SimParams, cell_type: str) -> str:
    """``auto`` means the parameters' cell, else a symmetric Li cell (the usual SMU load)."""
    if cell_type != "auto":
        return cell_type
    return params.cell if params.cell != "auto" else DEFAULT_CELL


class LiveCell:
    """The cell on an emulated instrument's terminals, in scaled real time."""

    def __init__(self, params: SimParams, cell_type: str = "auto", *, speed: float = 1.0, clock: Clock | None = None):
        self.clock = clock or ScaledClock(speed)
        self._virtual = VirtualClock(self.clock.now())
        self.sim = SimChannel(params, resolve_cell_type(params, cell_type), self._virtual)
        self._ctx = StepContext(clock=self._virtual, t_origin=0.0, interrupt=threading.Event())
        self._lock = threading.RLock()
        self._source: Source = OpenCircuit()
        self._clamp: Clamp = None
        self._limited = False
        self._forced = False
        self._t = self._virtual.now()
        self._t_changed = self._t
        self._instant: float | None = None
        #: End of the last reading: the next one starts no earlier (one A/D converter).
        self._busy_until = self._t
        self._last = self._measure_now()

    # --- what the instrument does -------------------------------------------------
    @property
    def source(self) -> Source:
        return self._source

    def now(self) -> float:
        """Cell time now (the frozen instant inside ``instant()``)."""
        return self.clock.now() if self._instant is None else self._instant

    @contextmanager
    def instant(self) -> Iterator[None]:
        """Everything inside happens at one cell instant: an instrument executes the
        units of a message in microseconds, while computing the physics takes this
        process real milliseconds that the scaled clock would turn into seconds."""
        with self._lock:
            outer = self._instant
            if outer is None:
                self._instant = max(self.clock.now(), self._t)
            try:
                yield
            finally:
                self._instant = outer

    def set_source(self, source: Source) -> None:
        """Connect the cell to ``source`` from now on (the past runs under the old one)."""
        if isinstance(source, CurrentSource):
            source = CurrentSource(max(-MAX_CURRENT, min(MAX_CURRENT, source.current)), max(source.voltage_limit, 1e-3))
        elif isinstance(source, VoltageSource):
            source = VoltageSource(source.voltage, min(max(source.current_limit, 1e-12), MAX_CURRENT))
        with self._lock:
            self._advance()
            if isinstance(source, OpenCircuit):
                self._forced = False  # an injected limit lasts until the output is switched off
            if source != self._source:
                self._clamp = None
                self._limited = False
                self._t_changed = self._t
            self._source = source

    def read(self, settle: float = 1e-6, integrate: float = 0.0) -> Reading:
        """A reading taken now, or ``settle`` s after the last change of source if that is
        later (a meter integrates after the source settles, so a reading in the same
        message as a level change sees the new level), and no earlier than the end of the
        previous reading; it lasts ``integrate`` s (aperture × averaging) and is stamped
        at its end. Clears the 'limited since the last reading' flag."""
        with self._lock:
            start = max(self.now(), self._t_changed + settle, self._busy_until)
            self._busy_until = start + max(integrate, 0.0)
            self._advance(self._busy_until)
            last = self._last
            limited = self._limited or self._clamp is not None or self._forced
            self._limited = False
            e, i = float(last["E"]), float(last["I"])
            if self._forced:
                e, i = self._forced_values(e, i)
            return Reading(t=float(last["t"]), E=e, I=i, T=float(last["T"]), limited=limited)

    @property
    def clamped(self) -> bool:
        """The source is at its limit right now (what a "limit tripped?" query answers)."""
        with self._lock:
            self._advance()
            return self._clamp is not None or self._forced

    def force_limit(self) -> None:
        """Injected fault: the load drives the source into its limit (a contact lost, a
        cell gone high-impedance) until the output is switched off."""
        with self._lock:
            self._advance()
            self._forced = not isinstance(self._source, OpenCircuit)

    def truth(self) -> dict[str, Any]:
        with self._lock:
            self._advance()
            return self.sim.truth()

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.sim.events

    # --- the physics -----------------------------------------------------------------
    def _forced_values(self, e: float, i: float) -> tuple[float, float]:
        src = self._source
        if isinstance(src, CurrentSource):
            sign = math.copysign(1.0, src.current if src.current != 0 else e)
            return sign * src.voltage_limit, i
        if isinstance(src, VoltageSource):
            sign = math.copysign(1.0, i if i != 0 else src.voltage)
            return e, sign * src.current_limit
        return e, i

    def _measure_now(self) -> np.ndarray:
        """A zero-length rest gives nothing; take the open-circuit reading of a tiny rest."""
        ran = drive(self.sim, Rest(duration=1e-6, sample_period=1e-6), self._ctx)
        self._t = self._virtual.now()
        return ran.data[-1]

    def _advance(self, target: float | None = None) -> None:
        """Run the cell from its last time to now (or ``target``) under the present source."""
        target = self.now() if target is None else target
        for _ in range(_MAX_SWITCHES):
            remaining = target - self._t
            if remaining <= 1e-9:
                return
            self._run_piece(remaining, switching=True)
        remaining = target - self._t
        if remaining > 1e-9:  # limit chatter: finish in the present state without switching
            self._run_piece(remaining, switching=False)

    def _run_piece(self, span: float, *, switching: bool) -> None:
        step = self._step_for(span, switching)
        ran = drive(self.sim, step, self._ctx)
        self._t = self._virtual.now()
        if len(ran.data):
            self._last = ran.data[-1]
        if switching:
            self._after_piece(ran.outcome.end_reason)
        if self._clamp is not None:
            self._limited = True

    def _step_for(self, span: float, switching: bool) -> Step:
        src, clamp = self._source, self._clamp
        end = Limits(max_time=span)
        if isinstance(src, CurrentSource):
            if clamp is None:
                lim = Limits(max_time=span, voltage_above=src.voltage_limit, voltage_below=-src.voltage_limit)
                return ConstantCurrent(current=src.current, limits=lim if switching else end, sample_period=span)
            level = src.voltage_limit if clamp == "v+" else -src.voltage_limit
            return ConstantVoltage(voltage=level, limits=end, sample_period=span)
        if isinstance(src, VoltageSource):
            if clamp is None:
                lim = Limits(max_time=span, current_above=src.current_limit)
                return ConstantVoltage(voltage=src.voltage, limits=lim if switching else end, sample_period=span / 4)
            current = src.current_limit if clamp == "i+" else -src.current_limit
            release = (
                Limits(max_time=span, voltage_above=src.voltage)
                if clamp == "i+"
                else Limits(max_time=span, voltage_below=src.voltage)
            )
            return ConstantCurrent(current=current, limits=release if switching else end, sample_period=span)
        return Rest(duration=span, sample_period=span)

    def _after_piece(self, reason: EndReason) -> None:
        """Enter or leave the limit according to how the piece ended."""
        src, clamp, last = self._source, self._clamp, self._last
        if isinstance(src, CurrentSource):
            if clamp is None and reason in (EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW):
                self._clamp = "v+" if reason is EndReason.VOLTAGE_ABOVE else "v-"
                self._limited = True
            elif clamp == "v+" and float(last["I"]) >= src.current:
                self._clamp = None  # the load lets the set current flow below the limit again
            elif clamp == "v-" and float(last["I"]) <= src.current:
                self._clamp = None
        elif isinstance(src, VoltageSource):
            if clamp is None and reason is EndReason.CURRENT_ABOVE:
                self._clamp = "i+" if float(last["I"]) > 0 else "i-"
                self._limited = True
            elif clamp is not None and reason in (EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW):
                self._clamp = None  # the set voltage is reached within the current limit
