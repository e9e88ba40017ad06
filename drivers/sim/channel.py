"""SimChannel: the physics simulator behind the Channel interface (``--instrument sim``).

Steps run in virtual (or scaled) time, in vectorised chunks of samples: the
segment for the step's control law computes a chunk noise-free, measurement
noise is added, the step's limits are checked (see ``acquisition``), the
clock is advanced with ``sleep_until`` and the block is yielded. The same code
runs on a VirtualClock (as fast as numpy goes) and a ScaledClock (chunks sized
so a block, empty if no sample fell due, is yielded at least every
``ctx.max_block_wall`` seconds of wall time).

The cell's state is deterministic; only the measurement noise is random, from
a generator seeded by (seed, step number), so runs repeat exactly.

Potentials "vs OCV" (ConstantVoltage.vs_ocv, Impedance.bias_vs_ocv) refer to
the open-circuit voltage the instrument last measured with the cell at rest
(end of a Rest, SetTemperature or unbiased EIS), as a potentiostat running a
sequence does: an EIS "under ΔV" right after a ΔV hold therefore continues
the same hold. After a galvanostatic step or a sweep the reference is the
present open-circuit voltage of the cell.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

import labctl
from drivers.sim import acquisition as acq
from drivers.sim import impedance as zel
from drivers.sim.cells import LithiumCell, make_cell
from drivers.sim.chamber import Chamber
from drivers.sim.params import CELL_TYPES, SimParams
from drivers.sim.segments import (
    Bench,
    CurrentSegment,
    ImplicitSegment,
    OxidationSegment,
    PolarizationSegment,
    Segment,
    Trace,
)
from labctl.channel import (
    Capabilities,
    Channel,
    InstrumentInfo,
    StepContext,
    StepOutcome,
    UnsupportedStep,
)
from labctl.clock import Clock
from labctl.limits import LimitWatcher
from labctl.steps import (
    SAMPLE_DTYPE,
    SPECTRUM_DTYPE,
    STEP_TYPES,
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Limits,
    Rest,
    SetTemperature,
    Step,
    VoltageSweep,
)

#: Samples per chunk on a virtual clock when no segment says otherwise.
CHUNK_SAMPLES = 2048
#: A step with no end in sight stops after this much cell time (a protocol bug, not a hang).
MAX_STEP_S = 30 * 86400.0


@dataclass
class _Hold:
    """A potentiostatic segment the cell is (or was last) held on."""

    e_applied: float
    segment: Segment


@dataclass
class _Plan:
    """How one DC step runs: its segment, where in it to start, how it ends by itself."""

    segment: Segment
    offset: float = 0.0
    natural_end: float = math.inf
    natural_reason: EndReason = EndReason.COMPLETED
    potentiostatic: bool = False


class SimChannel(Channel):
    """A simulated potentiostat channel with a physics-model cell and a temperature chamber."""

    name = "sim"

    def __init__(self, params: SimParams, cell_type: str, clock: Clock) -> None:
        kind = params.cell if cell_type == "auto" else cell_type
        if kind not in CELL_TYPES:
            raise ValueError(
                f"sim cell type {cell_type!r} must be one of {', '.join(CELL_TYPES)} "
                "('auto' must be resolved by the protocol first)"
            )
        self.params = params
        self.cell_type = kind
        self._clock = clock
        self.capabilities = Capabilities(
            step_kinds=frozenset(STEP_TYPES),
            max_current=1.0,
            voltage_range=(-10.0, 10.0),
            frequency_range=(1e-5, 1e7),
            impedance_modes=frozenset({"potentiostatic", "galvanostatic"}),
        )
        self._lock = threading.RLock()
        now = clock.now()
        cell = make_cell(params, kind)
        chamber = Chamber.at(params.temperature, params.tau_chamber, params.tau_cell, now)
        self.bench = Bench(cell, cell.initial_state(now, params.temperature), chamber)
        #: True while the instrument drives the cell; False at open circuit and in the safe state.
        self.output_on = False
        #: off | open | current | potential: what the cell is connected to between steps.
        self.mode = "off"
        #: Truth of notable events (polarisations, nucleation dips, shorts, ESW calibrations).
        self.events: list[dict[str, Any]] = []
        self._steps = 0
        self._active: _Plan | None = None
        self._hold: _Hold | None = None
        self._ocv_ref: float | None = cell.ocv(self.bench.state)

    # --- identity -------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self._clock

    def identify(self) -> InstrumentInfo:
        return InstrumentInfo(
            driver="sim",
            model="labctl physics simulator",
            serial=f"SIM-{self.params.seed}",
            firmware=labctl.__version__,
            extra={"cell_type": self.cell_type},
        )

    def cell_info(self) -> dict[str, Any]:
        """Geometry and the present open-circuit voltage (protocols check
        e.g. an LSV's upper limit against it before anything runs)."""
        with self._lock:
            ocv = float(self.bench.cell.ocv(self.bench.state))
        return {**self.params.cell_info(self.cell_type), "ocv_V": ocv}

    def truth(self) -> dict[str, Any]:
        """Everything the simulator knows about its cell (for tests and the run file)."""
        with self._lock:
            state = self.bench.state
            chamber = self.bench.chamber
            return {
                "params": self.params.as_dict(),
                "cell_type": self.cell_type,
                "t_abs": state.t_abs,
                "model": self.bench.cell.truth(state),
                "chamber": {
                    "setpoint": chamber.setpoint,
                    "air": float(chamber.air(state.t_abs)),
                    "cell": float(chamber.cell(state.t_abs)),
                },
                "events": [dict(e) for e in self.events],
            }

    # --- safety --------------------------------------------------------------------
    def hold(self) -> None:
        """Pause: keep the potential of a potentiostatic step, otherwise open circuit."""
        with self._lock:
            active = self._active
            if active is not None and active.potentiostatic and self._hold is None:
                # A sweep: freeze it at the potential it has reached, same physics.
                seg = active.segment
                e_now = float(seg.eval(np.array([seg.tau_c])).E[0])
                frozen: Segment
                if isinstance(seg, OxidationSegment):
                    frozen = OxidationSegment(self.bench, e_now, 0.0)
                else:
                    frozen = ImplicitSegment(self.bench, lambda tau: e_now)
                self._hold = _Hold(e_now, frozen)
            if active is not None and active.potentiostatic and self._hold is not None:
                self.mode = "potential"
                self.output_on = True
            else:
                self._hold = None
                self.mode = "open"
                self.output_on = False
            self._active = None

    def safe_state(self) -> None:
        """Output off. Idempotent, never raises."""
        with self._lock:
            self._hold = None
            self._active = None
            self.output_on = False
            self.mode = "off"

    # --- stepping ----------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        refusal = self.capabilities.refusal(step)
        if refusal is not None:
            raise UnsupportedStep(refusal)
        return (yield from self._run(step, ctx))

    def _run(self, step: Step, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        with self._lock:
            self._steps += 1
            self._sync(ctx.clock.now())
            self.output_on = step.powered
        if isinstance(step, Impedance):
            outcome = yield from self._run_impedance(step, ctx)
        else:
            plan = self._plan(step)
            self._active = plan
            outcome = yield from self._loop(step, ctx, plan)
        self._after(step)
        self._active = None
        return outcome

    def _sync(self, now: float) -> None:
        """Bring the cell to ``now``: time that passed between steps or during a hold."""
        dt = now - self.bench.state.t_abs
        if dt <= 1e-9:
            return
        if self.mode == "potential" and self._hold is not None:
            seg = self._hold.segment
            seg.commit(now - seg.t0)
        else:
            CurrentSegment(self.bench, 0.0).commit(dt)

    def _after(self, step: Step) -> None:
        """What the cell is left connected to, and the OCV reference for later steps."""
        cell, state = self.bench.cell, self.bench.state
        if isinstance(step, (Rest, SetTemperature)):
            self._ocv_ref = cell.ocv(state)
        elif isinstance(step, (ConstantCurrent, VoltageSweep)):
            self._ocv_ref = None
        elif isinstance(step, Impedance) and self._hold is None and step.bias == 0.0:
            self._ocv_ref = cell.ocv(state)
        if not step.powered:
            self.output_on = False

    def _reference(self) -> float:
        """The OCV that 'vs OCV' potentials refer to."""
        if self._ocv_ref is not None:
            return self._ocv_ref
        return self.bench.cell.ocv(self.bench.state)

    def _potential_segment(self, e_applied: float) -> tuple[Segment, float]:
        """Hold at ``e_applied``: continue the present hold when it is the same potential."""
        held = self._hold
        if held is not None and self.mode == "potential" and abs(held.e_applied - e_applied) <= 1e-9:
            return held.segment, held.segment.tau_c
        cell, state = self.bench.cell, self.bench.state
        seg: Segment
        if isinstance(cell, LithiumCell) and not cell.host and state.t_short is None:
            seg = PolarizationSegment(self.bench, e_applied)
            self.events.append({"event": "polarization", "step": self._steps, **seg.truth()["polarization"]})
        elif isinstance(cell, LithiumCell) and cell.is_bare(state):
            seg = OxidationSegment(self.bench, e_applied, 0.0)
        else:
            seg = ImplicitSegment(self.bench, lambda tau: e_applied)
        self._hold = _Hold(e_applied, seg)
        return seg, 0.0

    def _plan(self, step: Step) -> _Plan:
        cell, state = self.bench.cell, self.bench.state
        if isinstance(step, ConstantVoltage):
            e_app = self._reference() + step.voltage if step.vs_ocv else step.voltage
            seg, offset = self._potential_segment(e_app)
            self.mode = "potential"
            return _Plan(seg, offset, potentiostatic=True)
        self._hold = None
        if isinstance(step, Rest):
            self.mode = "open"
            return _Plan(CurrentSegment(self.bench, 0.0), natural_end=step.duration)
        if isinstance(step, SetTemperature):
            self.mode = "open"
            self.bench.chamber.set(step.celsius, state.t_abs)
            return _Plan(CurrentSegment(self.bench, 0.0), natural_end=step.timeout, natural_reason=EndReason.TIMEOUT)
        if isinstance(step, ConstantCurrent):
            self.mode = "current"
            self._note_nucleation(step.current)
            return _Plan(CurrentSegment(self.bench, step.current))
        if isinstance(step, VoltageSweep):
            self.mode = "potential"
            e0 = cell.ocv(state) if step.start == "ocv" else float(step.start)
            span = step.stop - e0
            rate = math.copysign(step.rate, span)
            sweep: Segment
            if isinstance(cell, LithiumCell) and cell.is_bare(state) and span >= 0:
                sweep = OxidationSegment(self.bench, e0, rate)
                self.events.append({"event": "oxidation", "step": self._steps, **sweep.truth()["oxidation"]})
            else:
                sweep = ImplicitSegment(self.bench, lambda tau: e0 + rate * tau)
            return _Plan(sweep, natural_end=abs(span) / step.rate, potentiostatic=True)
        raise UnsupportedStep(f"{step.kind} steps are not supported by the simulator")

    def _note_nucleation(self, current: float) -> None:
        """Record the truth of a nucleation dip (plating onto a bare host)."""
        cell, state = self.bench.cell, self.bench.state
        if not (isinstance(cell, LithiumCell) and cell.is_bare(state) and current < 0):
            return
        # As the literature reads it (Pei et al., Nano Lett. 17 (2017) 1132): the dip is the
        # extreme of the noise-free curve, the growth plateau the first minimum of |V| after
        # it (where the relaxation ends), the overpotential dip minus plateau. nuc_eta is the
        # amplitude of the nucleation term; the observable is smaller when the salt's
        # concentration transient builds while the dip relaxes (slow diffusion, cold cells).
        q_nuc = self.params.nuc_charge * 3.6 * self.params.area
        dt = np.linspace(0.0, 20.0 * q_nuc / abs(current), 8001)
        curve = cell.cc_voltage(state, current, dt, np.full(dt.shape, state.temp))
        mag = -curve
        k = int(np.argmax(mag[: dt.size // 20 + 1]))
        rising = np.flatnonzero(np.diff(mag[k:]) > 0)
        m = k + (int(rising[0]) if rising.size else mag.size - 1 - k)
        self.events.append(
            {
                "event": "nucleation",
                "step": self._steps,
                "t_abs": state.t_abs,
                "current": current,
                "dip": float(curve[k]),
                "dip_time": float(dt[k]),
                "plateau": float(curve[m]),
                "plateau_time": float(dt[m]),
                "nucleation_overpotential": float(curve[k] - curve[m]),
                "nuc_eta": self.params.nuc_eta,
            }
        )

    # --- the DC loop ---------------------------------------------------------------------
    def _span(self, ctx: StepContext, period: float, limits: Limits | None = None, seg: Segment | None = None) -> float:
        """Cell seconds per chunk: many samples on a virtual clock, ≤ max_block_wall of wall time otherwise.

        A steadiness limit is judged at the end of each block, so its chunks are
        kept to 1/20 of the steadiness window: the step then ends at most that
        late, whatever the clock.
        """
        span = period * (seg.chunk_samples if seg is not None else CHUNK_SAMPLES)
        if limits is not None and limits.steady_slope is not None:
            span = min(span, max(limits.steady_window / 20.0, period))
        if ctx.clock.virtual:
            return span
        speed = ctx.clock.speed
        return max(min(span, 0.8 * ctx.max_block_wall * speed), 1e-6)

    def _loop(self, step: Step, ctx: StepContext, plan: _Plan) -> Generator[np.ndarray, None, StepOutcome]:
        seg, offset = plan.segment, plan.offset
        limits: Limits = step.effective_limits()
        extra = acq.stability_check(step) if isinstance(step, SetTemperature) else None
        t_run0 = ctx.run_time()
        t_abs0 = self.bench.state.t_abs
        period = step.sample_period
        watcher = LimitWatcher(limits, t_run0)
        end_tau = min(plan.natural_end, limits.max_time if limits.max_time is not None else math.inf, MAX_STEP_S)
        rng = self._rng()
        q_off = float(seg.eval(np.array([offset])).Q[0]) if offset > 0 else 0.0
        k_next, tau_done = 0, 0.0
        prev: Trace | None = None

        while True:
            if ctx.interrupt.is_set():
                return StepOutcome(EndReason.ABORTED, "interrupted")
            horizon = min(tau_done + self._span(ctx, period, limits, seg), end_tau)
            taus = np.arange(k_next, math.floor(horizon / period + 1e-9) + 1, dtype=float) * period
            taus = taus[(taus <= end_tau) & (taus >= tau_done - 1e-12)]
            if horizon >= end_tau and (taus.size == 0 or taus[-1] < end_tau * (1 - 1e-12)):
                taus = np.append(taus, end_tau)
            if taus.size == 0:  # no sample due before the horizon (slow real time): wait, hand back
                if not ctx.clock.sleep_until(t_abs0 + horizon, cancel=ctx.interrupt):
                    self._commit_to_now(ctx, seg, offset, t_abs0, tau_done)
                    return StepOutcome(EndReason.ABORTED, "interrupted")
                seg.commit(offset + horizon)
                tau_done = horizon
                yield np.empty(0, dtype=SAMPLE_DTYPE)
                continue

            clean = seg.eval(offset + taus)
            clean.Q = clean.Q - q_off
            block = acq.measure(t_run0 + taus, clean, rng, self.params, step.powered)
            end = acq.first_end(watcher, limits, block, clean, taus, extra)
            reason: EndReason | None = None
            tau_end = float(taus[-1])
            if end is not None:
                row, reason, refine = end
                block = block[: row + 1].copy()
                tau_end = float(taus[row])
                lo_tau = float(taus[row - 1]) if row > 0 else tau_done
                lo_tr = acq.row_of(clean, row - 1) if row > 0 else prev
                if refine and lo_tr is not None and tau_end > lo_tau:
                    tau_end, final = acq.crossing(
                        seg, offset, q_off, reason, limits, lo_tau, lo_tr, tau_end, acq.row_of(clean, row)
                    )
                    acq.set_row(block, row, t_run0 + tau_end, final)
            if not ctx.clock.sleep_until(t_abs0 + tau_end, cancel=ctx.interrupt):
                now_tau = self._commit_to_now(ctx, seg, offset, t_abs0, tau_done)
                keep = block[block["t"] <= t_run0 + now_tau + 1e-12]
                if keep.size:
                    yield keep
                return StepOutcome(EndReason.ABORTED, "interrupted")
            short_before = self._short_time()
            seg.commit(offset + tau_end)
            self._note_short(short_before, ctx)
            tau_done = tau_end
            k_next = math.floor(tau_end / period + 1e-9) + 1
            prev = acq.row_of(clean, len(block) - 1)
            yield block
            if reason is not None:
                if reason is EndReason.TIME and tau_end >= plan.natural_end * (1 - 1e-12):
                    reason = plan.natural_reason
                return StepOutcome(reason, f"{reason.value} after {tau_end:.6g} s")
            if tau_end >= end_tau * (1 - 1e-12):
                if tau_end >= plan.natural_end * (1 - 1e-12):
                    return StepOutcome(plan.natural_reason, f"{plan.natural_reason.value} after {tau_end:.6g} s")
                if tau_end >= MAX_STEP_S * (1 - 1e-12):
                    return StepOutcome(EndReason.TIMEOUT, "no limit ended the step within the simulator horizon")
                return StepOutcome(EndReason.TIME, f"time after {tau_end:.6g} s")

    def _commit_to_now(self, ctx: StepContext, seg: Segment, offset: float, t_abs0: float, tau_done: float) -> float:
        """After an interrupted wait the cell went on until now: bring the model there."""
        now_tau = max(ctx.clock.now() - t_abs0, tau_done)
        seg.commit(offset + now_tau)
        return now_tau

    # --- impedance --------------------------------------------------------------------------
    def _impedance_dc(self, step: Impedance) -> tuple[Segment, float]:
        """The DC level the sine rides on: rest, a potential hold or a bias current."""
        if step.mode == "galvanostatic":
            self._hold = None
            self.mode = "current"
            return CurrentSegment(self.bench, step.bias), 0.0
        if step.bias == 0.0 and step.bias_vs_ocv:
            self._hold = None
            self.mode = "potential"
            return CurrentSegment(self.bench, 0.0), 0.0
        e_dc = self._reference() + step.bias if step.bias_vs_ocv else step.bias
        seg, offset = self._potential_segment(e_dc)
        self.mode = "potential"
        return seg, offset

    def _run_impedance(self, step: Impedance, ctx: StepContext) -> Generator[np.ndarray, None, StepOutcome]:
        cell, p = self.bench.cell, self.params
        dc, offset = self._impedance_dc(step)
        self._active = _Plan(dc, offset, potentiostatic=self._hold is not None)
        t_run0 = ctx.run_time()
        t_abs0 = self.bench.state.t_abs
        rng = self._rng()
        max_time = step.limits.max_time
        rows: list[np.ndarray] = []
        tau = 0.0

        def spectrum() -> np.ndarray:
            return np.concatenate(rows) if rows else np.empty(0, dtype=SPECTRUM_DTYPE)

        for freq in step.frequencies():
            tau_end = tau + zel.point_duration(float(freq))
            waited = tau
            while waited < tau_end:
                if ctx.interrupt.is_set():
                    return StepOutcome(EndReason.ABORTED, "interrupted", spectrum())
                target = tau_end if ctx.clock.virtual else min(tau_end, waited + self._span(ctx, 1.0))
                if not ctx.clock.sleep_until(t_abs0 + target, cancel=ctx.interrupt):
                    self._commit_to_now(ctx, dc, offset, t_abs0, waited)
                    return StepOutcome(EndReason.ABORTED, "interrupted", spectrum())
                dc.commit(offset + target)
                waited = target
                if waited < tau_end:
                    yield np.empty(0, dtype=SPECTRUM_DTYPE)
            level = dc.eval(np.array([offset + tau_end]))
            celsius = float(self.bench.chamber.cell(t_abs0 + 0.5 * (tau + tau_end)))
            z = zel.with_noise(cell.impedance(self.bench.state, np.array([freq]), celsius), p.noise, rng)
            row = acq.spectrum_row(
                freq=float(freq),
                z_re=float(z.real[0]),
                z_im=float(z.imag[0]),
                E_dc=float(level.E[0]),
                I_dc=float(level.I[0]),
                t=t_run0 + tau_end,
                T=celsius + p.noise_t * float(rng.standard_normal()),
            )
            rows.append(row)
            yield row
            tau = tau_end
            if max_time is not None and tau >= max_time * (1 - 1e-12):
                return StepOutcome(EndReason.TIME, "time", spectrum())
        return StepOutcome(EndReason.COMPLETED, f"{len(rows)} frequencies", spectrum())

    # --- bookkeeping ---------------------------------------------------------------------
    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.params.seed, self._steps])

    def _short_time(self) -> float | None:
        return getattr(self.bench.state, "t_short", None)

    def _note_short(self, before: float | None, ctx: StepContext) -> None:
        after = self._short_time()
        if before is None and after is not None:
            self.events.append(
                {
                    "event": "short",
                    "step": self._steps,
                    "kind": self.params.short_kind,
                    "t_abs": after,
                    "t_run": after - ctx.t_origin,
                    "current_density_ma_cm2": self.bench.state.short_j * 1e3,
                }
            )
