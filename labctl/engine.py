"""The engine: runs one protocol on one channel, off the caller's thread.

Everything that can go wrong in a run ends in the same place: the ``finally``
of the engine thread, which puts the channel in its safe state before it does
anything else (records, events, closing). Abort and pause arrive from other
threads (CLI signal handler, GUI button, queue) as requests; the engine acts on
them at the channel's next yield, so no instrument call is ever interrupted
half-way.

Pause holds the cell (``Channel.hold``) and, on resume, continues the step
with what is left of it (time, charge, frequencies, sweep range): the run goes
forward, a command is never replayed.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl import __version__
from labctl.channel import Channel, InstrumentError, StepContext
from labctl.events import (
    Event,
    EventBus,
    RunEnded,
    RunInfo,
    RunStarted,
    Samples,
    SpectrumPoints,
    StatusChanged,
    StepEnded,
    StepStarted,
    Tick,
)
from labctl.protocol import Cell, Protocol
from labctl.safety import SafetyLimits
from labctl.steps import (
    SAMPLE_DTYPE,
    SPECTRUM_DTYPE,
    EndReason,
    Impedance,
    Rest,
    SetTemperature,
    Step,
    StepResult,
    VoltageSweep,
)

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.5  # wall seconds between Tick events (sinks flush on them)


class RunState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.COMPLETED, RunState.ABORTED, RunState.FAILED)


@dataclass
class RunOutcome:
    """How a run ended, for the caller (the file holds the same and more)."""

    status: RunState
    results: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    steps: list[StepResult] = field(default_factory=list)


class _AbortRun(Exception):
    """Raised inside the engine thread when an abort was requested."""


class _ProtocolStop(Exception):
    """A step with on_limit='abort' met its limit."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def software_info() -> dict[str, Any]:
    import platform

    import h5py

    return {
        "labctl": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "platform": platform.platform(),
    }


class RunHandle:
    """Controls and observes a run started with ``Engine.start``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def state(self) -> RunState:
        return self._engine.state

    @property
    def bus(self) -> EventBus:
        return self._engine.bus

    def abort(self, reason: str = "aborted by user") -> None:
        self._engine.request_abort(reason)

    def pause(self) -> None:
        self._engine.request_pause()

    def resume(self) -> None:
        self._engine.request_resume()

    def wait(self, timeout: float | None = None) -> RunOutcome | None:
        """The outcome, or None if the run has not ended within ``timeout``."""
        self._engine.thread.join(timeout)
        return None if self._engine.thread.is_alive() else self._engine.outcome


class Engine:
    """Runs a protocol on a channel and streams everything to the sinks.

    ``sinks`` are called synchronously in the engine thread (the run file
    must see every sample); the ``bus`` fans the same events out to any
    number of watchers without ever blocking acquisition.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        sinks: Sequence[Any] = (),
        bus: EventBus | None = None,
        safety: SafetyLimits | None = None,
    ) -> None:
        self.channel = channel
        self.clock = channel.clock
        self.bus = bus or EventBus()
        self.sinks = [*sinks, self.bus]
        self.safety = safety or SafetyLimits()
        self.state = RunState.PENDING
        self.outcome: RunOutcome | None = None
        self.thread = threading.Thread(target=self._main, name="labctl-engine", daemon=True)
        self._interrupt = threading.Event()
        self._resume = threading.Event()
        self._lock = threading.Lock()
        self._abort_reason = ""
        self._pause_requested = False
        self._last_tick = 0.0
        self._t_origin = 0.0

    # -- control (any thread) -------------------------------------------------
    def request_abort(self, reason: str = "aborted by user") -> None:
        with self._lock:
            if not self._abort_reason:
                self._abort_reason = reason
            self._interrupt.set()
            self._resume.set()

    def request_pause(self) -> None:
        with self._lock:
            if self.state == RunState.RUNNING:
                self._pause_requested = True
                self._resume.clear()
                self._interrupt.set()

    def request_resume(self) -> None:
        with self._lock:
            self._pause_requested = False
            self._resume.set()

    # -- starting ---------------------------------------------------------------
    def start(
        self,
        protocol: Protocol,
        params: Mapping[str, Any],
        cell: Cell,
        *,
        operator: str = "",
        simulation: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Check the protocol against the channel, then run it in a thread."""
        refusals = [kind for kind in protocol.step_kinds if kind not in self.channel.capabilities.step_kinds]
        if refusals:
            raise ValueError(
                f"instrument cannot run protocol '{protocol.name}': "
                f"{', '.join(sorted(refusals))} steps are not supported by this channel"
            )
        self._protocol = protocol
        self._params = dict(params)
        self._cell = cell
        self._info_extra = {"operator": operator, "simulation": simulation, "run_id": run_id or new_run_id()}
        self.state = RunState.RUNNING
        self.thread.start()
        return RunHandle(self)

    def run(self, protocol: Protocol, params: Mapping[str, Any], cell: Cell, **kwargs: Any) -> RunOutcome:
        """Start and wait: convenient for tests and scripts."""
        outcome = self.start(protocol, params, cell, **kwargs).wait()
        assert outcome is not None
        return outcome

    # -- the engine thread --------------------------------------------------------
    def _emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.handle(event)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_tick >= TICK_INTERVAL:
            self._last_tick = now
            self._emit(Tick(self._run_time()))

    def _run_time(self) -> float:
        return self.clock.now() - self._t_origin

    def _main(self) -> None:
        status = RunState.FAILED
        results: dict[str, Any] = {}
        error = ""
        step_results: list[StepResult] = []
        started = False
        try:
            self.channel.open()
            info = RunInfo(
                run_id=self._info_extra["run_id"],
                protocol=self._protocol.name,
                protocol_version=self._protocol.version,
                parameters=self._params,
                cell=self._cell.as_dict(),
                instrument=self.channel.identify().as_dict(),
                software=software_info(),
                operator=self._info_extra["operator"],
                started_at=self.clock.wall_time().isoformat(timespec="seconds"),
                simulation=self._info_extra["simulation"],
            )
            self._t_origin = self.clock.now()
            self._emit(RunStarted(info))
            started = True
            results = self._drive(step_results)
            status = RunState.COMPLETED
        except _AbortRun:
            status, error = RunState.ABORTED, self._abort_reason
        except _ProtocolStop as exc:
            status, error = RunState.ABORTED, str(exc)
        except InstrumentError as exc:
            status, error = RunState.FAILED, f"instrument error: {exc}"
        except Exception as exc:  # a protocol or sink bug must still end safely
            status = RunState.FAILED
            error = f"{type(exc).__name__}: {exc}"
            log.error("run failed\n%s", traceback.format_exc())
        finally:
            safe_error = self._make_safe()
            if safe_error:
                error = f"{error}; {safe_error}" if error else safe_error
                status = RunState.FAILED
            self.state = status
            self.outcome = RunOutcome(status, results, error, step_results)
            if started:
                safe_event = StatusChanged(
                    "safe" if not safe_error else "unsafe",
                    self._run_time(),
                    safe_error or "channel in its safe state (output off)",
                )
                for sink in self.sinks:
                    try:
                        sink.handle(safe_event)
                    except Exception:
                        log.exception("sink %r failed on the safe-state event", sink)
                ended = RunEnded(
                    status.value,
                    results,
                    error,
                    self.clock.wall_time().isoformat(timespec="seconds"),
                )
                for sink in self.sinks:
                    try:
                        sink.handle(ended)
                    except Exception:
                        log.exception("sink %r failed on RunEnded", sink)
            else:
                # Nothing was announced, but watchers still need to learn the end.
                self.bus.handle(RunEnded(status.value, results, error))

    def _make_safe(self) -> str:
        """Safe state first, then close; report (never raise) what failed."""
        problems = []
        try:
            self.channel.safe_state()
        except Exception as exc:
            problems.append(f"safe state failed: {exc}")
            log.critical("could not put channel in safe state: %s", exc)
        try:
            self.channel.close()
        except Exception as exc:
            problems.append(f"close failed: {exc}")
        return "; ".join(problems)

    def _drive(self, step_results: list[StepResult]) -> dict[str, Any]:
        plan = self._protocol.make_plan(self._params, self._cell)
        try:
            step = next(plan)
            index = 0
            while True:
                self._check_abort()
                result = self._execute(index, step)
                step_results.append(result)
                if result.end_reason == EndReason.ABORTED:
                    raise _AbortRun
                if result.end_reason == EndReason.SAFETY_LIMIT:
                    raise InstrumentError(result.message)
                limits = step.effective_limits()
                if limits.on_limit == "abort" and result.end_reason not in (EndReason.COMPLETED,):
                    raise _ProtocolStop(
                        f"step {index} ({step.kind}) ended by {result.end_reason.value} with on_limit='abort'"
                    )
                index += 1
                step = plan.send(result)
        except StopIteration as stop:
            return dict(stop.value or {})
        finally:
            plan.close()

    def _check_abort(self) -> None:
        if self._abort_reason:
            raise _AbortRun

    def _execute(self, index: int, step: Step) -> StepResult:
        """Run one step, through pauses, and build its StepResult."""
        refusal = self.channel.capabilities.refusal(step)
        if refusal:
            raise InstrumentError(f"step {index} ({step.kind}): {refusal}")
        t_start = self._run_time()
        self._emit(StepStarted(index, step, t_start))
        samples: list[np.ndarray] = []
        spectrum: list[np.ndarray] = []
        charge_before = 0.0  # charge of earlier segments (pause splits a step)
        active = 0.0  # time spent executing the step, pauses excluded
        segment = step
        try:
            while True:
                t_segment = self._run_time()
                outcome, message = self._run_segment(index, segment, samples, spectrum, charge_before)
                if outcome is None:  # paused
                    active += self._run_time() - t_segment
                    charge_before = float(samples[-1]["Q"][-1]) if samples and len(samples[-1]) else charge_before
                    self._hold_until_resumed()
                    segment = self._continuation(step, active, samples, spectrum, charge_before)
                    if segment is None:
                        end_reason, message = EndReason.COMPLETED, "completed before the pause"
                        break
                    continue
                end_reason = outcome
                break
        except _AbortRun:
            self._finish_step(index, step, t_start, samples, spectrum, EndReason.ABORTED, self._abort_reason)
            raise
        except Exception as exc:
            # The step's record must end too (with what was measured), not stay "running".
            self._finish_step(index, step, t_start, samples, spectrum, EndReason.INSTRUMENT_FAULT, str(exc))
            raise
        return self._finish_step(index, step, t_start, samples, spectrum, end_reason, message)

    def _finish_step(
        self,
        index: int,
        step: Step,
        t_start: float,
        samples: list[np.ndarray],
        spectrum: list[np.ndarray],
        end_reason: EndReason,
        message: str,
    ) -> StepResult:
        data = np.concatenate(samples) if samples else np.empty(0, SAMPLE_DTYPE)
        spec = np.concatenate(spectrum) if spectrum else None
        last = {name: float(data[name][-1]) for name in SAMPLE_DTYPE.names} if len(data) else {}
        charge = float(data["Q"][-1]) if len(data) else 0.0
        result = StepResult(
            index=index,
            step=step,
            end_reason=end_reason,
            t_start=t_start,
            duration=self._run_time() - t_start,
            charge=charge,
            last=last,
            spectrum=spec,
            data=data,
            message=message,
        )
        self._emit(StepEnded(result))
        self._tick(force=True)
        return result

    def _run_segment(
        self,
        index: int,
        step: Step,
        samples: list[np.ndarray],
        spectrum: list[np.ndarray],
        charge_before: float,
    ) -> tuple[EndReason | None, str]:
        """One uninterrupted stretch of a step. Returns (None, "") when paused."""
        ctx = StepContext(clock=self.clock, t_origin=self._t_origin, interrupt=self._interrupt)
        run = self.channel.run_step(step, ctx)
        outcome = None
        try:
            while True:
                try:
                    block = next(run)
                except StopIteration as stop:
                    outcome = stop.value
                    break
                if block.dtype == SPECTRUM_DTYPE:
                    if len(block):
                        spectrum.append(block)
                        self._emit(SpectrumPoints(index, block))
                elif len(block):
                    if charge_before:
                        block = block.copy()
                        block["Q"] += charge_before
                    breach = self.safety.breach(block)
                    samples.append(block)
                    self._emit(Samples(index, block))
                    if breach:
                        self.channel.safe_state()
                        return EndReason.SAFETY_LIMIT, breach
                self._tick()
                if self._interrupt.is_set():
                    break
        finally:
            run.close()
        if self._abort_reason:
            return EndReason.ABORTED, self._abort_reason
        if self._interrupt.is_set():
            # Paused (or a resume raced the pause: the hold is then momentary).
            return None, ""
        assert outcome is not None
        return outcome.end_reason, outcome.message

    def _hold_until_resumed(self) -> None:
        self.channel.hold()
        self.state = RunState.PAUSED
        self._emit(StatusChanged("paused", self._run_time(), "cell held"))
        while not self._resume.wait(TICK_INTERVAL):
            self._tick(force=True)
        self._check_abort()
        with self._lock:
            self._interrupt.clear()
            self._pause_requested = False
            self.state = RunState.RUNNING
        self._emit(StatusChanged("running", self._run_time(), "resumed"))

    def _continuation(
        self,
        step: Step,
        elapsed: float,
        samples: list[np.ndarray],
        spectrum: list[np.ndarray],
        charge: float,
    ) -> Step | None:
        """What is left of ``step`` after ``elapsed`` s of execution and
        ``charge`` C passed (None when nothing is)."""
        if isinstance(step, Impedance):
            done = sum(len(b) for b in spectrum)
            if done >= len(step.frequencies()):
                return None
            return dataclasses.replace(step, skip_points=step.skip_points + done)
        if isinstance(step, SetTemperature):
            return dataclasses.replace(step, timeout=max(step.timeout - elapsed, 1.0))
        limits = step.effective_limits().shifted(elapsed, charge)
        if limits.max_time is not None and limits.max_time <= 1e-6:
            return None
        if isinstance(step, Rest):
            return dataclasses.replace(step, duration=limits.max_time or step.duration, limits=limits)
        measured = [b for b in samples if len(b)]
        if isinstance(step, VoltageSweep) and measured:
            first_e, last_e = float(measured[0]["E"][0]), float(measured[-1]["E"][-1])
            direction = step.stop - (first_e if step.start == "ocv" else float(step.start))
            if (step.stop - last_e) * direction <= 0:
                return None
            return dataclasses.replace(step, start=last_e, limits=limits)
        return dataclasses.replace(step, limits=limits)
