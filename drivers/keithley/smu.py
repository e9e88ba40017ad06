"""Keithley 2450 / 2400 SourceMeters as labctl channels.

An SMU has no on-device step sequencer we can trust with a cell, so every step
is a host-timed loop (DESIGN §1): the driver applies the source, reads E and I
on the step's sample grid (by the clock it was given), checks the step's
limits on every reading with ``labctl.limits.LimitWatcher`` (the software
cutoffs), and relies on the instrument's limit as the hard clamp should the
host stall between readings.

What each step does on the instrument:

* ``Rest``: a 0 A current source with the output on. A current source at zero
  with the voltmeter across the cell is an open circuit that can still be
  measured (>10 GΩ input); switching the output off would open the relay (the
  HIMP off-state set at open) and leave nothing to record. The voltage limit is
  the ``compliance_voltage`` option.
* ``ConstantCurrent``: current source; voltage limit = the largest of the
  step's voltage cutoffs and the cell's present voltage, + ``voltage_margin``
  (never above ``compliance_voltage``), so the clamp sits just outside every
  voltage the step may legitimately reach. When the step ends by its
  limits the current is set to 0 A at once (the cell stops being driven
  while the protocol decides what comes next).
* ``ConstantVoltage``: voltage source (``vs_ocv``: relative to the OCV measured
  at the end of the last Rest, or measured now at 0 A); current limit =
  ``compliance_current`` (or the step's ``current_above`` × ``current_margin``).
  The potential is held after the step, as a potentiostat does.
* ``VoltageSweep``: a staircase, one stair of ``rate × sample_period`` volts per
  sample period, read at the end of each stair; stairs missed because the
  host fell behind are skipped so the sweep keeps its rate.

A reading with the instrument's limit bit set (2450 source status bit 5, 2400
status word bit 3) ends the step with ``EndReason.COMPLIANCE`` unless a
software limit is met by the same reading (the clamp then only backed the
cutoff up), and the output is switched off. Every reading also returns the
error-queue count, so an instrument error code ends the run at once
(``InstrumentErrorCode``). VISA timeouts, garbled replies and a closed
connection raise ``InstrumentTimeout``, ``GarbledReply`` and ``ConnectionLost``.

``safe_state`` switches the output off with a short timeout and checks it;
when the connection is broken it reconnects once to do so (a real SMU keeps
its output on when the LAN cable is pulled).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.keithley.acquisition import Acquisition
from drivers.keithley.instruments import Point, SmuDialect, open_dialect
from drivers.keithley.options import MIN_VOLTAGE_LIMIT, TERMINATORS, SmuOptions
from drivers.keithley.timebase import Timebase
from drivers.kit.pacing import wait_until
from drivers.kit.visa import enable_nodelay, typed_errors
from labctl.channel import (
    Capabilities,
    Channel,
    InstrumentError,
    InstrumentErrorCode,
    InstrumentInfo,
    StepContext,
    StepOutcome,
    StepRun,
    UnsupportedStep,
)
from labctl.clock import Clock, ScaledClock
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, Rest, Step, VoltageSweep

STEP_KINDS = frozenset({"Rest", "ConstantCurrent", "ConstantVoltage", "VoltageSweep"})
#: Errors drained from the queue at most when one is reported.
MAX_ERRORS = 20


@dataclass(frozen=True)
class _Program:
    """How one step is sourced: function, level(s), limit, and how it ends by itself."""

    function: str  # "CURR" or "VOLT"
    levels: tuple[float, ...]  # one level, or the stairs of a sweep
    limit: float  # the hardware clamp (V when sourcing current, A when sourcing voltage)
    natural_end: float = math.inf  # s after the start
    natural_reason: EndReason = EndReason.COMPLETED

    @property
    def sweep(self) -> bool:
        return len(self.levels) > 1


class KeithleySmuChannel(Channel):
    """One SourceMeter (2450 or 2400) driving one cell."""

    def __init__(
        self,
        driver: str,
        resource: str,
        options: SmuOptions,
        clock: Clock,
        *,
        connect: Callable[[float], SmuDialect] | None = None,
    ) -> None:
        """``connect(timeout_ms)`` opens the instrument (default: pymeasure over VISA at
        ``resource``); a test passes one that returns a dialect on pymeasure's
        ``expected_protocol`` adapter, so the host loop's bytes are pinned exactly."""
        self.driver = driver
        self._open_dialect = connect or self._open_visa
        self.resource = resource
        self.options = options
        self.name = driver
        self._clock = clock
        self.capabilities = Capabilities(
            step_kinds=STEP_KINDS,
            max_current=options.max_current,
            voltage_range=(-options.compliance_voltage, options.compliance_voltage),
            frequency_range=(0.0, 0.0),
            impedance_modes=frozenset(),
        )
        self._lock = threading.RLock()
        self._dev: SmuDialect | None = None
        self._configured = False
        self._info: InstrumentInfo | None = None
        self._function: str | None = None  # source function programmed ("CURR"/"VOLT")
        self._output = False
        self._holding_potential = False
        self._ocv_ref: float | None = None
        self._last_e: float | None = None  # last voltage read in the present step
        self._e_measured: float | None = None  # last voltage read at all
        self._timebase = Timebase()

    # --- connection -------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self._clock

    def _resource_handle(self) -> Any:
        dev = self._dev
        return None if dev is None else getattr(dev.instrument.adapter, "connection", None)

    @contextmanager
    def _io(self, what: str, timeout_ms: float | None = None) -> Iterator[SmuDialect]:
        """The transport, locked, with VISA failures as typed errors."""
        with self._lock:
            dev = self._ensure_connected()
            handle = self._resource_handle()
            previous = None
            if timeout_ms is not None and handle is not None:
                previous, handle.timeout = handle.timeout, timeout_ms
            try:
                with typed_errors(what, handle, timeout_ms or self.options.timeout_ms):
                    yield dev
            finally:
                if previous is not None and handle is not None and self._resource_handle() is handle:
                    with contextlib.suppress(Exception):  # the session may be gone: nothing to restore
                        handle.timeout = previous

    def _connect(self, timeout_ms: float) -> SmuDialect:
        with typed_errors(f"connecting to {self.resource}", None, timeout_ms):
            return self._open_dialect(timeout_ms)

    def _open_visa(self, timeout_ms: float) -> SmuDialect:
        serial: dict[str, Any] = {}
        termination = "\n"
        if self.resource.upper().startswith("ASRL"):
            termination = TERMINATORS[self.options.terminator]
            serial = {"baud_rate": int(self.options.baudrate)}
        dev = open_dialect(
            self.driver,
            self.resource,
            visa_library=self.options.visa_library,
            read_termination=termination,
            write_termination=termination,
            timeout=timeout_ms,
            **serial,
        )
        if "SOCKET" in self.resource.upper():
            enable_nodelay(dev.instrument.adapter.connection)
        return dev

    def _ensure_connected(self) -> SmuDialect:
        if self._dev is None:
            self._dev = self._connect(self.options.timeout_ms)
            self._configured = False
        return self._dev

    def _disconnect(self) -> None:
        dev, self._dev = self._dev, None
        self._configured = False
        if dev is not None:
            with contextlib.suppress(Exception):  # a broken session may not close cleanly; dropped anyway
                dev.close()

    def open(self) -> None:
        """Connect and identify. Nothing is changed on the instrument yet (``labctl
        instruments identify`` opens too): the reset to a known state comes with the
        first step."""
        with self._io("identifying the SMU") as dev:
            self._info = self._identify(dev)

    def _configure(self) -> None:
        """Known state before the first step: reset, relay-open off state, output off."""
        with self._io("configuring the SMU") as dev:
            dev.configure(reset=self.options.reset, nplc=self.options.nplc)
            dev.set_output(False)
            self._output = False
            self._function = None
            self._holding_potential = False
            self._raise_queued_errors(dev, "configuring the SMU")
            self._configured = True

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def identify(self) -> InstrumentInfo:
        if self._info is None:
            with self._io("*IDN?") as dev:
                self._info = self._identify(dev)
        return self._info

    def _identify(self, dev: SmuDialect) -> InstrumentInfo:
        ident = dev.identity()
        opts = dataclasses.asdict(self.options)
        return InstrumentInfo(
            driver=self.driver,
            model=f"{ident.vendor.title()} {ident.model}",
            serial=ident.serial,
            firmware=ident.firmware,
            resource=self.resource,
            extra={"idn": ident.raw, "options": opts},
        )

    def _raise_queued_errors(self, dev: SmuDialect, what: str) -> None:
        errors = []
        for _ in range(MAX_ERRORS):
            code, message = dev.next_error()
            if code == 0:
                break
            errors.append((code, message))
        if errors:
            code, message = errors[0]
            more = (
                f" (+{len(errors) - 1} more: {'; '.join(f'{c} {m}' for c, m in errors[1:])})" if len(errors) > 1 else ""
            )
            raise InstrumentErrorCode(code, f"{message} while {what}{more}")

    # --- safety -----------------------------------------------------------------------
    def hold(self) -> None:
        """Pause: keep a held potential; otherwise 0 A (open circuit, still measurable)."""
        with self._lock:
            if self._dev is None or not self._output or self._holding_potential:
                return
            with self._io("holding the cell") as dev:
                commands = dev.start_commands("CURR", 0.0, None, switch=self._function != "CURR")
                dev.instrument.ask(";".join([*commands, "*OPC?"]))  # applied when this returns
                self._function = "CURR"

    def safe_state(self) -> None:
        """Output off, confirmed; reconnect once if the connection is broken. Never hangs."""
        timeout = self.options.safe_timeout_ms
        if not self._lock.acquire(timeout=self.options.timeout_ms / 1000.0 + 1.0):
            raise InstrumentError("safe state: the transport stayed busy; output state unknown")
        try:
            if self._dev is None and not self._output:
                return  # not connected, and no output this driver switched on
            try:
                self._output_off(timeout)
            except InstrumentError as first:
                self._disconnect()
                try:
                    self._output_off(timeout, connect_timeout=timeout)
                except InstrumentError as second:
                    raise InstrumentError(
                        f"could not switch the output off: {first}; after reconnecting: {second}"
                    ) from second
        finally:
            self._lock.release()

    def _output_off(self, timeout_ms: float, connect_timeout: float | None = None) -> None:
        if self._dev is None:
            self._dev = self._connect(connect_timeout or timeout_ms)
        with self._io("switching the output off", timeout_ms) as dev:
            dev.set_output(False)
            if dev.output():
                raise InstrumentError("the output is still on after OUTPUT OFF")
        self._output = False
        self._holding_potential = False

    # --- steps ---------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        refusal = self._refusal(step)
        if refusal is not None:
            raise UnsupportedStep(refusal)
        if not self._configured:
            self._configure()
        if isinstance(step, Rest):
            outcome = yield from self._execute(step, ctx, self._rest_program(step))
            if self._last_e is not None:
                self._ocv_ref = self._last_e
            return outcome
        if isinstance(step, ConstantCurrent):
            self._ocv_ref = None
            return (yield from self._execute(step, ctx, self._current_program(step)))
        if isinstance(step, ConstantVoltage):
            program = self._voltage_program(step, step.voltage + (self._ocv() if step.vs_ocv else 0.0))
            return (yield from self._execute(step, ctx, program))
        assert isinstance(step, VoltageSweep)
        self._ocv_ref = None
        start = self._ocv() if step.start == "ocv" else float(step.start)
        return (yield from self._execute(step, ctx, self._sweep_program(step, start)))

    def _refusal(self, step: Step) -> str | None:
        refusal = self.capabilities.refusal(step)
        if refusal is not None:
            return refusal
        window = self.options.compliance_voltage
        volts = []
        if isinstance(step, ConstantVoltage) and not step.vs_ocv:
            volts.append(step.voltage)
        if isinstance(step, VoltageSweep):
            volts.append(step.stop)
            if step.start != "ocv":
                volts.append(float(step.start))
        for v in volts:
            if abs(v) > window:
                return f"{v:g} V is outside the SMU's compliance window ±{window:g} V"
        return None

    # --- programs ----------------------------------------------------------------------
    def _voltage_clamp(self, limits: Limits) -> float:
        """The voltage limit of a current step: just outside every voltage the step may
        legitimately see, i.e. its cutoffs and the voltage the cell starts from (a
        discharge to 2.5 V starts at 4.1 V). Without a cutoff, or before anything was
        measured, it is the ``compliance_voltage`` option."""
        cutoffs = [abs(v) for v in (limits.voltage_above, limits.voltage_below) if v is not None]
        clamp = self.options.compliance_voltage
        if cutoffs and self._e_measured is not None:
            clamp = min(clamp, max(*cutoffs, abs(self._e_measured)) + self.options.voltage_margin)
        return max(clamp, MIN_VOLTAGE_LIMIT)

    def _current_clamp(self, limits: Limits) -> float:
        clamp = self.options.compliance_current
        if limits.current_above is not None:
            clamp = min(clamp, limits.current_above * self.options.current_margin)
        return clamp

    def _rest_program(self, step: Rest) -> _Program:
        return _Program("CURR", (0.0,), self.options.compliance_voltage, natural_end=step.duration)

    def _current_program(self, step: ConstantCurrent) -> _Program:
        return _Program("CURR", (step.current,), self._voltage_clamp(step.effective_limits()))

    def _voltage_program(self, step: Step, voltage: float) -> _Program:
        if abs(voltage) > self.options.compliance_voltage:
            raise UnsupportedStep(
                f"{voltage:g} V is outside the compliance window ±{self.options.compliance_voltage:g} V"
            )
        return _Program("VOLT", (voltage,), self._current_clamp(step.effective_limits()))

    def _sweep_program(self, step: VoltageSweep, start: float) -> _Program:
        stair = step.rate * step.sample_period
        span = step.stop - start
        n = max(math.ceil(abs(span) / stair - 1e-9), 1)
        levels = start + np.sign(span) * stair * np.arange(n + 1, dtype=float)
        levels[-1] = step.stop
        return _Program(
            "VOLT",
            tuple(float(v) for v in levels),
            self._current_clamp(step.effective_limits()),
            natural_end=(n + 1) * step.sample_period,
        )

    def _ocv(self) -> float:
        """The OCV 'vs OCV' refers to: the end of the last Rest, else measured now at 0 A."""
        if self._ocv_ref is not None:
            return self._ocv_ref
        point = self._start("CURR", 0.0, self.options.compliance_voltage)
        self._ocv_ref = point.E
        return point.E

    # --- instrument actions ------------------------------------------------------------------
    def _start(self, function: str, level: float, limit: float | None) -> Point:
        """Program the source and take the first reading in the same message as the level,
        so the step starts at the instant of that reading."""
        with self._io("starting the step") as dev:
            before = dev.start_commands(function, level, limit, switch=self._function != function)
            if not self._output:
                before.append(dev.output_command(True))
            point = self._read_with(dev, function, before=tuple(before))
            self._function = function
            self._output = True
            self._holding_potential = function == "VOLT"
        return point

    def _read(self, function: str, *, then: float | None = None) -> Point:
        """A reading; ``then``: a level set right after it in the same message (the next
        stair of a sweep, or 0 A at the predicted end of a current step), so it happens
        at the reading's instant."""
        with self._io(":READ?") as dev:
            after = () if then is None else (dev.level_command(function, then),)
            return self._read_with(dev, function, after=after)

    def _read_with(
        self, dev: SmuDialect, function: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()
    ) -> Point:
        a = self._clock.now()
        point = dev.read(function, before, after)
        self._timebase.observe(a, self._clock.now(), point.tau)
        self._e_measured = point.E
        if point.errors:
            self._raise_queued_errors(dev, "running the step")
        return point

    def _tripped(self, function: str) -> bool:
        try:
            with self._io("limit tripped?") as dev:
                return dev.tripped(function)
        except InstrumentError:
            return True  # the reading said so; the query is only for the message

    # --- the host-timed loop ---------------------------------------------------------------
    def _execute(self, step: Step, ctx: StepContext, program: _Program) -> StepRun:
        limits = step.effective_limits()
        period = step.sample_period
        current_step = program.function == "CURR" and program.levels[0] != 0.0
        point = self._start(program.function, program.levels[0], program.limit)
        # Samples carry the instrument's time stamps placed on the run clock (timebase):
        # the charge integrates over the stamps, so host latency does not enter it.
        t0 = t = self._run_time(point, ctx)
        acq = Acquisition(limits, t0, ctx.max_block_wall)
        stair, stopped = 0, ""
        try:
            while True:
                self._last_e = point.E
                elapsed = t - t0
                outcome = self._judge(point, acq.add(t, point.E, point.I, point.tau), elapsed, acq, program, stopped)
                if outcome is not None:
                    self._finish(program, outcome.end_reason, bool(stopped))
                    yield acq.block()
                    return outcome
                if acq.due():
                    yield acq.block()

                target, stop = self._next_target(t0, elapsed, period, limits, program, acq)
                stop = stop if current_step else ""
                waited = yield from wait_until(ctx, target, acq.block, acq.wall_left)
                if not waited:
                    pending = acq.block()
                    if len(pending):
                        yield pending
                    return StepOutcome(EndReason.ABORTED, "interrupted")
                then = 0.0 if stop else None
                if program.sweep:
                    due = min(math.floor((ctx.run_time() - t0) / period + 1e-9), len(program.levels) - 1)
                    if due > stair:  # read the end of this stair and start the next in one message
                        stair, then = due, program.levels[due]
                try:
                    point = self._read(program.function, then=then)
                except InstrumentError:
                    pending = acq.block()
                    if len(pending):
                        yield pending
                    raise
                stopped = stop
                t = self._run_time(point, ctx)
        except GeneratorExit:  # the engine stopped listening (pause, abort): stop driving at once
            if current_step and ctx.interrupt.is_set():
                with contextlib.suppress(InstrumentError):
                    self._stop_current()
            raise

    def _judge(
        self,
        point: Point,
        reason: EndReason | None,
        elapsed: float,
        acq: Acquisition,
        program: _Program,
        stopped: str,
    ) -> StepOutcome | None:
        """Whether this reading ends the step, and why. ``reason`` is what the software
        limits say; they win over the instrument's limit bit, which then only backed
        them up; a step that ends by its own length (a rest, a sweep) completes."""
        natural = elapsed >= program.natural_end * (1 - 1e-12)
        if reason is EndReason.TIME and natural:
            reason = program.natural_reason
        if reason is None and stopped:
            reason = self._confirm_stop(stopped, acq, acq.limits, program)
        if reason is None and point.limited:
            return StepOutcome(EndReason.COMPLIANCE, self._compliance_message(program))
        if reason is None and natural:
            reason = program.natural_reason
        if reason is None:
            return None
        also = f" (hardware limit {self._limit_text(program)} engaged too)" if point.limited else ""
        return StepOutcome(reason, f"{reason.value} after {elapsed:.6g} s{also}")

    def _run_time(self, point: Point, ctx: StepContext) -> float:
        """The run time of a reading: its stamp on the host clock (within its round trip,
        so successive samples stay in order)."""
        return point.tau + self._timebase.offset - ctx.t_origin

    @staticmethod
    def _next_target(
        t0: float, elapsed: float, period: float, limits: Limits, program: _Program, acq: Acquisition
    ) -> tuple[float, str]:
        """The run time of the next reading, and "time"/"charge" when it is the step's
        predicted end. A grid reading that would fall in the last half period before a
        predicted end is merged into it, so a late reading cannot pass the limit
        unannounced (the end is then stopped in the reading's own message)."""
        grid = t0 + (math.floor(elapsed / period + 1e-9) + 1) * period
        ends = [(acq.charge_eta(), "charge")]
        if limits.max_time is not None:
            ends.append((t0 + limits.max_time, "time"))
        end, kind = min(ends)
        natural = t0 + program.natural_end
        if natural < min(grid, end):
            return natural, ""
        if end <= grid + 0.5 * period:
            return end, kind
        return grid, ""

    def _confirm_stop(self, stopped: str, acq: Acquisition, limits: Limits, program: _Program) -> EndReason | None:
        """The current was stopped in the message of a reading the host scheduled as the
        step's end: the end stands (the time was up by the host clock; the charge is
        there but for what noise in the integrated current leaves), or the source resumes."""
        if stopped == "time":
            return EndReason.TIME
        if limits.max_charge is not None and abs(acq.charge) >= limits.max_charge * (1 - 1e-3):
            return EndReason.CHARGE
        self._write_level(program.function, program.levels[0])
        return None

    def _finish(self, program: _Program, reason: EndReason, stopped: bool) -> None:
        """Leave the cell safe after the step: output off after a clamp, 0 A after a current step."""
        if reason is EndReason.COMPLIANCE:
            with self._io("switching the output off after a compliance trip") as dev:
                dev.set_output(False)
            self._output = False
            self._holding_potential = False
        elif program.function == "CURR" and program.levels[0] != 0.0 and not stopped:
            self._stop_current()

    def _stop_current(self) -> None:
        """0 A now (the output stays on: an open circuit that is still measured)."""
        with self._io("stopping the current") as dev:  # *OPC?: applied when this returns
            dev.instrument.ask(f"{dev.level_command('CURR', 0.0)};*OPC?")

    def _write_level(self, function: str, level: float) -> None:
        with self._io("setting the source level") as dev:
            dev.instrument.write(dev.level_command(function, level))

    def _limit_text(self, program: _Program) -> str:
        return f"±{program.limit:g} V" if program.function == "CURR" else f"±{program.limit:g} A"

    def _compliance_message(self, program: _Program) -> str:
        tripped = self._tripped(program.function)
        what = "voltage limit" if program.function == "CURR" else "current limit"
        return (
            f"hardware compliance: the {what} {self._limit_text(program)} clamped the source "
            f"(limit tripped query: {int(tripped)}); output switched off"
        )


def _clock_for(options: SmuOptions, clock: Clock) -> Clock:
    return ScaledClock(options.clock_speed) if options.clock_speed is not None else clock


def create_2450(resource: str, options: Mapping[str, Any] | None, clock: Clock) -> KeithleySmuChannel:
    """A Keithley 2450 at ``resource`` (e.g. ``TCPIP::192.168.1.50::5025::SOCKET``, ``USB0::0x05E6::0x2450::…``)."""
    opts = SmuOptions.parse(options)
    return KeithleySmuChannel("keithley2450", resource, opts, _clock_for(opts, clock))


def create_2400(resource: str, options: Mapping[str, Any] | None, clock: Clock) -> KeithleySmuChannel:
    """A Keithley 2400 at ``resource`` (e.g. ``GPIB0::24::INSTR``, an emulator's ``TCPIP::…::SOCKET``)."""
    opts = SmuOptions.parse(options)
    return KeithleySmuChannel("keithley2400", resource, opts, _clock_for(opts, clock))
