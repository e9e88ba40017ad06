"""One run, from validated input to a closed run file.

Split in two so that nothing is written before everything is checked:
``prepare_run`` validates the protocol, its parameters, the instrument and the
cell (raising ParameterError/ValueError, no file touched); ``PreparedRun.execute``
creates the run file and drives the engine. The CLI, and later the queue and
the GUI, share this path.
"""

from __future__ import annotations

import atexit
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labctl import registry
from labctl.channel import Channel
from labctl.config import LabConfig
from labctl.engine import Engine, RunHandle, RunOutcome, new_run_id
from labctl.events import Subscription
from labctl.instruments import ChannelSpec, parse_speed, resolve_target
from labctl.protocol import Cell, Protocol
from labctl.safety import SafetyLimits

_active: set[RunHandle] = set()
_active_lock = threading.Lock()


def _abort_active_runs() -> None:
    """At interpreter exit, no run may be left driving a cell."""
    with _active_lock:
        handles = list(_active)
    for handle in handles:
        handle.abort("program exiting")
    for handle in handles:
        handle.wait(10.0)


atexit.register(_abort_active_runs)


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

    def start(self) -> tuple[RunHandle, Subscription, Any]:
        """Create the run file and start the engine thread."""
        from labctl.storage import RunFileWriter

        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = RunFileWriter(self.path)
        engine = Engine(self.channel, sinks=[writer], safety=self.safety)
        subscription = engine.bus.subscribe()
        handle = engine.start(
            self.protocol,
            self.values,
            self.cell,
            operator=self.operator,
            simulation=self.simulation,
            run_id=self.run_id,
        )
        with _active_lock:
            _active.add(handle)
        return handle, subscription, writer

    def execute(
        self,
        watcher: Callable[[Subscription, RunHandle], None] | Any | None = None,
        *,
        install_signal_handlers: bool = False,
    ) -> RunOutcome:
        """Run to the end; Ctrl-C (KeyboardInterrupt) aborts cleanly.

        ``watcher.watch(subscription, handle)`` (e.g. a progress display) is
        called in this thread while the engine runs in its own.
        """
        handle, subscription, writer = self.start()
        if install_signal_handlers:
            install_abort_signals(handle.abort)
        try:
            while True:
                try:
                    if watcher is not None:
                        watcher.watch(subscription, handle)
                    outcome = handle.wait()
                    break
                except KeyboardInterrupt:
                    handle.abort("aborted by user (Ctrl-C)")
        finally:
            subscription.close()
            writer.close()
            with _active_lock:
                _active.discard(handle)
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
    return PreparedRun(protocol, values, channel, cell, simulation, path, run_id, operator, target.safety)


def default_run_path(out_dir: Path, protocol_name: str, run_id: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return out_dir / f"{stamp}_{protocol_name}_{run_id}.h5"


def install_abort_signals(abort: Any) -> None:
    """SIGTERM/SIGHUP abort like Ctrl-C: safe state first, file closed as aborted."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: abort(f"aborted by signal {signal.Signals(signum).name}"))
