"""One run, from validated input to a closed run file.

Split in two so that nothing is written before everything is checked:
``prepare_run`` validates the protocol, its parameters, the instrument, the
cell and the output folder (raising ParameterError/ValueError, no file
touched); ``PreparedRun.execute`` creates the run file and drives the engine.
The CLI, and later the queue and the GUI, share this path.

The end of a run has one path (see ``labctl.engine``): the engine thread puts
the cell in its safe state, records the end, closes the run file and only then
sets its completion signal. Everything here that waits for a run (``execute``,
the exit handler) waits on that signal, never on ``Thread.join``, and never
closes the file itself. Signals (SIGINT, SIGTERM, SIGHUP) and program exit
only *request* an abort and then wait.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labctl import registry
from labctl.calibration import apply_r_leads_default
from labctl.cathode import from_lab_cell
from labctl.channel import Channel
from labctl.config import LabConfig
from labctl.engine import Engine, RunHandle, RunOutcome, new_run_id
from labctl.events import Subscription
from labctl.guardian import GuardedInstrument, Guardian, GuardianSink, guarded_instruments
from labctl.instruments import ChannelSpec, resolve_target
from labctl.protocol import Cell, Protocol
from labctl.safety import SafetyLimits
from labctl.speed import parse_speed

_active: set[RunHandle] = set()
_active_lock = threading.Lock()

#: How long program exit waits for an aborted run to reach its safe state and
#: close its file (a hang guard: a healthy run ends within a sample period).
EXIT_WAIT_S = 60.0

#: Free space the output folder needs before a run starts: the file's layout
#: and its first sample chunk (640 KiB) are allocated at the first flush.
MIN_FREE_BYTES = 1 << 20


def _abort_active_runs() -> None:
    """At interpreter exit, no run may be left driving a cell, and no engine
    thread may be frozen mid-write (it would hold h5py's lock at shutdown)."""
    with _active_lock:
        handles = list(_active)
    for handle in handles:
        handle.abort("program exiting")
    for handle in handles:
        wait_through_interrupts(handle, EXIT_WAIT_S)


atexit.register(_abort_active_runs)


def wait_through_interrupts(handle: RunHandle, timeout: float | None = None) -> RunOutcome | None:
    """Wait for the run's end; a Ctrl-C meanwhile requests the abort again
    and goes on waiting (it cannot cut the wait short)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return handle.wait(remaining)
        except KeyboardInterrupt:
            handle.abort("aborted by user (Ctrl-C)")


class AbortOnSignals:
    """SIGINT, SIGTERM and SIGHUP request an abort of the run; nothing else.

    The handler only sets an event: a helper thread makes the request, so a
    signal arriving while the main thread is inside the engine's lock (or a
    second Ctrl-C inside the first one's handling) can never deadlock or
    unwind anything. Before ``attach`` a signal is remembered and applied then.
    """

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self) -> None:
        self._requested = threading.Event()
        self._attached = threading.Event()
        self._reason = ""
        self._handle: RunHandle | None = None
        self._previous: dict[int, Any] = {}
        self._helper = threading.Thread(target=self._forward, name="labctl-abort-on-signal", daemon=True)

    def install(self) -> AbortOnSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._helper.start()
        return self

    def attach(self, handle: RunHandle) -> None:
        self._handle = handle
        self._attached.set()

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        if not self._requested.is_set():
            name = signal.Signals(signum).name
            self._reason = "aborted by user (Ctrl-C)" if name == "SIGINT" else f"aborted by signal {name}"
            self._requested.set()

    def _forward(self) -> None:
        self._requested.wait()
        self._attached.wait()
        assert self._handle is not None
        self._handle.abort(self._reason)


@dataclass
class PreparedRun:
    protocol: Protocol
    values: dict[str, Any]
    channel: Channel
    cell: Cell
    simulation: dict[str, Any] | None
    path: Path
    run_id: str
    operator: str = ""
    safety: SafetyLimits = field(default_factory=SafetyLimits)
    #: The hardware the run drives, for the dead-man guardian (empty on the simulator:
    #: there is no cell to leave powered).
    guarded: tuple[GuardedInstrument, ...] = ()

    def start(self) -> tuple[RunHandle, Subscription]:
        """Create the run file and start the engine thread.

        The engine owns the run file: it closes it when the run ends, before
        ``handle.wait`` returns. A caller that starts a run and exits is
        covered by the exit handler (abort, then wait for the end). A
        process killed outright is covered by the guardian (``labctl.guardian``),
        armed here before the engine first touches the instrument and stood
        down by the engine's last sink call, after its own safe state.
        """
        from labctl.storage import RunFileWriter

        guardian = Guardian.start(self.guarded, self.path) if self.guarded else None
        try:
            sinks: list[Any] = [RunFileWriter(self.path)]
            if guardian is not None:
                sinks.append(GuardianSink(guardian))
            engine = Engine(self.channel, sinks=sinks, safety=self.safety)
            subscription = engine.bus.subscribe()
            handle = engine.start(
                self.protocol,
                self.values,
                self.cell,
                operator=self.operator,
                simulation=self.simulation,
                run_id=self.run_id,
            )
        except BaseException:
            if guardian is not None:
                guardian.stand_down()  # the engine never ran: the instrument was not touched
            raise
        with _active_lock:
            _active.difference_update([h for h in _active if h.done])  # runs that ended need no exit handling
            _active.add(handle)
        return handle, subscription

    def execute(
        self,
        watcher: Callable[[Subscription, RunHandle], None] | Any | None = None,
        *,
        install_signal_handlers: bool = False,
    ) -> RunOutcome:
        """Run to the end and return how it ended.

        ``watcher.watch(subscription, handle)`` (e.g. a progress display) is
        called in this thread while the engine runs in its own. With
        ``install_signal_handlers`` SIGINT/SIGTERM/SIGHUP request an abort
        (restored afterwards); without, a KeyboardInterrupt does the same.
        Either way this returns only once the run has ended and its file is
        closed.
        """
        signals = AbortOnSignals().install() if install_signal_handlers else None
        try:
            handle, subscription = self.start()
            if signals is not None:
                signals.attach(handle)
            try:
                if watcher is not None:
                    try:
                        watcher.watch(subscription, handle)
                    except KeyboardInterrupt:
                        handle.abort("aborted by user (Ctrl-C)")
                outcome = wait_through_interrupts(handle)
            finally:
                subscription.close()
                if handle.done:
                    with _active_lock:
                        _active.discard(handle)
        finally:
            if signals is not None:
                signals.restore()
        assert outcome is not None
        return outcome


def prepare_run(
    protocol_name: str,
    *,
    params: Mapping[str, str],
    instrument: str = "sim",
    sim: Mapping[str, str] | None = None,
    speed: str = "max",
    out_dir: Path = Path("runs"),
    cell_id: str = "",
    operator: str = "",
    path: Path | None = None,
    lab: LabConfig | None = None,
) -> PreparedRun:
    """Validate everything; raise ParameterError/ValueError before any file exists."""
    protocol = registry.get_protocol(protocol_name)
    params = apply_r_leads_default(protocol, params, lab, instrument)  # r_leads from the channel's calibration
    values = protocol.validate(params)
    spec = ChannelSpec(instrument=instrument, sim=dict(sim or {}), speed=parse_speed(speed))
    target = resolve_target(spec, lab)
    cell_type = protocol.cell_type_for(values)
    channel, simulation = target.build(cell_type) if target.simulated else (None, None)
    known_cell = dict(channel.cell_info() or {}) if channel is not None else {}
    defaults = target.cell_defaults
    known_cell.update(
        {key: defaults[src] for key, src in (("area_cm2", "area"), ("thickness_um", "thickness")) if src in defaults}
    )
    if from_lab_cell(defaults):  # a full cell's cathode from the lab file wins over the simulator's
        known_cell["cathode"] = {**(known_cell.get("cathode") or {}), **from_lab_cell(defaults)}
    cell = protocol.resolve_cell(values, known_cell or None, cell_id or str(defaults.get("id", "")))
    protocol.check_values(values, cell)
    target.safety.check_demands(protocol.demands_for(values, cell))
    if channel is None:  # hardware is only touched once everything is known to be acceptable
        channel, simulation = target.build(cell_type)
    missing = sorted(k for k in protocol.step_kinds if k not in channel.capabilities.step_kinds)
    if missing:
        raise ValueError(
            f"instrument '{instrument}' cannot run protocol '{protocol.name}': "
            f"it does not support {', '.join(missing)} steps"
        )
    for step in protocol.preview_steps(values, cell):
        refusal = channel.capabilities.refusal(step)
        if refusal:
            raise ValueError(f"instrument '{instrument}' cannot run protocol '{protocol.name}': {refusal}")
    if not operator and lab is not None:
        operator = lab.operator
    run_id = new_run_id()
    if path is None:
        path = default_run_path(out_dir, protocol.name, run_id)
    if path.exists():
        raise ValueError(f"run file {path} already exists")
    check_output_dir(path.parent)
    guarded = () if target.simulated or lab is None else guarded_instruments(lab, instrument)
    return PreparedRun(protocol, values, channel, cell, simulation, path, run_id, operator, target.safety, guarded)


def default_run_path(out_dir: Path, protocol_name: str, run_id: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return out_dir / f"{stamp}_{protocol_name}_{run_id}.h5"


def check_output_dir(directory: Path, min_free: int = MIN_FREE_BYTES) -> None:
    """The run file's folder exists (or is created), takes a new file and
    has room for the first flush; ValueError naming ``--out`` otherwise.

    Checked before the cell is touched: a run that cannot be recorded must
    not start. (A probe file is created and removed: permission bits alone
    do not tell, e.g. on a read-only mount or for root.)
    """
    allowed = "allowed: a folder that exists or can be created, writable, with at least 1 MiB free"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: cannot create folder {directory}: {exc.strerror or exc} ({allowed})") from None
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".labctl-probe-"):
            pass
    except OSError as exc:
        raise ValueError(f"--out: cannot write in {directory}: {exc.strerror or exc} ({allowed})") from None
    free = shutil.disk_usage(directory).free
    if free < min_free:
        raise ValueError(f"--out: only {free / 1024:.0f} KiB free in {directory} ({allowed})")
