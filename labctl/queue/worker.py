"""The queue worker: claims jobs for its channels and runs each in its own process.

One worker per PC (``labctl queue run`` for simulated channels or a lab file on one PC,
``labctl queue worker`` for one PC of a multi-PC lab). Jobs on different channels run in
parallel; one channel runs its jobs one after another (the store's FIFO). Each job is a child
process (``labctl.queue.job``) that drives the cell, writes its run file and reports to the
store; this process only supervises:

- at start-up it recovers its own previous jobs (left active by a crash: ``interrupted``,
  channel held, run file closed as it was) before it claims anything;
- a child that exits while its job is still active (killed, crashed) gets the same treatment,
  for that channel only;
- on SIGTERM/SIGINT it aborts its running jobs (a person's decision: ``aborted``) and waits
  for their cells to be safe before it exits.

Children die with the worker (``PR_SET_PDEATHSIG``): a SIGKILLed worker leaves no job
running that nobody watches. Commands (pause, resume, cancel) reach a child through the store
(its heartbeat), not through this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from labctl.queue import (
    ACTIVE_STATES,
    Job,
    JobState,
    JobStore,
    OnFailure,
    StoreUnavailable,
    default_store_path,
    open_store,
)
from labctl.queue.identity import WorkerLock, owns, slot_id
from labctl.queue.jobparams import fits_channel
from labctl.queue.orphans import await_orphans, job_processes

log = logging.getLogger(__name__)

#: How long a restarted worker waits for an orphaned job process to close its run file
#: before it closes it itself (a hang guard: the orphan aborts at its next sample).
FILE_RECOVERY_S = 30.0
#: How long a stopping worker waits for its aborted jobs to end (hang guard) before killing them.
SHUTDOWN_WAIT_S = 120.0

#: ``estimator(job) -> expected seconds`` (branch "estimate" provides one).
Estimator = Callable[[Job], float]


#: Wait before a second start-up safe-state attempt (a guardian's own retries take seconds).
SAFE_RETRY_S = 5.0


@dataclass(frozen=True)
class QueueEvent:
    """Something a technician may want to hear about (the alerts hook ``on_event`` gets these).

    ``kind``: ``finished`` (a job ended: completed, failed, aborted, cancelled), ``interrupted``
    (its process or worker died), ``held`` (a channel now waits for ``queue ack``),
    ``queue_complete`` (nothing left to run on this worker's channels)."""

    kind: str
    message: str
    job: Job | None = None
    channel: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker runs on and where it writes."""

    worker_id: str
    channels: tuple[str, ...]
    store: str | None = None  # None: the default SQLite file
    runs_dir: Path = Path("runs")
    lab_path: Path | None = None
    speed: str = "max"  # simulated channels only

    @property
    def store_location(self) -> str:
        return str(default_store_path()) if self.store is None else str(self.store)


@dataclass
class RunningJob:
    job: Job
    slot: str
    file: Path
    process: subprocess.Popen[bytes]
    log_file: Path = field(default_factory=Path)


class Worker:
    """Supervises one child process per busy channel; see the module docstring."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        estimator: Estimator | None = None,
        on_event: Callable[[QueueEvent], None] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        if not settings.channels:
            raise ValueError("channels: a worker needs at least one channel")
        self.settings = settings
        self.estimator = estimator
        self.on_event = on_event
        self.poll_s = poll_s
        self.running: dict[str, RunningJob] = {}
        self.stop_requested = threading.Event()
        self._store: JobStore | None = None
        self._busy = False

    # ---- life -----------------------------------------------------------------------------

    @property
    def store(self) -> JobStore:
        assert self._store is not None, "the worker is not running"
        return self._store

    def run(self, *, until_empty: bool = False) -> None:
        """Work until stopped (``stop_requested``, SIGTERM/SIGINT) or, with ``until_empty``, until
        nothing is queued or running on this worker's channels."""
        lock = WorkerLock(self.settings.worker_id, self.settings.store_location)
        lock.acquire()
        self._store = open_store(self.settings.store)
        try:
            self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
            self.recover_previous()
            self.make_channels_safe()
            with self.store.watch() as watcher:
                while not self.stop_requested.is_set():
                    try:
                        if self._step(until_empty):
                            break
                        watcher.wait(self.poll_s)
                    except StoreUnavailable as exc:
                        # The store is away (a network blip): running jobs go on, nothing new starts.
                        log.warning("queue store unavailable: %s; retrying", exc)
                        self.stop_requested.wait(max(self.poll_s, 1.0))
        finally:
            self._stop_children()
            self.store.close()
            self._store = None
            lock.release()

    def _step(self, until_empty: bool) -> bool:
        """One round: reap ended children, start jobs on free channels. True: time to stop."""
        self._reap()
        if self.stop_requested.is_set():
            return True
        self._claim_free_channels()
        if not self.running and not self._work_left():
            if self._busy:
                self._emit(QueueEvent("queue_complete", "nothing left to run on " + self._names()))
                self._busy = False
            return until_empty
        return False

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP stop the worker (aborting its running jobs)."""
        for name in ("SIGTERM", "SIGINT", "SIGHUP"):
            signal.signal(getattr(signal, name), lambda signum, frame: self.stop_requested.set())

    # ---- recovery --------------------------------------------------------------------------

    def recover_previous(self) -> list[Job]:
        """Interrupt the jobs this worker (under any of its channel ids) left active.

        Their run files are closed first (waiting while an orphaned job process still ends its
        run), so that a job the store calls ``interrupted`` always has a finished file, and an
        orphan whose run completed meanwhile records its result instead of being interrupted."""
        left = [j for j in self.store.list_jobs(states=ACTIVE_STATES) if owns(self.settings.worker_id, j.worker)]
        orphans = [pid for job in left for pid in job_processes(job.id, str(job.worker))]
        await_orphans(orphans, FILE_RECOVERY_S)
        for job in left:
            if job.file:
                close_interrupted_file(Path(job.file))
        slots = {job.worker for job in left}
        interrupted: list[Job] = []
        for slot in sorted(s for s in slots if s is not None):
            interrupted += self._interrupt(slot, "the worker restarted after it stopped unexpectedly")
        return interrupted

    def make_channels_safe(self) -> None:
        """Before claiming anything, every instrument this worker drives is put in its safe
        state on a connection of its own (whatever a crashed predecessor left on). A channel
        that cannot be made safe is held: no job starts on it until a technician has looked."""
        if self.settings.lab_path is None:
            return  # simulated channels: there is no cell to switch off
        from labctl.config import load_lab
        from labctl.guardian import guarded_instruments, make_safe

        lab = load_lab(self.settings.lab_path)
        for channel in self.settings.channels:
            for guarded in guarded_instruments(lab, channel):
                try:
                    log.info("%s", _make_safe_with_retry(make_safe, guarded))
                except Exception as exc:  # any failure: the channel must not take a job
                    reason = f"could not apply the safe state at start-up: {exc}"
                    self.store.hold(channel, reason)
                    self._emit(QueueEvent("held", f"channel {channel} held: {reason}", None, channel))

    def _interrupt(self, slot: str, reason: str) -> list[Job]:
        jobs = self.store.recover_worker(slot, reason=reason)
        for job in jobs:
            if job.file:
                close_interrupted_file(Path(job.file))
            message = f"job {job.id} on {job.channel} interrupted: {reason}"
            self._emit(QueueEvent("interrupted", message, job, job.channel))
            self._emit(QueueEvent("held", f"channel {job.channel} held until acknowledged", job, job.channel))
        return jobs

    # ---- claiming and supervising ----------------------------------------------------------

    def _claim_free_channels(self) -> None:
        for channel in self.settings.channels:
            if channel in self.running or self.stop_requested.is_set():
                continue
            slot = slot_id(self.settings.worker_id, channel)
            job = self.store.claim_next(slot, [channel], fits=fits_channel)
            if job is not None:
                self._start(job, slot)

    def _start(self, job: Job, slot: str) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        file = self.settings.runs_dir / f"{stamp}_job{job.id}-{job.attempt}_{job.protocol}.h5"
        self.store.attach_file(job.id, slot, str(file.resolve()))
        command = [
            sys.executable, "-m", "labctl.queue.job",
            "--store", self.settings.store_location,
            "--job", str(job.id),
            "--worker", slot,
            "--file", str(file.resolve()),
            "--parent-pid", str(os.getpid()),
            "--speed", self.settings.speed,
        ]  # fmt: skip
        if self.settings.lab_path is not None:
            command += ["--lab", str(self.settings.lab_path)]
        expected = self._expected_seconds(job)
        if expected is not None:
            command += ["--expected-seconds", repr(expected)]
        log_file = file.with_suffix(".log")
        with open(log_file, "ab") as log_fh:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, start_new_session=True
            )
        self.running[str(job.channel)] = RunningJob(job, slot, file, process, log_file)
        self._busy = True
        log.info("job %s (%s) started on %s, pid %s", job.id, job.protocol, job.channel, process.pid)

    def _expected_seconds(self, job: Job) -> float | None:
        if self.estimator is None:
            return None
        try:
            return float(self.estimator(job))
        except Exception as exc:  # an estimate is a nicety: never a reason not to run
            log.warning("no estimate for job %s: %s", job.id, exc)
            return None

    def _reap(self) -> None:
        for channel, running in list(self.running.items()):
            code = running.process.poll()
            if code is None:
                continue
            job = self.store.get(running.job.id)  # first: if the store is away, reaped next round
            del self.running[channel]
            with contextlib.suppress(OSError):
                if running.log_file.stat().st_size == 0:
                    running.log_file.unlink()  # a job that said nothing leaves no empty log
            if job.state in ACTIVE_STATES and job.worker == running.slot:
                self._interrupt(running.slot, f"its job process exited with code {code}")
                continue
            self._emit(QueueEvent("finished", f"job {job.id} on {channel} {job.state}", job, channel))
            if job.state == JobState.FAILED and job.on_failure == OnFailure.STOP:
                self._emit(QueueEvent("held", f"channel {channel} held: job {job.id} failed", job, channel))

    def _work_left(self) -> bool:
        """Queued jobs that one of this worker's channels may still run (not on a held channel)."""
        held = {hold.channel for hold in self.store.holds()}
        open_channels = [c for c in self.settings.channels if c not in held]
        for job in self.store.list_jobs(states=[JobState.QUEUED]):
            wanted = job.requested_channel
            if (wanted is None and open_channels) or wanted in open_channels:
                return True
        return False

    def _stop_children(self) -> None:
        """Abort every running job (SIGTERM: the child puts its cell in the safe state and
        records the abort), then wait for them; kill only what hangs past the guard."""
        for running in self.running.values():
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        for running in self.running.values():
            try:
                running.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait()
        if self._store is not None:
            self._reap()

    def _names(self) -> str:
        return ", ".join(self.settings.channels)

    def _emit(self, event: QueueEvent) -> None:
        log.info("%s", event.message)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception as exc:  # an alert that fails must not stop the queue
                log.warning("queue event hook failed: %s", exc)


def _make_safe_with_retry(make_safe: Callable[..., str], guarded: Any) -> str:
    """A crashed job's guardian may still hold a one-connection port (a serial EmStat) for
    a few seconds while it retries: one more attempt after it has had time to let go."""
    try:
        return make_safe(guarded.config(), guarded.channel)
    except Exception:
        time.sleep(SAFE_RETRY_S)
        return make_safe(guarded.config(), guarded.channel)


def close_interrupted_file(path: Path, wait_s: float = FILE_RECOVERY_S) -> str | None:
    """Close the run file of an interrupted job so that any program opens it; waits while an
    orphaned job process is still ending its run (it then closes the file itself)."""
    from labctl.storage.recover import recover_file

    if not path.exists():
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return recover_file(path)
        except RuntimeError:
            if time.monotonic() > deadline:
                log.warning("%s: its writer still looks alive; left as it is", path)
                return None
            time.sleep(0.1)
        except OSError as exc:
            log.warning("%s: cannot be closed (%s)", path, exc)
            return None


def sim_channels(count: int) -> tuple[str, ...]:
    """The simulated channels ``sim1`` … ``simN`` of a runner without a lab file."""
    if not 1 <= count <= 64:
        raise ValueError(f"--sim-channels: {count} is out of range (allowed: 1 to 64)")
    return tuple(f"sim{i}" for i in range(1, count + 1))

