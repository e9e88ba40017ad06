"""One queue job in its own process: ``python -m labctl.queue.job --store S --job ID …``.

The worker starts one of these per job so that a job that crashes, hangs or is killed takes
nothing else with it. The process runs the job through ``prepare_run``/``execute`` (the same
path as ``labctl run``), heartbeats the store with its progress, acts on the pause / resume /
cancel requests the heartbeat hands back, and records the outcome with ``finish``.

If the supervising worker dies, the kernel tells this process (``PR_SET_PDEATHSIG``): it
aborts the run (the cell goes to its safe state, the file records why) and leaves the job
active in the store, so that the restarted worker marks it ``interrupted`` and holds the
channel: a job is never re-run behind anyone's back.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from labctl.engine import RunHandle, RunState
from labctl.events import StateChanged, StepStarted, Subscription
from labctl.jsonable import to_jsonable
from labctl.queue import JobState, JobStore, QueueError, Request, StoreUnavailable, open_store
from labctl.queue.jobparams import instrument_for, split_params, wall_pace

#: Wall seconds between heartbeats (each one also collects a waiting pause/resume/cancel).
HEARTBEAT_S = 0.25
#: A step change is reported at once, but not more often than this (thousands of short steps
#: in virtual time must not become thousands of synchronous store writes).
MIN_BEAT_S = 0.05
#: Attempts at recording the outcome while the store is unreachable (one second apart).
FINISH_ATTEMPTS = 30
#: Why the run file says the run stopped when its worker died.
ORPHAN_REASON = "interrupted: the queue worker supervising this job died"
#: Exit code when the job could not be started or reported (the worker then interrupts it).
EXIT_BROKEN = 3

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int) -> bool:
    """Ask the kernel for ``signum`` when the parent dies; False if the parent is gone already."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == parent_pid


class JobReporter:
    """Watches the run (in the main thread) and keeps the store told; the store's requests
    come back with each heartbeat and are applied to the run once each."""

    def __init__(
        self,
        store: JobStore,
        job_id: int,
        worker: str,
        total_steps: int,
        expected_seconds: float | None,
        orphaned: threading.Event,
        pace: float | None = 1.0,
    ) -> None:
        """``expected_seconds``: the dry run's duration in cell seconds; ``pace``: wall seconds
        per cell second on this channel (1/N for a simulator at N× real time, None at max)."""
        self.store = store
        self.job_id = job_id
        self.worker = worker
        self.total_steps = max(total_steps, 1)
        self.expected_seconds = expected_seconds
        self.pace = pace
        self.t_cell = 0.0  # cell seconds since the run started, from the run's events
        self.orphaned = orphaned
        self.cancelled = False
        self.step_index = -1
        self.step_label: str | None = None
        self.started = time.time()
        self._last_beat = 0.0
        self._aborting = False

    def watch(self, subscription: Subscription, handle: RunHandle) -> None:
        while not handle.done:
            event = subscription.get(timeout=0.1)
            changed = False
            while event is not None:
                changed |= self._note(event)
                event = subscription.get(timeout=0)
            if self.orphaned.is_set():
                if not self._aborting:
                    self._aborting = True
                    handle.abort(ORPHAN_REASON)
                continue
            since = time.monotonic() - self._last_beat
            if since >= HEARTBEAT_S or (changed and since >= MIN_BEAT_S):
                self._beat(handle)

    def _note(self, event: Any) -> bool:
        t_cell = getattr(event, "t_cell", getattr(event, "t_start", None))
        if isinstance(t_cell, (int, float)) and math.isfinite(t_cell):
            self.t_cell = max(self.t_cell, float(t_cell))
        if isinstance(event, StepStarted):
            self.step_index = event.index
            self.step_label = event.step.label or type(event.step).__name__
            return True
        if isinstance(event, StateChanged) and not self.orphaned.is_set():
            self._report_state(event)
        return False

    def _report_state(self, event: StateChanged) -> None:
        try:
            if event.new == RunState.PAUSED:
                self.store.report_paused(self.job_id, self.worker)
            elif event.new == RunState.RUNNING and event.old in (RunState.PAUSED, RunState.PAUSING):
                self.store.report_resumed(self.job_id, self.worker)
        except QueueError:
            pass  # the store moved on (e.g. a cancel arrived meanwhile); the next heartbeat tells

    def _expected(self) -> float | None:
        expected = self.expected_seconds
        return expected if expected is not None and math.isfinite(expected) and expected > 0 else None

    def fraction(self) -> float:
        """Done so far: cell time against the dry run's duration when there is one (a protocol
        whose plan grows as it goes, such as a CCD ladder, has no fixed step count), else
        steps started against the planned ones. Never 1 before the run has ended."""
        expected = self._expected()
        if expected is not None:
            return min(self.t_cell / expected, 0.99)
        return min(max(self.step_index, 0) / self.total_steps, 0.99)

    def eta(self) -> float | None:
        """Expected end (epoch s, wall clock): the measured pace of the run so far applied to
        what is left; before any progress, the estimate in cell seconds × the channel's pace."""
        now = time.time()
        elapsed = now - self.started
        fraction = self.fraction()
        if fraction > 0:
            return now + elapsed * (1 - fraction) / fraction
        expected = self._expected()
        if expected is not None and self.pace is not None:
            return self.started + expected * self.pace
        return None

    def _beat(self, handle: RunHandle) -> None:
        self._last_beat = time.monotonic()
        try:
            request = self.store.heartbeat(
                self.job_id, self.worker, fraction=self.fraction(), step=self.step_label, eta=self.eta()
            )
        except QueueError:
            return  # store briefly unavailable, or the job was taken away: keep the cell safe, go on
        # Each request is applied only where it still means something, so seeing it again on
        # the next heartbeat (before the store clears it) does nothing twice.
        if request == Request.CANCEL and not self.cancelled:
            self.cancelled = True
            handle.abort("cancelled from the queue")
        elif request == Request.PAUSE and handle.state == RunState.RUNNING:
            handle.pause()
        elif request == Request.RESUME and handle.state in (RunState.PAUSED, RunState.PAUSING):
            handle.resume()


def finish_state(status: RunState, cancelled: bool) -> JobState:
    if status == RunState.COMPLETED:
        return JobState.COMPLETED
    if status == RunState.ABORTED:
        return JobState.CANCELLED if cancelled else JobState.ABORTED
    return JobState.FAILED


def run_job(args: argparse.Namespace, orphaned: threading.Event) -> int:
    from labctl.params import ParameterError
    from labctl.runner import prepare_run

    store = open_store(args.store)
    try:
        job = store.get(args.job)
        params, sim = split_params(job.params)
        lab = None
        try:
            if args.lab:
                from labctl.config import load_lab

                lab = load_lab(Path(args.lab))
            prepared = prepare_run(
                job.protocol,
                params=params,
                instrument=instrument_for(job.channel),
                sim=sim,
                speed=args.speed,
                path=Path(args.file),
                cell_id=job.cell.id,
                lab=lab,
            )
            total = len(list(prepared.protocol.preview_steps(prepared.values, prepared.cell)))
        except (ParameterError, ValueError, OSError) as exc:
            store.finish(job.id, args.worker, JobState.FAILED, error=f"not started: {' '.join(str(exc).split())}")
            return 0
        expected = args.expected_seconds
        pace = wall_pace(args.speed)(job.channel)
        reporter = JobReporter(store, job.id, args.worker, total, expected, orphaned, pace)
        outcome = prepared.execute(reporter, install_signal_handlers=True)
        if orphaned.is_set() and outcome.status != RunState.COMPLETED:
            return 0  # left active: the restarted worker marks it interrupted
        results = to_jsonable(outcome.results) if outcome.results else None
        for attempt in range(FINISH_ATTEMPTS):
            try:
                store.finish(
                    job.id,
                    args.worker,
                    finish_state(outcome.status, reporter.cancelled),
                    results=results if isinstance(results, dict) else {"value": results},
                    file=str(prepared.path),
                    error=outcome.error or None,
                )
                return 0
            except StoreUnavailable as exc:  # a network blip must not lose a night's result
                print(f"job {job.id}: store unreachable ({exc}); retrying", file=sys.stderr)
                if attempt + 1 < FINISH_ATTEMPTS:
                    time.sleep(1.0)
            except QueueError as exc:
                # A restarted worker interrupted the job first (its file still tells the outcome).
                print(f"job {job.id}: outcome not recorded in the store: {exc}", file=sys.stderr)
                return 0
        return EXIT_BROKEN
    finally:
        store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labctl.queue.job", description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--worker", required=True, help="the job's worker id in the store")
    parser.add_argument("--file", required=True, help="the run file to write")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--lab", default=None)
    parser.add_argument("--speed", default="max")
    parser.add_argument("--expected-seconds", type=float, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    orphaned = threading.Event()
    signal.signal(signal.SIGUSR1, lambda signum, frame: orphaned.set())
    if not die_with_parent(args.parent_pid, signal.SIGUSR1):
        return EXIT_BROKEN  # the worker is gone already: start nothing
    return run_job(args, orphaned)


if __name__ == "__main__":
    sys.exit(main())
