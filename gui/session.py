"""What the GUI controls, without Qt: direct runs, the queue store and the queue runner.

The GUI is a view and a remote control. A run started with "Start now" goes through the same
``prepare_run``/``start`` path as ``labctl run``: the engine runs in its own thread and the GUI
only drains a bounded subscription of its event bus on a timer. Everything queued goes to the
persistent store; the jobs are run by a ``labctl queue run`` process (started here for the demo,
or by anyone from the CLI, or a worker on another PC), so the GUI shows them the same way
whoever runs them, and closing the GUI need not stop them.

A direct run holds its channel in the store while it runs ("GUI run … in progress"), so a
queue runner cannot claim a cell that is already driven; the hold is acknowledged when the run
has ended and its cell is safe. If the GUI dies mid-run the hold stays: a technician looks at
the cell before the queue uses it again (the queue's rule for interrupted jobs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.config import LabConfig
from labctl.engine import RunHandle
from labctl.events import Subscription
from labctl.queue import CellInfo, Job, JobSpec, JobState, JobStore, OnFailure, open_store
from labctl.queue.jobparams import instrument_for, job_params
from labctl.queue.validate import known_channels

#: Prefix of the store hold that marks a channel driven by a GUI run.
GUI_HOLD = "GUI run"


@dataclass(frozen=True)
class RunRequest:
    """What the launcher asks for: protocol, parameters as typed, channel, cell."""

    protocol: str
    params: Mapping[str, str]
    channel: str
    cell_id: str
    electrolyte: str = ""
    notes: str = ""
    sim: Mapping[str, str] = field(default_factory=dict)
    on_failure: OnFailure = OnFailure.CONTINUE

    def job_spec(self) -> JobSpec:
        return JobSpec(
            protocol=self.protocol,
            cell=CellInfo(self.cell_id, self.electrolyte, self.notes),
            params=job_params(dict(self.params), dict(self.sim)),
            channel=self.channel,
            on_failure=self.on_failure,
        ).validated()


@dataclass
class ActiveRun:
    """A run started from this GUI: its handle, the GUI's subscription, and its file."""

    channel: str
    protocol: str
    run_id: str
    path: Path
    handle: RunHandle
    subscription: Subscription
    cell_id: str = ""


class Session:
    """The GUI's connection to the lab: lab file, job store, runs folder, simulated channels."""

    def __init__(
        self,
        *,
        lab: LabConfig | None = None,
        store: str | None = None,
        runs_dir: Path = Path("runs"),
        sim_channels: int = 4,
        speed: str = "max",
    ) -> None:
        self.lab = lab
        self.store_location = store
        self.runs_dir = Path(runs_dir)
        self.sim_count = sim_channels if lab is None else 0
        self.speed = speed
        self.store: JobStore = open_store(store)
        self.runs: dict[str, ActiveRun] = {}
        self.runner: subprocess.Popen[bytes] | None = None
        #: channel -> what went wrong in the last run started here (shown until acknowledged)
        self.faults: dict[str, str] = {}
        #: Test hook: called with the built channel before the engine starts.
        self.channel_hook: Callable[[Any], None] | None = None

    # ---- channels ------------------------------------------------------------------------

    def channels(self) -> list[str]:
        """The measuring channels: the lab file's, or the simulated sim1…simN."""
        if self.lab is not None:
            return known_channels(self.lab)
        return [f"sim{i}" for i in range(1, self.sim_count + 1)]

    def describe_channel(self, channel: str) -> str:
        if self.lab is None:
            return "physics simulator"
        instrument, _ = self.lab.channel(channel)
        return f"{instrument.driver} at {instrument.resource}"

    def channel_state(self, channel: str, jobs: list[Job], holds: Mapping[str, str]) -> str:
        """idle / running … / paused – cell held / held: … (fault and interruption reasons)."""
        run = self.runs.get(channel)
        if run is not None and not run.handle.done:
            state = run.handle.state.value
            if state == "paused":
                return f"paused – cell held (run {run.run_id}, {run.protocol})"
            return f"{state} run {run.run_id} ({run.protocol})"
        for job in jobs:
            if job.channel == channel and job.active:
                if job.state == JobState.PAUSED:
                    return f"paused – cell held (job {job.id}, {job.protocol})"
                return f"{job.state.value} job {job.id} ({job.protocol})"
        if channel in holds:
            return f"held: {holds[channel]}"
        if channel in self.faults:
            return f"fault (acknowledge): {self.faults[channel]}"
        return "idle"

    # ---- direct runs -----------------------------------------------------------------------

    def start_run(self, request: RunRequest) -> ActiveRun:
        """Validate and start a run now (ParameterError/ValueError before anything is touched)."""
        from labctl.runner import prepare_run

        channel = request.channel
        if channel in self.runs and not self.runs[channel].handle.done:
            raise ValueError(f"channel: {channel} is already running run {self.runs[channel].run_id}")
        busy = [j for j in self.store.list_jobs(states=(JobState.RUNNING, JobState.PAUSING, JobState.PAUSED))
                if j.channel == channel]  # fmt: skip
        if busy:
            raise ValueError(f"channel: {channel} is running queue job {busy[0].id}; add this run to the queue")
        holds = {h.channel: h.reason for h in self.store.holds()}
        if channel in holds:
            raise ValueError(f"channel: {channel} is held ({holds[channel]}); acknowledge it first")
        if channel in self.faults:
            raise ValueError(f"channel: {channel} had a fault ({self.faults[channel]}); acknowledge it first")
        prepared = prepare_run(
            request.protocol,
            params=dict(request.params),
            instrument=instrument_for(channel),
            sim=dict(request.sim),
            speed=self.speed,
            out_dir=self.runs_dir,
            cell_id=request.cell_id,
            lab=self.lab,
        )
        if request.notes or request.electrolyte:
            prepared.cell = _with_notes(prepared.cell, request)
        if self.channel_hook is not None:
            self.channel_hook(prepared.channel)
        self.store.hold(channel, f"{GUI_HOLD} {prepared.run_id} in progress")
        try:
            handle, subscription = prepared.start()
        except BaseException:
            self.store.ack(channel)
            raise
        run = ActiveRun(
            channel, request.protocol, prepared.run_id, prepared.path, handle, subscription, request.cell_id
        )
        self.runs[channel] = run
        return run

    def run_ended(self, run: ActiveRun) -> None:
        """The run's end event was seen: release the subscription and the channel's hold."""
        run.subscription.close()
        run.handle.wait(30.0)  # the cell is safe and the file closed before the channel is freed
        holds = {h.channel: h.reason for h in self.store.holds()}
        if holds.get(run.channel, "").startswith(f"{GUI_HOLD} {run.run_id}"):
            self.store.ack(run.channel)

    def active_runs(self) -> list[ActiveRun]:
        return [r for r in self.runs.values() if not r.handle.done]

    def abort_all(self, reason: str, wait_s: float = 60.0) -> None:
        """Abort every direct run and wait for each cell to be in its safe state."""
        runs = self.active_runs()
        for run in runs:
            run.handle.abort(reason)
        for run in runs:
            run.handle.wait(wait_s)
            self.run_ended(run)

    # ---- the queue runner --------------------------------------------------------------------

    def start_runner(self) -> None:
        """Start ``labctl queue run`` on this session's channels (its own process)."""
        if self.runner is not None and self.runner.poll() is None:
            return
        command = [sys.executable, "-m", "labctl.cli", "queue", "run", "--runs", str(self.runs_dir),
                   "--speed", self.speed, "--worker-id", f"gui-{os.getpid()}"]  # fmt: skip
        if self.store_location is not None:
            command += ["--store", str(self.store_location)]
        if self.lab is not None:
            command += ["--lab", str(self.lab.path)]
        else:
            command += ["--sim-channels", str(self.sim_count)]
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.runs_dir / "queue-runner.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.runner = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           start_new_session=True)  # fmt: skip
        finally:
            log.close()

    @property
    def runner_alive(self) -> bool:
        return self.runner is not None and self.runner.poll() is None

    def stop_runner(self, wait_s: float = 120.0) -> None:
        """SIGTERM: the runner aborts its jobs (each cell to its safe state) and exits."""
        if self.runner is None:
            return
        if self.runner.poll() is None:
            self.runner.send_signal(signal.SIGTERM)
            try:
                self.runner.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.runner.kill()
                self.runner.wait()
        self.runner = None

    def detach_runner(self) -> None:
        """Leave the runner going after the GUI exits (it is its own session and process)."""
        self.runner = None

    def close(self) -> None:
        self.store.close()


def _with_notes(cell: Any, request: RunRequest) -> Any:
    from dataclasses import replace

    parts = [f"electrolyte: {request.electrolyte}" if request.electrolyte else "", request.notes]
    return replace(cell, notes="; ".join(p for p in parts if p))
