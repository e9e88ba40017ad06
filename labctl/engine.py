"""The engine: runs one protocol on one channel, off the caller's thread.

Everything that can go wrong in a run ends in the same place: the ``finally``
of the engine thread, which puts the channel in its safe state before it does
anything else (records, events, closing). Abort and pause arrive from other
threads (CLI signal handler, GUI button, queue) as requests; the engine acts on
them at the channel's next yield, so no instrument call is ever interrupted
half-way.

Pause holds the cell (``Channel.hold``) and, on resume, continues the step
with what is left of it (``Step.remaining``: time, charge, frequencies, sweep
range): the run goes forward, a command is never replayed.

The run's state (``RunState``) changes only through one checked transition
table, and each change is published as a ``StateChanged`` event. The end of a
run has one path: safe state, the final state, RunEnded, the sinks closed (the
engine thread owns them), then ``done`` is set. Callers wait on ``done``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
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
    SinkFailure,
    SpectrumPoints,
    StateChanged,
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
    SampleAccumulator,
    Step,
    StepProgress,
    StepResult,
    StepRows,
)

log = logging.getLogger(__name__)

TICK_INTERVAL = 0.5  # wall seconds between Tick events (sinks flush on them)


class RunState(enum.StrEnum):
    """Where a run is. Every change goes through ``Engine._transition``,
    which checks it against ``TRANSITIONS`` and publishes a ``StateChanged``."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSING = "pausing"  # asked to pause; the engine acts at the channel's next yield
    PAUSED = "paused"  # the cell is held
    ABORTING = "aborting"  # asked to stop; the safe state comes next
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.COMPLETED, RunState.ABORTED, RunState.FAILED)


#: The only state changes a run may make. PAUSING -> RUNNING: a resume that
#: raced the pause; PAUSING/ABORTING -> COMPLETED: the protocol ended before
#: the request took effect; -> FAILED from anywhere: a fault, even while aborting.
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING}),
    RunState.RUNNING: frozenset({RunState.PAUSING, RunState.ABORTING, RunState.COMPLETED, RunState.FAILED}),
    RunState.PAUSING: frozenset(
        {RunState.PAUSED, RunState.RUNNING, RunState.ABORTING, RunState.COMPLETED, RunState.FAILED}
    ),
    RunState.PAUSED: frozenset({RunState.RUNNING, RunState.ABORTING, RunState.FAILED}),
    RunState.ABORTING: frozenset({RunState.ABORTED, RunState.COMPLETED, RunState.FAILED}),
    RunState.COMPLETED: frozenset(),
    RunState.ABORTED: frozenset(),
    RunState.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A run-state change the transition table does not allow (an engine bug)."""


def check_transition(old: RunState, new: RunState) -> None:
    """Raise IllegalTransition unless ``old -> new`` is in ``TRANSITIONS``."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "none (final state)"
        raise IllegalTransition(f"run state {old.value} -> {new.value} is not allowed (from {old.value}: {allowed})")


@dataclass
class RunOutcome:
    """How a run ended, for the caller (the file holds the same and more)."""

    status: RunState
    results: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    steps: list[StepResult] = field(default_factory=list)
    #: The traceback of an unexpected error (shown only with ``labctl --debug``).
    error_detail: str = ""


class _AbortRun(Exception):
    """Raised inside the engine thread when an abort was requested."""


class _ProtocolStop(Exception):
    """A step with on_limit='abort' met its limit."""


class _SafetyStop(Exception):
    """A sample crossed the cell's safety limits (not the step's own limits)."""


def one_line(text: str, limit: int = 400) -> str:
    """An error message as one line (HDF5 and some drivers put newlines in theirs)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    """Controls and observes a run started with ``Engine.start``.

    ``wait`` waits for the engine's completion signal, which is set after the
    engine's last call to its sinks (the run file is closed by then): the end
    of a run is never inferred from ``Thread.join``, which a KeyboardInterrupt
    can corrupt on CPython 3.11/3.12.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def state(self) -> RunState:
        return self._engine.state

    @property
    def bus(self) -> EventBus:
        return self._engine.bus

    @property
    def done(self) -> bool:
        """True once the run has ended and its sinks are closed."""
        return self._engine.done.is_set()

    def abort(self, reason: str = "aborted by user") -> None:
        self._engine.request_abort(reason)

    def pause(self) -> None:
        self._engine.request_pause()

    def resume(self) -> None:
        self._engine.request_resume()

    def wait(self, timeout: float | None = None) -> RunOutcome | None:
        """The outcome, or None if the run has not ended within ``timeout``."""
        if not self._engine.done.wait(timeout):
            return None
        return self._engine.outcome


class Engine:
    """Runs a protocol on a channel and streams everything to the sinks.

    ``sinks`` are called synchronously in the engine thread (the run file
    must see every sample); the ``bus`` fans the same events out to any
    number of watchers without ever blocking acquisition. The engine thread
    owns its sinks: after the run's last event it calls their ``close()``,
    then sets ``done``.

    The engine keeps no samples: per step it keeps a running summary
    (``SampleAccumulator``: count, first/last row, extremes), which is also
    all a paused step needs to continue. A StepResult's ``data`` is a
    ``StepRows`` view that a sink able to read rows back (``step_rows(index)``,
    the run-file writer) provides. ``keep_samples`` keeps each step's samples
    in memory instead (the default, None, does so only when no sink can read
    rows back: runs without a file, as in tests); a step's kept samples are
    released when the protocol drops its StepResult.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        sinks: Sequence[Any] = (),
        bus: EventBus | None = None,
        safety: SafetyLimits | None = None,
        keep_samples: bool | None = None,
    ) -> None:
        self.channel = channel
        self.clock = channel.clock
        self.bus = bus or EventBus()
        self.sinks = [*sinks, self.bus]
        self.safety = safety or SafetyLimits()
        #: Where StepResult.data comes from: a sink's rows read back, or None (kept in memory).
        self._row_source: Callable[[int], StepRows | None] | None = None
        if not keep_samples:
            self._row_source = next(
                (src for src in (getattr(s, "step_rows", None) for s in sinks) if callable(src)), None
            )
            if keep_samples is False and self._row_source is None:
                raise ValueError("keep_samples=False needs a sink that reads rows back (a RunFileWriter)")
        self.outcome: RunOutcome | None = None
        #: Set after the last sink call of the run: the one "it has ended" signal.
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="labctl-engine", daemon=True)
        self._state = RunState.PENDING
        self._interrupt = threading.Event()  # tells the channel to stop the step (pause or abort)
        self._resume = threading.Event()
        self._lock = threading.Lock()
        self._abort_reason = ""
        self._state_events: list[StateChanged] = []  # made in any thread, emitted by the engine thread
        self._announced = False  # RunStarted reached the sinks
        self._last_tick = 0.0
        self._t_origin = 0.0

    @property
    def state(self) -> RunState:
        return self._state

    # -- the state machine --------------------------------------------------------
    def _transition(self, new: RunState, reason: str = "") -> None:
        """Change state (caller holds ``_lock``): checked, published on the bus
        at once (a watcher sees "pausing" even while a slow EIS point runs),
        and queued for the recording sinks, which only the engine thread calls."""
        old = self._state
        check_transition(old, new)
        self._state = new
        event = StateChanged(old.value, new.value, reason, self._run_time())
        self._state_events.append(event)
        self.bus.handle(event)  # never blocks

    def _recorders(self) -> list[Any]:
        """The sinks other than the bus (the run file): called in the engine thread only."""
        return [sink for sink in self.sinks if sink is not self.bus]

    def _enter_aborting(self, reason: str) -> None:
        with self._lock:
            if self._state in (RunState.RUNNING, RunState.PAUSING, RunState.PAUSED):
                self._transition(RunState.ABORTING, reason)

    def _flush_state_events(self) -> None:
        """Emit the queued StateChanged events (engine thread only)."""
        if not self._announced or not self._state_events:  # the common case costs no lock
            return
        with self._lock:
            events, self._state_events = self._state_events, []
        recorders = self._recorders()
        for event in events:
            for sink in recorders:
                sink.handle(event)

    # -- control (any thread) -------------------------------------------------
    def request_abort(self, reason: str = "aborted by user") -> None:
        with self._lock:
            if not self._abort_reason:
                self._abort_reason = reason
            if self._state in (RunState.RUNNING, RunState.PAUSING, RunState.PAUSED):
                self._transition(RunState.ABORTING, self._abort_reason)
            self._interrupt.set()
            self._resume.set()

    def request_pause(self) -> None:
        with self._lock:
            if self._state == RunState.RUNNING:
                self._transition(RunState.PAUSING, "pause requested")
                self._resume.clear()
                self._interrupt.set()

    def request_resume(self) -> None:
        with self._lock:
            if self._state in (RunState.PAUSING, RunState.PAUSED):
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
        with self._lock:
            self._transition(RunState.RUNNING, "started")
        self.thread.start()
        return RunHandle(self)

    def run(self, protocol: Protocol, params: Mapping[str, Any], cell: Cell, **kwargs: Any) -> RunOutcome:
        """Start and wait: convenient for tests and scripts."""
        outcome = self.start(protocol, params, cell, **kwargs).wait()
        assert outcome is not None
        return outcome

    # -- the engine thread --------------------------------------------------------
    def _emit(self, event: Event) -> None:
        self._flush_state_events()
        for sink in self.sinks:
            sink.handle(event)

    def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_tick >= TICK_INTERVAL:
            self._last_tick = now
            self._emit(Tick(self._run_time()))

    def _run_time(self) -> float:
        """Cell time since the run started (0 until it has)."""
        if not self._announced:
            return 0.0
        return self.clock.now() - self._t_origin

    def _main(self) -> None:
        try:
            self._run_and_end()
        finally:
            self.done.set()

    def _run_and_end(self) -> None:
        status = RunState.FAILED
        results: dict[str, Any] = {}
        error = ""
        detail = ""
        step_results: list[StepResult] = []
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
            for sink in self.sinks:
                sink.handle(RunStarted(info))
            self._announced = True
            results = self._drive(step_results)
            status = RunState.COMPLETED
        except _AbortRun:
            status, error = RunState.ABORTED, self._abort_reason
            self._enter_aborting(error)  # an abort requested before the run started
        except _ProtocolStop as exc:
            status, error = RunState.ABORTED, str(exc)
            self._enter_aborting(error)
        except _SafetyStop as exc:
            status, error = RunState.FAILED, str(exc)
        except SinkFailure as exc:
            status, error = RunState.FAILED, f"storage error: {exc}"
            detail = traceback.format_exc()
        except InstrumentError as exc:
            status, error = RunState.FAILED, f"instrument error: {one_line(str(exc))}"
            detail = traceback.format_exc()
        except Exception as exc:  # a protocol or sink bug must still end safely
            status = RunState.FAILED
            error = f"{type(exc).__name__}: {one_line(str(exc))}"
            detail = traceback.format_exc()
            log.debug("run failed", exc_info=True)
        finally:
            safe_error = self._make_safe()
            if safe_error:
                error = f"{error}; {safe_error}" if error else safe_error
                status = RunState.FAILED
            self._end(status, results, error, detail, step_results, safe_error)

    def _end(
        self,
        status: RunState,
        results: dict[str, Any],
        error: str,
        detail: str,
        step_results: list[StepResult],
        safe_error: str,
    ) -> None:
        """After the safe state: record it, enter the final state, tell the
        sinks the run ended and close them. Never raises: ``done`` follows."""
        if self._announced:
            self._deliver_pending()
            self._deliver_to_all(
                StatusChanged(
                    "safe" if not safe_error else "unsafe",
                    self._run_time(),
                    safe_error or "channel in its safe state (output off)",
                )
            )
        with self._lock:
            try:
                self._transition(status, error or status.value)
            except IllegalTransition as exc:  # an engine bug; the run must still end
                log.error("%s", exc)
                self._state = status
        self.outcome = RunOutcome(status, results, error, step_results, detail)
        ended = RunEnded(status.value, results, error, self.clock.wall_time().isoformat(timespec="seconds"), detail)
        if self._announced:
            self._deliver_pending()
            self._deliver_to_all(ended)
        else:
            # Nothing was announced (so nothing recorded), but watchers need the end.
            self.bus.handle(ended)
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                log.warning("closing %s failed: %s", type(sink).__name__, exc)
                log.debug("closing a sink failed", exc_info=True)

    def _deliver_pending(self) -> None:
        """The queued state changes to the recording sinks (the bus has them)."""
        with self._lock:
            pending, self._state_events = self._state_events, []
        for event in pending:
            self._deliver_to_all(event, self._recorders())

    def _deliver_to_all(self, event: Event, sinks: Sequence[Any] | None = None) -> None:
        """Every sink gets the event even if one of them fails on it."""
        for sink in self.sinks if sinks is None else sinks:
            try:
                sink.handle(event)
            except Exception as exc:
                log.warning("%s failed on %s: %s", type(sink).__name__, type(event).__name__, exc)
                log.debug("sink failure", exc_info=True)

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
                    breach = result.message.removeprefix("safety limit: ")
                    raise _SafetyStop(f"safety stop: {breach} (the channel's safety limit; step {index}, {step.kind})")
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
        samples = _StepSamples(keep=self._row_source is None)
        spectrum: list[np.ndarray] = []  # a spectrum is at most a few hundred points: kept
        charge_before = 0.0  # charge of earlier segments (pause splits a step)
        active = 0.0  # time spent executing the step, pauses excluded
        segment: Step | None = step
        try:
            while True:
                assert segment is not None
                t_segment = self._run_time()
                outcome, message = self._run_segment(index, segment, samples, spectrum, charge_before)
                if outcome is None:  # paused
                    active += self._run_time() - t_segment
                    charge_before = samples.charge(charge_before)
                    self._hold_until_resumed()
                    segment = step.remaining(_progress(active, charge_before, samples, spectrum))
                    if segment is None:
                        end_reason, message = EndReason.COMPLETED, "completed before the pause"
                        break
                    continue
                end_reason = outcome
                break
        except _AbortRun:  # aborted while held: the step ends like any aborted step (the caller stops)
            return self._finish_step(index, step, t_start, samples, spectrum, EndReason.ABORTED, self._abort_reason)
        except SinkFailure:
            raise  # the run file is gone; nothing more to record in it
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
        samples: _StepSamples,
        spectrum: list[np.ndarray],
        end_reason: EndReason,
        message: str,
    ) -> StepResult:
        spec = np.concatenate(spectrum) if spectrum else None
        data: np.ndarray | StepRows | None
        if self._row_source is None:
            data = samples.kept_rows()
        else:
            data = self._row_source(index)
            if data is not None and len(data) != samples.stats.n:
                raise RuntimeError(f"step {index}: the run file has {len(data)} rows, {samples.stats.n} were acquired")
        stats = samples.stats.stats()
        result = StepResult(
            index=index,
            step=step,
            end_reason=end_reason,
            t_start=t_start,
            duration=self._run_time() - t_start,
            charge=stats.last.get("Q", 0.0),
            last=stats.last,
            spectrum=spec,
            data=data,
            message=message,
            stats=stats,
        )
        self._emit(StepEnded(result))
        self._tick(force=True)
        return result

    def _run_segment(
        self,
        index: int,
        step: Step,
        samples: _StepSamples,
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
                    samples.add(block)
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
        with self._lock:
            if self._abort_reason:
                raise _AbortRun
            self._transition(RunState.PAUSED, "cell held")
        self._flush_state_events()
        while not self._resume.wait(TICK_INTERVAL):
            self._tick(force=True)
        with self._lock:
            # Checked under the lock: an abort cannot slip in between.
            if self._abort_reason:
                raise _AbortRun
            self._interrupt.clear()
            self._transition(RunState.RUNNING, "resumed")
        self._flush_state_events()


class _StepSamples:
    """What the engine keeps of a running step's samples: their summary
    (bounded, whatever the step's length) and, only when the run has no
    sink that can read rows back, the blocks themselves."""

    def __init__(self, keep: bool) -> None:
        self.stats = SampleAccumulator()
        self._kept: list[np.ndarray] | None = [] if keep else None

    def add(self, block: np.ndarray) -> None:
        self.stats.add(block)
        if self._kept is not None:
            self._kept.append(block)

    def charge(self, default: float) -> float:
        """The charge at the latest sample (``default`` before any)."""
        return self.stats.last_row.get("Q", default) if self.stats.n else default

    def kept_rows(self) -> np.ndarray:
        if not self._kept:
            return np.empty(0, SAMPLE_DTYPE)
        rows = np.concatenate(self._kept)
        self._kept = [rows]
        return rows


def _progress(active: float, charge: float, samples: _StepSamples, spectrum: list[np.ndarray]) -> StepProgress:
    """What a paused step has done so far, for ``Step.remaining``."""
    measured = samples.stats.n > 0
    return StepProgress(
        elapsed=active,
        charge=charge,
        points_done=sum(len(b) for b in spectrum),
        first_potential=samples.stats.first_row["E"] if measured else None,
        last_potential=samples.stats.last_row["E"] if measured else None,
    )
