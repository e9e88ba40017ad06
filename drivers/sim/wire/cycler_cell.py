"""One battery-tester channel, emulated: a cell on the simulator's physics, driven by
an on-instrument program (a Neware step file) or by direct output settings (Maccor
direct mode), recording data points stamped with the instrument's own clock.

A real cycler runs its channels by itself and keeps every record, whether or not
a client is connected; a client polls or downloads them later. The emulator does
the same lazily: nothing is computed while nobody looks, and whenever a client
asks (status, download), each channel is advanced to the emulator's present
time under what it was told to do, as the simulator's own steps (``drive`` on a
private ``VirtualClock``, like ``live_cell.LiveCell``), so a constant current
split into pieces gives the same voltages as one long step, and cutoffs are
found by the simulator exactly where the cell crosses them (as the instrument's
hardware would, not at a client's poll).

Records are taken on a grid of ``record_period`` seconds from the start of each
segment, plus one at every segment end (cutoff or time), like a cycler's
"record every Δt" setting. Each record carries a sequence number (from 1 per
test), so a client that lost its link can download exactly the ones it missed.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import drive
from labctl.channel import StepContext
from labctl.clock import Clock, VirtualClock
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, Rest, Step

#: Cell type an emulated cycler channel holds unless told otherwise.
DEFAULT_CELL = "full"


@dataclass(frozen=True)
class Segment:
    """One thing the channel does: rest, constant current, constant voltage.

    ``current`` is signed (A, + charges the cell); for ``cv`` it is the current
    limit magnitude (0 = none). ``v_above``/``v_below`` end a ``cc``;
    ``i_below`` ends a ``cv``; ``duration`` (s) ends any (None = no time limit).
    ``step_id``/``step_type`` are the program's numbering, reported in records.
    """

    mode: str  # rest | cc | cv
    current: float = 0.0
    voltage: float = 0.0
    duration: float | None = None
    v_above: float | None = None
    v_below: float | None = None
    i_below: float | None = None
    step_id: int = 1
    step_type: int = 0


@dataclass(frozen=True)
class Record:
    """One data point as the instrument stores it (times in instrument seconds)."""

    seq: int
    test_time: float  # s since the test started
    step_time: float  # s since the step started
    abs_time: float  # instrument clock (s): the emulator's clock
    voltage: float  # V
    current: float  # A
    capacity: float  # C passed in this step (signed)
    step_id: int
    step_type: int
    cycle: int


@dataclass
class Program:
    """A compiled test: segments with cycle jumps (``loops[i] = (start_index, count)``
    after segment i: go back to ``start_index`` until done ``count`` times)."""

    segments: list[Segment]
    loops: dict[int, tuple[int, int]] = field(default_factory=dict)


_CUTOFFS = {EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW, EndReason.CURRENT_BELOW}


class CyclerCell:
    """A channel's cell and test state, advanced lazily to the emulator clock."""

    def __init__(self, params: SimParams, cell_type: str, clock: Clock, record_period: float = 1.0) -> None:
        self.clock = clock
        self.record_period = float(record_period)
        self._virtual = VirtualClock(clock.now())
        kind = params.cell if cell_type == "auto" else cell_type
        self.sim = SimChannel(params, DEFAULT_CELL if kind == "auto" else kind, self._virtual)
        self._ctx = StepContext(clock=self._virtual, t_origin=0.0, interrupt=threading.Event())
        self.lock = threading.RLock()
        self.status = "finish"  # working | stop | finish | protect | pause
        self.alarm = ""
        self.test_id = 0
        self.records: list[Record] = []
        #: Every test's records, in order (the instrument's stored data files).
        self.tests: list[list[Record]] = []
        self.program: Program | None = None
        self._index = 0
        self._loop_done: dict[int, int] = {}
        self.cycle = 1
        self._t_test = 0.0
        self._t_seg = 0.0
        self._q_seg = 0.0
        self._last_t = -math.inf
        self._last = (float("nan"), 0.0)  # (E, I) of the latest point
        self._e_last = float(self.sim.cell_info().get("ocv_V", float("nan")))

    # --- what a client sees --------------------------------------------------------
    @property
    def t(self) -> float:
        return self._virtual.now()

    @property
    def output_on(self) -> bool:
        with self.lock:
            self.advance()
            return self.status == "working" and self.segment is not None and self.segment.mode != "rest"

    @property
    def segment(self) -> Segment | None:
        if self.program is None or self._index >= len(self.program.segments):
            return None
        return self.program.segments[self._index]

    def reading(self) -> tuple[float, float]:
        """(E, I) now."""
        with self.lock:
            self.advance()
            if self.status != "working":
                return self._rest_voltage(), 0.0
            return self._last

    def capacity(self) -> float:
        with self.lock:
            self.advance()
            return self._q_seg

    def test_time(self) -> float:
        with self.lock:
            self.advance()
            return self.t - self._t_test

    def step_time(self) -> float:
        with self.lock:
            self.advance()
            return self.t - self._t_seg

    # --- what a client does --------------------------------------------------------
    def start(self, program: Program) -> None:
        with self.lock:
            self.advance()
            self.test_id += 1
            self.records = []
            self.tests.append(self.records)
            self.program = program
            self._index = 0
            self._loop_done = {}
            self.cycle = 1
            self.alarm = ""
            self._t_test = self._t_seg = self.t
            self._q_seg = 0.0
            self._last_t = -math.inf
            self.status = "working"

    def set_output(self, segments: list[Segment]) -> None:
        """Direct control: switch the running test to ``segments`` from now on."""
        with self.lock:
            self.advance()
            if self.status != "working" or self.program is None:
                raise RuntimeError("no test is running on this channel")
            self._index = len(self.program.segments)
            self.program.segments.extend(segments)
            self._t_seg = self.t
            self._q_seg = 0.0
            self._last_t = -math.inf

    def stop(self, status: str = "stop") -> None:
        with self.lock:
            self.advance()
            if self.status in ("working", "pause"):
                self.status = status

    def pause(self) -> None:
        self.stop("pause")

    def resume(self) -> bool:
        with self.lock:
            self.advance()
            if self.status not in ("pause", "stop") or self.segment is None:
                return False
            self.status = "working"
            return True

    def raise_alarm(self, text: str = "over-voltage protection") -> bool:
        """A channel alarm: the instrument stops the test (output off), state protect."""
        with self.lock:
            self.advance()
            if self.status != "working":
                return False
            self.status = "protect"
            self.alarm = text
            return True

    # --- the physics ------------------------------------------------------------------
    def _rest_voltage(self) -> float:
        return self._e_last

    def advance(self) -> None:
        """Run the channel from its last time to the emulator clock's now."""
        with self.lock:
            now = self.clock.now()
            for _ in range(100000):
                if now - self.t <= 1e-9:
                    return
                if self.status != "working" or self.segment is None:
                    self._idle(now)
                    return
                if not self._run_piece(now):
                    return

    def _idle(self, now: float) -> None:
        ran = drive(self.sim, Rest(duration=now - self.t, sample_period=now - self.t), self._ctx)
        if len(ran.data):
            self._e_last = float(ran.data[-1]["E"])

    def _on_grid(self, t: float) -> bool:
        k = (t - self._t_seg) / self.record_period
        return abs(k - round(k)) < 1e-6

    def _run_piece(self, now: float) -> bool:
        """Advance toward ``now``: in bulk between record-grid points, in single
        pieces to and from an off-grid instant (a reading taken between records).
        Points on the grid are records, as is the point where a segment ends."""
        seg = self.segment
        assert seg is not None
        dt = self.record_period
        end = math.inf if seg.duration is None else self._t_seg + seg.duration
        limit = min(now, end)
        if self._on_grid(self.t):
            target = self._t_seg + math.floor((limit - self._t_seg) / dt + 1e-6) * dt
            period = dt
            if target <= self.t + 1e-9:
                target = limit
                period = target - self.t
        else:
            next_grid = self._t_seg + math.ceil((self.t - self._t_seg) / dt - 1e-6) * dt
            target = min(next_grid, limit)
            period = target - self.t
        span = target - self.t
        if span <= 1e-9:
            return False
        q_base = self._q_seg
        ran = drive(self.sim, self._step(seg, span, max(period, 1e-6)), self._ctx)
        reached_end = self.t >= end - 1e-9
        ended = ran.outcome.end_reason in _CUTOFFS or reached_end
        for n, row in enumerate(ran.data):
            final = n == len(ran.data) - 1
            self._take(seg, row, q_base, record=self._on_grid(float(row["t"])) or (final and ended))
        if ended:
            self._next_segment()
        elif ran.outcome.end_reason.is_fault:
            self.status = "protect"
            self.alarm = ran.outcome.message or ran.outcome.end_reason.value
        return True

    def _step(self, seg: Segment, span: float, dt: float) -> Step:
        if seg.mode == "rest":
            return Rest(duration=span, sample_period=dt)
        if seg.mode == "cc":
            lim = Limits(max_time=span, voltage_above=seg.v_above, voltage_below=seg.v_below)
            return ConstantCurrent(current=seg.current, limits=lim, sample_period=dt)
        lim = Limits(max_time=span, current_below=seg.i_below)
        return ConstantVoltage(voltage=seg.voltage, limits=lim, sample_period=dt)

    def _take(self, seg: Segment, row: np.void, q_base: float, *, record: bool) -> None:
        t = float(row["t"])
        q = float(row["Q"]) if math.isfinite(float(row["Q"])) else 0.0
        e, i = float(row["E"]), float(row["I"])
        self._last = (e, i)
        self._e_last = e
        self._q_seg = q_base + q  # a piece's Q restarts at 0
        if not record or t <= self._last_t + 1e-9:
            return  # not a record, or the first point of a piece repeating the last one
        self._last_t = t
        self.records.append(
            Record(
                seq=len(self.records) + 1,
                test_time=t - self._t_test,
                step_time=t - self._t_seg,
                abs_time=t,
                voltage=e,
                current=i,
                capacity=self._q_seg,
                step_id=seg.step_id,
                step_type=seg.step_type,
                cycle=self.cycle,
            )
        )

    def _next_segment(self) -> None:
        assert self.program is not None
        i = self._index
        loop = self.program.loops.get(i)
        nxt = i + 1
        if loop is not None:
            start, count = loop
            done = self._loop_done.get(i, 0) + 1
            if done < count:
                self._loop_done[i] = done
                nxt = start
                self.cycle += 1
            else:
                self._loop_done[i] = 0
        before = self.program.segments[i].step_id
        self._index = nxt
        same_step = nxt > i and nxt < len(self.program.segments) and self.program.segments[nxt].step_id == before
        if not same_step:  # a CC-CV's CV phase goes on with the step's time, grid and capacity
            self._t_seg = self.t
            self._q_seg = 0.0
        if self._index >= len(self.program.segments):
            self.status = "finish"
