"""PalmSens EmStat4 / Nexus / EmStat Pico driver: every step as a MethodSCRIPT.

Each step is compiled to one script (``drivers.palmsens.script``), sent with
``e`` and run on the instrument, with its cutoffs enforced on the instrument;
the host streams and decodes the ``P`` packets as they arrive
(``drivers.palmsens.encoding``), yields them as sample blocks, checks what the
instrument cannot (``labctl.limits.LimitWatcher``) and aborts with ``Z`` when
a host-side limit is met, the engine interrupts, or the instrument flags an
overload. Protocol references: MethodSCRIPT manual v1.8, EmStat4
communication protocol v1.3, EmStat Pico communication protocol v1.6.

Failures are typed (``labctl.channel``): no reply -> InstrumentTimeout, a line
that is not MethodSCRIPT output -> GarbledReply, ``!XXXX`` -> InstrumentErrorCode,
the port going away -> ConnectionLost. ``safe_state`` aborts any script and
runs ``cell_off``; it is idempotent and bounded by short timeouts.

Options (lab file or factory ``options``, declared in ``drivers.palmsens.options``): ``clock_speed`` (run on a scaled
clock, for emulators), ``baudrate``, ``timeout`` (s, reply timeout; also the
slack of the streaming watchdog), ``variant`` (EmStat4: ``hr``/``lr``),
``max_current`` (A, lowers the channel's limit), ``autorange_min`` /
``autorange_max`` (A), ``pgstat_channel`` (``set_pgstat_chan``, default 0),
``channel`` (the lab file's name for this channel, shown in the channel's
name; one MethodSCRIPT device is one channel, a MultiEmStat4 channel is a
device of its own), ``ocp_seconds``
(open-circuit measurement before a step that starts from OCV), ``overload``
(``compliance``: an overload ends the step with COMPLIANCE; ``error``: it fails
the run), ``exclusive`` (lock the port, default true).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.palmsens.encoding import EncodingError, PacketVar, decode_packet, format_literal
from drivers.palmsens.errors import ErrorReply, parse_error
from drivers.palmsens.link import Link, Port, open_serial
from drivers.palmsens.models import ModelSpec, model_for, model_for_firmware
from drivers.palmsens.options import Options
from drivers.palmsens.script import CODE_REASONS, CompileError, Compiler, ScriptPlan, Settings
from drivers.palmsens.stream_check import LostData, StreamCheck
from labctl.channel import (
    Capabilities,
    Channel,
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentErrorCode,
    InstrumentInfo,
    InstrumentTimeout,
    StepContext,
    StepOutcome,
    StepRun,
    UnsupportedStep,
)
from labctl.clock import Clock, RealClock, ScaledClock
from labctl.limits import LimitWatcher
from labctl.steps import (
    SAMPLE_DTYPE,
    SPECTRUM_DTYPE,
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Rest,
    Step,
    VoltageSweep,
)

log = logging.getLogger(__name__)

#: Limits fields that end a step (LimitWatcher checks those that are set).
_LIMIT_FIELDS = (
    "max_time",
    "voltage_above",
    "voltage_below",
    "current_below",
    "current_above",
    "max_charge",
    "steady_slope",
)

#: Wall seconds to wait after an error reply before the next command (the
#: instrument ignores commands for 50-100 ms after a '!' reply).
ERROR_QUIET_S = 0.15


def capabilities_for(model: ModelSpec, max_current: float | None = None) -> Capabilities:
    kinds = {"Rest", "ConstantVoltage", "VoltageSweep", "Impedance"}
    modes = {"potentiostatic"}
    if model.galvanostatic:
        kinds.add("ConstantCurrent")
        modes.add("galvanostatic")
    limit = model.max_current if max_current is None else min(max_current, model.max_current)
    return Capabilities(
        step_kinds=frozenset(kinds),
        max_current=limit,
        voltage_range=model.potential_range,
        frequency_range=model.frequency_range,
        impedance_modes=frozenset(modes),
    )


@dataclass
class _Run:
    """What one running script has sent back so far."""

    plan: ScriptPlan
    t0: float  # run time at which the script was started
    watcher: LimitWatcher | None
    check: StreamCheck  # what the main loop must send: lost lines are never silent
    depth: int = 0  # open loops in the output
    loops: int = 0  # measurement loops started
    code: int | None = None  # cutoff code from the packet after the loop
    ocv: float | None = None  # OCV measured by the pre-step meas_loop_ocp
    rows: list[tuple[float, ...]] = field(default_factory=list)  # not yet yielded
    spectrum: list[np.ndarray] = field(default_factory=list)
    q: float = 0.0
    last: tuple[float, float] | None = None  # (t, I) of the previous sample, for the charge
    last_e: float | None = None
    overload: str = ""
    timing_errors: int = 0
    ended: bool = False
    abort_sent: bool = False

    @property
    def in_main_loop(self) -> bool:
        main = 2 if self.plan.pre_ocp else 1
        return self.depth > 0 and self.loops == main


class MethodScriptChannel(Channel):
    """One MethodSCRIPT potentiostat channel on a serial port."""

    def __init__(
        self,
        key: str,
        resource: str,
        options: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        *,
        port: Port | None = None,
    ) -> None:
        self.key = key
        self.resource = resource
        self.options = Options.parse(options)
        self.model = model_for(key, self.options.variant)
        if self.options.clock_speed is not None:
            self._clock: Clock = ScaledClock(self.options.clock_speed)
        else:
            self._clock = clock if clock is not None else RealClock()
        self.name = f"{key}@{resource}" + (f":{self.options.channel}" if self.options.channel else "")
        self.capabilities = capabilities_for(self.model, self.options.max_current)
        self.compiler = Compiler(
            self.model,
            Settings(
                channel=self.options.pgstat_channel,
                autorange_min=self.options.autorange_min,
                autorange_max=self.options.autorange_max,
                ocp_duration=self.options.ocp_seconds,
            ),
        )
        self._lock = threading.RLock()
        self._port = port
        self._link: Link | None = None
        self._info: InstrumentInfo | None = None
        self._run: _Run | None = None
        self._unsynced = False  # the instrument's state is unknown (resync before the next script)
        self._quiet_until = 0.0
        #: OCV last measured with the cell at rest ("vs OCV" set points refer to it).
        self.ocv_ref: float | None = None
        #: Potential a pause keeps (None: a pause opens the circuit).
        self._hold_potential: float | None = None

    # --- connection ----------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def timeout(self) -> float:
        return self.options.timeout

    def open(self) -> None:
        with self._lock:
            if self._link is not None and not self._link.closed:
                return
            port = self._port
            if port is None:
                port = open_serial(
                    self.resource,
                    baudrate=self.options.baudrate or self.model.baudrate,
                    xonxoff=self.model.xonxoff,
                    exclusive=self.options.exclusive,
                )
            self._link = Link(port, self.resource)
            self._port = None  # a closed port is not reused
            self._resync(self.timeout)
            self._info = self._identify()

    def close(self) -> None:
        with self._lock:
            if self._link is not None:
                self._link.close()
            self._link = None

    def _ensure_open(self) -> Link:
        if self._link is None or self._link.closed:
            self.open()
        assert self._link is not None
        return self._link

    # --- low-level exchange ----------------------------------------------------------------
    def _write(self, text: str) -> None:
        link = self._ensure_open()
        pause = self._quiet_until - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        link.write(text)

    def _readline(self, timeout: float, what: str) -> str:
        link = self._ensure_open()
        line = link.read_line(timeout)
        if line is None:
            self._unsynced = True
            raise InstrumentTimeout(f"{self.model.name} on {self.resource}: no reply within {timeout:g} s ({what})")
        return line

    def _garbled(self, text: str) -> GarbledReply:
        self._unsynced = True
        return GarbledReply(f"garbled reply from the {self.model.name} on {self.resource}: {text}")

    def _error(self, reply: ErrorReply, context: str) -> InstrumentErrorCode:
        self._quiet_until = time.monotonic() + ERROR_QUIET_S
        return InstrumentErrorCode(f"{reply.code:04X}", f"{context}: {reply.text()}")

    def _query(self, command: str) -> str:
        """A one-letter command whose reply is one line starting with that letter."""
        self._write(command + "\n")
        line = self._readline(self.timeout, f"reply to {command!r}")
        error = parse_error(line)
        if error is not None:
            raise self._error(error, f"command {command!r} refused")
        if not line.startswith(command):
            raise self._garbled(f"reply to {command!r} should start with {command!r}, got {line!r}")
        return line[len(command) :]

    def _resync(self, timeout: float) -> None:
        """Bring the instrument to a known idle state: end any partial command,
        abort any running script (draining its output) and discard stale lines."""
        link = self._ensure_open()
        link.flush_input()
        self._write("\nZ\n")
        deadline = time.monotonic() + timeout
        while True:
            line = link.read_line(max(deadline - time.monotonic(), 0.0))
            if line is None:
                self._unsynced = True
                raise InstrumentTimeout(f"{self.model.name} on {self.resource}: no reply to the abort command 'Z'")
            if line == "Z!0006":  # nothing was running
                self._quiet_until = time.monotonic() + ERROR_QUIET_S
                break
            if line == "Z":  # a script was running: it ends with an empty line
                self._drain(deadline + timeout)
                break
        self._run = None
        self._unsynced = False

    def _drain(self, deadline: float) -> None:
        """Read (and drop) a script's output up to its closing empty line."""
        link = self._ensure_open()
        while True:
            line = link.read_line(max(deadline - time.monotonic(), 0.0))
            if line is None:
                self._unsynced = True
                raise InstrumentTimeout(f"{self.model.name} on {self.resource}: aborted script did not end")
            if line == "" or parse_error(line) is not None:
                return

    def _simple_script(self, lines: list[str], what: str) -> None:
        """Run a script that sends no data (cell_off, a hold) and wait for its end."""
        self._write("e\n" + "\n".join(lines) + "\n\n")
        ack = self._readline(self.timeout, f"{what} script accepted")
        error = parse_error(ack)
        if error is not None:
            raise self._error(error, f"{what} script refused")
        if ack != "e":
            raise self._garbled(f"{what}: expected 'e', got {ack!r}")
        end = self._readline(self.timeout, f"{what} script end")
        error = parse_error(end)
        if error is not None:
            raise self._error(error, f"{what} script failed")
        if end != "":
            raise self._garbled(f"{what}: expected the end of the script, got {end!r}")

    # --- identity ---------------------------------------------------------------------------
    def _identify(self) -> InstrumentInfo:
        first = self._query("t")
        parts = [first]
        for _ in range(3):  # the firmware string spans two lines, the last ends with '*'
            if parts[-1].endswith("*"):
                break
            parts.append(self._readline(self.timeout, "firmware version"))
        if not parts[-1].endswith("*"):
            raise self._garbled(f"firmware version reply does not end with '*': {parts!r}")
        parts[-1] = parts[-1][:-1]
        firmware = " ".join(p.strip() for p in parts if p.strip())
        found = model_for_firmware(firmware)
        if found is None:
            raise InstrumentError(f"{self.resource}: {firmware!r} is not a MethodSCRIPT instrument this driver knows")
        if found.key != self.model.key or found.firmware_id != self.model.firmware_id:
            raise InstrumentError(
                f"{self.resource} is configured as {self.model.name} ({self.key}) but the instrument reports "
                f"{found.name} (firmware {firmware!r}); fix the lab file"
                + (" or set option variant" if found.key == self.model.key else "")
            )
        serial = self._query("i").strip()
        version = self._query("v").strip()
        return InstrumentInfo(
            driver=self.key,
            model=found.name,
            serial=serial,
            firmware=firmware,
            resource=self.resource,
            extra={"methodscript_version": version, "transport": "serial"},
        )

    def identify(self) -> InstrumentInfo:
        """Asks the instrument (model, serial, firmware); while a script runs its output
        owns the line, so the identification read at connection is returned."""
        with self._lock:
            if self._run is not None and self._info is not None:
                return self._info
            self._ensure_open()
            if self._unsynced:
                self._resync(self.timeout)
            self._info = self._identify()
            return self._info

    # --- steps ------------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        refusal = self.capabilities.refusal(step)
        if refusal is not None:
            raise UnsupportedStep(refusal)
        try:
            plan = self.compiler.compile(step, self.ocv_ref)
        except CompileError as exc:
            raise UnsupportedStep(str(exc)) from exc
        return (yield from self._execute(plan, ctx))

    def _start(self, plan: ScriptPlan, ctx: StepContext) -> _Run:
        with self._lock:
            if self._unsynced or self._run is not None:
                self._resync(self.timeout)
            self._ensure_open().flush_input()
            hl = plan.host_limits
            watcher = (
                LimitWatcher(hl, ctx.run_time()) if any(getattr(hl, f) is not None for f in _LIMIT_FIELDS) else None
            )
            run = _Run(plan, ctx.run_time(), watcher, StreamCheck.for_plan(plan))
            self._write(plan.text())
            self._run = run
            try:
                ack = self._readline(self.timeout, f"{plan.technique} script accepted")
            except InstrumentError:
                self._run = None  # unknown whether it runs: the next exchange resynchronises
                raise
            error = parse_error(ack)
            if error is not None:
                self._run = None
                detail = ""
                if error.line is not None and 1 <= error.line <= len(plan.lines):
                    detail = f" (line {error.line}: {plan.lines[error.line - 1].strip()!r})"
                raise self._error(error, f"{plan.technique} script refused{detail}")
            if ack != "e":
                raise self._garbled(f"{plan.technique} script: expected 'e', got {ack!r}")
            return run

    def _execute(self, plan: ScriptPlan, ctx: StepContext) -> StepRun:
        run = self._start(plan, ctx)
        speed = ctx.clock.speed
        watchdog = plan.packet_gap / speed + self.timeout
        last_rx = time.monotonic()
        dtype = SPECTRUM_DTYPE if plan.impedance else SAMPLE_DTYPE
        failure: InstrumentError | None = None
        try:
            while True:
                outcome: StepOutcome | None = None
                slice_end = time.monotonic() + max(ctx.max_block_wall * 0.5, 0.01)
                with self._lock:
                    if self._run is not run:  # aborted from outside (safe_state on a safety breach)
                        return StepOutcome(EndReason.ABORTED, "script aborted")
                    while outcome is None and failure is None and not ctx.interrupt.is_set():
                        remaining = slice_end - time.monotonic()
                        if remaining <= 0:
                            break
                        line = self._ensure_open().read_line(min(remaining, 0.05))
                        if line is None:
                            if time.monotonic() - last_rx > watchdog:
                                self._unsynced = True
                                raise InstrumentTimeout(
                                    f"{self.model.name} on {self.resource}: no data for {watchdog:.1f} s during a "
                                    f"{plan.technique} script (link lost, or the instrument stopped responding)"
                                )
                            continue
                        last_rx = time.monotonic()
                        try:
                            outcome = self._handle(run, line)
                        except LostData as exc:
                            failure = exc  # keep what did arrive, stop the script, then fail the step
                            self._abort(run)
                        except InstrumentError as exc:
                            failure = exc  # a garbled line, a runtime error: keep what did arrive
                            break
                    block = self._take_block(run, dtype)
                    if failure is None and block is not None and run.watcher is not None and dtype is SAMPLE_DTYPE:
                        hit = run.watcher.check(block)
                        if hit is not None and (outcome is None or hit[0] < len(block) - 1):
                            row, reason = hit
                            block = block[: row + 1]
                            self._abort(run)
                            at = float(block["t"][-1])
                            outcome = StepOutcome(reason, f"{reason.value} (host-side limit) at t={at:.6g} s")
                    if outcome is None and ctx.interrupt.is_set():
                        self._abort(run)
                        outcome = StepOutcome(EndReason.ABORTED, "interrupted")
                if block is not None and len(block):
                    if dtype is SPECTRUM_DTYPE:
                        run.spectrum.append(block)
                    yield block
                elif outcome is None and failure is None:
                    yield np.empty(0, dtype=dtype)
                if failure is not None:
                    raise failure
                if outcome is not None:
                    return self._finish(run, outcome)
        except GeneratorExit:
            # The engine stopped iterating (pause, abort, safety): stop the script now.
            self._hold_potential = self._pause_potential(run, interrupted=True)
            if self._run is run:
                try:
                    with self._lock:
                        self._abort(run)
                except InstrumentError as exc:
                    log.warning("could not abort the running script: %s", exc)
            raise
        except BaseException:
            # A failure: the instrument's state is unknown; safe_state() resynchronises
            # (aborting here too would only wait a second time on a dead link).
            if self._run is run:
                self._run = None
                self._unsynced = True
            raise

    def _abort(self, run: _Run) -> None:
        """Stop the running script with Z and read its output to the end."""
        if self._run is not run:
            return
        run.abort_sent = True
        self._write("Z\n")
        link = self._ensure_open()
        deadline = time.monotonic() + self.timeout
        acknowledged = False
        while True:
            line = link.read_line(max(deadline - time.monotonic(), 0.0))
            if line is None:
                self._run = None
                self._unsynced = True
                raise InstrumentTimeout(f"{self.model.name} on {self.resource}: the aborted script did not end")
            if line == "Z":
                acknowledged = True
            elif line == "" or parse_error(line) is not None:
                break
        self._run = None
        run.ended = True
        if not acknowledged:
            # The script ended before the Z arrived: the Z is answered as a stray command.
            late = link.read_line(0.2)
            if late is not None and late != "Z!0006":
                self._unsynced = True
            self._quiet_until = time.monotonic() + ERROR_QUIET_S

    def _handle(self, run: _Run, line: str) -> StepOutcome | None:
        """One line of a running script's output; an outcome when the step is over."""
        if line == "":
            if run.depth != 0:
                raise self._garbled(f"script output ended inside a measurement loop ({run.plan.technique})")
            self._run = None
            run.ended = True
            return self._natural_end(run)
        head = line[0]
        if head == "P":
            try:
                variables = decode_packet(line)
            except EncodingError as exc:
                raise self._garbled(f"unreadable data packet {line!r}: {exc}") from exc
            return self._packet(run, variables)
        if head in "MC" and len(line) == 5 and all(c in "0123456789ABCDEFabcdef" for c in line[1:]):
            if head == "M":
                run.depth += 1
                run.loops += 1
            return None
        if line in ("*", "+"):
            if run.depth <= 0:
                raise self._garbled(f"loop end {line!r} without a loop")
            if line == "*":
                run.depth -= 1
            return None
        if line in ("L", "-"):
            return None
        if line == "Z" and run.abort_sent:
            return None
        error = parse_error(line)
        if error is not None:
            self._run = None
            run.ended = True
            self._unsynced = True  # a runtime error skips on_finished: the cell may still be on
            where = ""
            if error.line is not None and 1 <= error.line <= len(run.plan.lines):
                where = f" (line {error.line}: {run.plan.lines[error.line - 1].strip()!r})"
            raise self._error(error, f"{run.plan.technique} script stopped{where}")
        raise self._garbled(f"unexpected line {line!r}")

    def _packet(self, run: _Run, variables: tuple[PacketVar, ...]) -> StepOutcome | None:
        by_type = {v.type: v for v in variables}
        if run.depth == 0:
            code = by_type.get("ja")
            if code is None or len(variables) != 1:
                raise self._garbled(f"unexpected packet outside the measurement loop: {variables!r}")
            run.code = int(code.value)
            return None
        if not run.in_main_loop:  # the OCV measured before the step
            e = by_type.get("ab")
            if e is None:
                raise self._garbled(f"open-circuit packet without a potential: {variables!r}")
            run.ocv = e.value
            tm_ocp = by_type.get("eb")
            if tm_ocp is not None:  # the main loop begins after the last of these
                run.check.loop_begins(tm_ocp.value)
            return None
        for v in variables:
            if v.timing_error:
                run.timing_errors += 1
        tm = by_type.get("eb")
        if tm is None:
            raise self._garbled(f"data packet without a time: {variables!r}")
        t = run.t0 + tm.value
        if run.plan.impedance:
            f, zr, zi = by_type.get("dc"), by_type.get("cc"), by_type.get("cd")
            if f is None or zr is None or zi is None:
                raise self._garbled(f"impedance packet without frequency/Z: {variables!r}")
            e_dc, i_dc = self._dc_level(run)
            run.rows.append((f.value, zr.value, zi.value, e_dc, i_dc, t, math.nan))
            run.check.point(f.value)
        else:
            e = by_type.get("ab") or by_type.get("da")
            if e is None:
                raise self._garbled(f"data packet without a potential: {variables!r}")
            i_var = by_type.get("ba")
            current = i_var.value if i_var is not None else 0.0
            if run.last is not None:
                t_prev, i_prev = run.last
                run.q += 0.5 * (current + i_prev) * (t - t_prev)
            run.last = (t, current)
            run.last_e = e.value
            run.rows.append((t, e.value, current, run.q, math.nan))
            run.check.sample(tm.value, e.value)
        overloaded = [v for v in variables if v.overload]
        if overloaded:
            names = ", ".join(f"{v.type} ({v.status_text()}, range code {v.range})" for v in overloaded)
            run.overload = f"instrument overload on {names} at t={t:.6g} s"
            if self.options.overload == "error":
                self._abort(run)
                raise InstrumentError(run.overload)
            self._abort(run)
            return StepOutcome(EndReason.COMPLIANCE, run.overload)
        return None

    def _take_block(self, run: _Run, dtype: np.dtype) -> np.ndarray | None:
        if not run.rows:
            return None
        block = np.array(run.rows, dtype=dtype)
        run.rows.clear()
        return block

    def _natural_end(self, run: _Run) -> StepOutcome:
        plan = run.plan
        code = run.code
        if code is None:
            raise self._garbled(f"{plan.technique} script ended without its end-code packet")
        if code in CODE_REASONS:
            run.check.end(natural=False)
            reason = CODE_REASONS[code]
            return StepOutcome(reason, f"{reason.value} (on the instrument)")
        if code != 0:
            raise self._garbled(f"unknown end code {code} from the {plan.technique} script")
        run.check.end(natural=True)
        return StepOutcome(plan.natural_reason, f"{plan.natural_reason.value} ({plan.technique} loop ended)")

    @staticmethod
    def _dc_level(run: _Run) -> tuple[float, float]:
        """The DC level an impedance point rides on, as set (E_dc for a potentiostatic
        sweep, I_dc for a galvanostatic one); NaN where the script does not fix it."""
        step = run.plan.step
        if run.plan.technique == "geis" and isinstance(step, Impedance):
            return math.nan, step.bias
        e_dc = run.plan.set_potential
        if e_dc is None and run.ocv is not None:
            e_dc = run.ocv + run.plan.ocv_offset
        return (math.nan if e_dc is None else e_dc), math.nan

    @staticmethod
    def _pause_potential(run: _Run, interrupted: bool) -> float | None:
        """The potential a pause after (or during) this script holds: the set point of a
        potentiostatic hold, the potential a sweep had reached; None = open circuit."""
        plan = run.plan
        if plan.keeps_cell_on:
            if plan.set_potential is not None:
                return plan.set_potential
            return None if run.ocv is None else run.ocv + plan.ocv_offset
        if isinstance(plan.step, VoltageSweep) and interrupted:
            return run.last_e
        return None

    def _finish(self, run: _Run, outcome: StepOutcome) -> StepOutcome:
        """Bookkeeping after a step: the OCV reference and what a pause would hold."""
        plan, step = run.plan, run.plan.step
        if isinstance(step, Rest) and run.last_e is not None:
            self.ocv_ref = run.last_e
        elif isinstance(step, (ConstantCurrent, VoltageSweep)):
            self.ocv_ref = None
        elif isinstance(step, Impedance):
            if step.mode == "galvanostatic":
                self.ocv_ref = None
            elif run.ocv is not None:
                self.ocv_ref = run.ocv
        elif isinstance(step, ConstantVoltage) and run.ocv is not None:
            self.ocv_ref = run.ocv
        self._hold_potential = self._pause_potential(run, outcome.end_reason is EndReason.ABORTED)
        message = outcome.message
        if run.timing_errors:
            message += f"; {run.timing_errors} packets flagged a timing error"
        loss = run.check.summary()
        if loss:
            log.warning("%s: %s", self.name, loss)
            message += f"; {loss}"
        spectrum = np.concatenate(run.spectrum) if run.spectrum else None
        if plan.impedance and spectrum is None:
            spectrum = np.empty(0, dtype=SPECTRUM_DTYPE)
        return StepOutcome(outcome.end_reason, message, spectrum)

    # --- safety -----------------------------------------------------------------------------
    def hold(self) -> None:
        """Pause: keep the potential of a potentiostatic step, otherwise open circuit."""
        with self._lock:
            if self._run is not None or self._unsynced:
                self._resync(self.timeout)
            if self._hold_potential is not None:
                e = format_literal(self._hold_potential)
                self._simple_script([f"set_e {e}", "cell_on"], "hold")
            else:
                self._simple_script(["cell_off"], "open circuit")

    def safe_state(self) -> None:
        """Abort any script and switch the cell off. Bounded by short timeouts;
        raises (after trying everything) when the instrument did not confirm."""
        with self._lock:
            self._hold_potential = None
            if self._link is None:
                return  # never connected: nothing of ours can be on
            problems: list[InstrumentError] = []
            short = min(self.timeout, 2.0)
            try:
                self._resync(short)
            except ConnectionLost as exc:
                problems.append(exc)  # no port to send cell_off on
            except InstrumentError as exc:
                problems.append(exc)
                time.sleep(0.3)  # let a script that did get the Z wind up before cell_off
            if not any(isinstance(p, ConnectionLost) for p in problems):
                try:
                    self._simple_script(["cell_off"], "cell_off")
                except InstrumentError as exc:
                    problems.append(exc)
            self._run = None
            if problems:
                self._unsynced = True
                text = "safe state not confirmed: " + "; ".join(str(p) for p in problems)
                if any(isinstance(p, ConnectionLost) for p in problems):
                    raise ConnectionLost(text)
                raise InstrumentError(text)


def _create(key: str, resource: str, options: Mapping[str, Any] | None, clock: Clock | None) -> MethodScriptChannel:
    return MethodScriptChannel(key, resource, options, clock)


def create_emstat4(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> Channel:
    """EmStat4 (HR by default; option variant=lr for the LR)."""
    return _create("emstat4", resource, options, clock)


def create_nexus(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> Channel:
    """PalmSens Nexus."""
    return _create("nexus", resource, options, clock)


def create_pico(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> Channel:
    """EmStat Pico: potentiostatic only (no ConstantCurrent, no galvanostatic impedance)."""
    return _create("emstat_pico", resource, options, clock)
