"""How long queued jobs will take: dry runs on the simulator, before anything touches a cell.

A technician loading a night's work wants to know when each channel will be free, and the
queue wants to show an ETA that gets better as a job runs. Both come from one source: the
job's protocol run with its parameters on the simulated channel in virtual time (``--speed
max``), i.e. the same ``prepare_run``/``execute`` path as a real run. Protocols are generators
that react to the data (cut-offs, shorts, steady states), so only running them tells the
duration; a formula per protocol would drift from the code.

The simulator's defaults stand in for the real cell unless the job carries simulation truth
(its ``--sim`` settings); the job's own geometry (``area``/``thickness`` parameters, else the
lab file's cell defaults for its channel) is used either way. A job the simulator cannot run
(an unknown protocol, a parameter only an instrument understands, a run that fails) gets an
``Estimate`` with ``duration=None`` and the reason: never an exception.

The application layer (it looks protocols up and builds the simulator through the runner).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.config import LabConfig
from labctl.engine import RunState
from labctl.queue.jobparams import split_params
from labctl.queue.jobs import FINISHED_STATES, Job, JobSpec, JobState

#: Wall seconds a single dry run may take before it is given up as "unknown" (a hang guard:
#: a night's protocol runs in well under a second of wall time on the virtual clock).
DRY_RUN_WALL_LIMIT_S = 300.0

#: Parameters that carry the cell's geometry, filled from the lab file's cell defaults.
GEOMETRY_KEYS = ("area", "thickness")


@dataclass(frozen=True)
class StepEstimate:
    """One step of the dry run: its duration and the cell time at its end (from run start)."""

    index: int
    kind: str
    label: str
    duration: float
    ends_at: float


@dataclass(frozen=True)
class Estimate:
    """The expected duration of a job in cell seconds, or None with the ``reason`` it is unknown."""

    duration: float | None
    steps: tuple[StepEstimate, ...] = ()
    reason: str = ""

    @property
    def known(self) -> bool:
        return self.duration is not None

    def remaining(self, steps_done: int, elapsed: float) -> float | None:
        """Cell seconds left once ``steps_done`` steps have ended after ``elapsed`` cell seconds.

        The estimate of what is left is scaled by how the job has gone so far (measured /
        estimated time to the end of the last finished step), so a cell that runs slower than
        the simulator's defaults pushes the ETA out as soon as the first step ends."""
        if self.duration is None:
            return None
        if steps_done <= 0 or not self.steps:
            return max(self.duration - max(elapsed, 0.0), 0.0)
        done_at = self.steps[min(steps_done, len(self.steps)) - 1].ends_at
        left = max(self.duration - done_at, 0.0)
        ratio = elapsed / done_at if done_at > 0 and elapsed > 0 else 1.0
        return left * ratio

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "reason": self.reason,
            "steps": [
                {"index": s.index, "kind": s.kind, "label": s.label, "duration_s": s.duration, "ends_at_s": s.ends_at}
                for s in self.steps
            ],
        }


def unknown(reason: str) -> Estimate:
    return Estimate(None, (), " ".join(reason.split()) or "unknown")


#: What a job is to the estimator: a stored job or a spec not yet added.
JobLike = Job | JobSpec
#: The simulation truth (``--sim`` settings, text as typed) recorded for a job, if any.
SimOf = Callable[[JobLike], Mapping[str, str] | None]


def _requested_channel(job: JobLike) -> str | None:
    if isinstance(job, Job):
        return job.channel or job.requested_channel
    return job.channel


def _text(value: Any) -> str:
    """A parameter as the text ``-p`` would carry (lists as comma-separated values)."""
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Estimator:
    """Dry-runs jobs on the simulator, remembering results by (protocol, parameters, cell truth)
    so that a night of 40 jobs that repeat a few recipes costs a few dry runs."""

    def __init__(
        self,
        *,
        lab: LabConfig | None = None,
        sim_of: SimOf | None = None,
        wall_limit_s: float = DRY_RUN_WALL_LIMIT_S,
    ) -> None:
        self.lab = lab
        self.sim_of = sim_of
        self.wall_limit_s = wall_limit_s
        self._cache: dict[str, Estimate] = {}
        self.dry_runs = 0

    def params_for(self, job: JobLike) -> dict[str, str]:
        """The job's parameters as text, with the lab file's cell geometry for its channel where
        the job gives none (what the real run would use)."""
        params = {name: _text(value) for name, value in split_params(job.params)[0].items()}
        channel = _requested_channel(job)
        if self.lab is not None and channel:
            try:
                _, channel_config = self.lab.channel(channel)
                defaults = {**self.lab.cell, **channel_config.cell}
            except ValueError:
                defaults = dict(self.lab.cell)
            for key in GEOMETRY_KEYS:
                if key not in params and key in defaults:
                    params[key] = _text(defaults[key])
        return params

    def estimate(self, job: JobLike, *, sim: Mapping[str, str] | None = None) -> Estimate:
        """The job's estimate (from the cache when the same recipe was dry-run before)."""
        try:
            if sim is None:
                # the --sim truth the job was queued with (jobparams' reserved key), unless overridden
                sim = self.sim_of(job) if self.sim_of is not None else split_params(job.params)[1]
            params = self.params_for(job)
            sim_text = {k: _text(v) for k, v in dict(sim or {}).items()}
            key = json.dumps([job.protocol, sorted(params.items()), sorted(sim_text.items())])
        except Exception as exc:  # a malformed job must not stop the estimate of the others
            return unknown(f"cannot read the job: {exc}")
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._dry_run(job.protocol, params, sim_text)
        return cached

    def _dry_run(self, protocol: str, params: dict[str, str], sim: dict[str, str]) -> Estimate:
        from labctl.runner import prepare_run, wait_through_interrupts

        self.dry_runs += 1
        with tempfile.TemporaryDirectory(prefix="labctl-estimate-", ignore_cleanup_errors=True) as folder:
            try:
                prepared = prepare_run(
                    protocol, params=params, instrument="sim", sim=sim, speed="max", path=Path(folder) / "dry-run.h5"
                )
            except Exception as exc:  # ParameterError, LabConfigError, a refusing simulator: all "unknown"
                return unknown(str(exc))
            try:
                handle, subscription = prepared.start()
                subscription.close()
                outcome = wait_through_interrupts(handle, self.wall_limit_s)
                if outcome is None:
                    handle.abort("estimate took too long")
                    wait_through_interrupts(handle, self.wall_limit_s)
                    return unknown(f"the dry run took longer than {self.wall_limit_s:g} s of wall time")
            except Exception as exc:
                return unknown(f"the dry run could not start: {exc}")
        if outcome.status is not RunState.COMPLETED:
            return unknown(f"the dry run ended {outcome.status.value}: {outcome.error or 'no reason given'}")
        steps = tuple(
            StepEstimate(s.index, s.step.kind, s.step.label, float(s.duration), float(s.t_start + s.duration))
            for s in outcome.steps
        )
        total = steps[-1].ends_at if steps else 0.0
        if not math.isfinite(total) or total < 0:
            return unknown(f"the dry run reported a duration of {total!r} s")
        return Estimate(total, steps)


def estimate_job(
    job: JobLike,
    *,
    sim: Mapping[str, str] | None = None,
    lab: LabConfig | None = None,
    estimator: Estimator | None = None,
) -> Estimate:
    """Dry-run one job (or spec) on the simulator: its expected duration and step durations."""
    return (estimator or Estimator(lab=lab)).estimate(job, sim=sim)


# ---- the queue's schedule ---------------------------------------------------------------


@dataclass(frozen=True)
class JobSlot:
    """When a job is expected to start and end (epoch seconds); None when it cannot be told
    (its own or an earlier job's duration is unknown, or it will never run)."""

    job_id: int
    channel: str | None
    start: float | None
    end: float | None
    estimate: Estimate
    note: str = ""


@dataclass(frozen=True)
class Schedule:
    jobs: tuple[JobSlot, ...]
    #: When each channel is expected to run out of work (None: unknown).
    channel_ends: Mapping[str, float | None] = field(default_factory=dict)

    def slot(self, job_id: int) -> JobSlot:
        return next(s for s in self.jobs if s.job_id == job_id)


def _running_remaining(job: Job, est: Estimate, now: float, pace: float | None) -> float | None:
    """Wall seconds left of an active job: the worker's ETA when it reported one, else the
    estimate (cell seconds × ``pace``) corrected for the time it has been running (a paused
    job is taken to resume now)."""
    if job.eta is not None:
        return max(job.eta - now, 0.0)
    if est.duration is None or pace is None:
        return None
    if job.fraction is not None and 0.0 <= job.fraction <= 1.0:
        return est.duration * pace * (1.0 - job.fraction)
    started = job.started if job.started is not None else now
    return max(est.duration * pace - (now - started), 0.0)


#: Wall seconds per cell second on a channel (``jobparams.wall_pace``); None: unknown.
Pace = Callable[[str | None], float | None]
_SAME_PACE: Pace = lambda channel: 1.0  # noqa: E731 - cell time is wall time (hardware)
MAX_SPEED_NOTE = "simulated as fast as the host runs (--speed max): no clock time to give"


def estimate_queue(
    jobs: Sequence[Job],
    now: float,
    *,
    estimator: Estimator | None = None,
    channels: Iterable[str] = (),
    pace: Pace = _SAME_PACE,
) -> Schedule:
    """Expected start and end of every unfinished job, and each channel's end time.

    Times are wall-clock: a job's estimate (cell seconds) is multiplied by its channel's
    ``pace`` (``jobparams.wall_pace(speed)``: 1/N on a simulated channel at N× real time).

    Follows the store's claiming rules: each channel runs its jobs one at a time in queue order
    (``jobs`` as ``list_jobs`` returns them), a job waits for its not-before time and for the
    jobs it depends on to end, and an active job finishes first. "Any channel" jobs go, in
    queue order, to whichever of ``channels`` (plus the channels the jobs name) is free first.
    Finished jobs are ignored. Everything after an unknown duration on a channel is unknown.
    """
    estimator = estimator or Estimator()
    by_id = {job.id: job for job in jobs}
    free_at: dict[str, float | None] = {name: now for name in channels}
    for job in jobs:
        for name in (job.channel, job.requested_channel):
            if name is not None:
                free_at.setdefault(name, now)
    ends: dict[int, float | None] = {}
    slots: dict[int, JobSlot] = {}

    for job in jobs:  # active jobs hold their channel first
        if not job.active or job.channel is None:
            continue
        est = estimator.estimate(job)
        left = _running_remaining(job, est, now, pace(job.channel))
        end = None if left is None else now + left
        ends[job.id] = end
        free_at[job.channel] = end
        start = job.started if job.started is not None else now
        slots[job.id] = JobSlot(job.id, job.channel, start, end, est, "" if end is not None else est.reason)

    pending = [job for job in jobs if job.state is JobState.QUEUED]
    order = {job.id: i for i, job in enumerate(pending)}
    unresolved = {job.id for job in pending}
    progress = True
    while unresolved and progress:  # a job is placed once everything it depends on has been
        progress = False
        for job in pending:
            if job.id not in unresolved:
                continue
            deps = [by_id.get(dep) for dep in job.depends_on]
            if any(dep is not None and dep.id in unresolved for dep in deps):
                continue
            channel = job.requested_channel
            if channel is None and not free_at:
                unresolved.discard(job.id)
                progress = True
                ends[job.id] = None
                note = "runs on any free channel, and none is known (give the lab file's channels)"
                slots[job.id] = JobSlot(job.id, None, None, None, estimator.estimate(job), note)
                continue
            if channel is None:
                # an "any channel" job takes a channel that has nothing of its own still queued
                def own_work(name: str) -> bool:
                    return any(o.id in unresolved and o.requested_channel == name for o in pending)

                known = [n for n, t in free_at.items() if t is not None and not own_work(n)]
                candidates = known or [n for n in free_at if not own_work(n)]
                if not candidates:
                    continue  # waits for a channel's own queue to drain
                channel = min(candidates, key=lambda n: (free_at[n] is None, free_at[n] or 0.0, n))
            elif any(o.id in unresolved and o.requested_channel == channel for o in pending[: order[job.id]]):
                continue  # strict FIFO: an earlier job of this channel goes first
            unresolved.discard(job.id)
            progress = True
            est = estimator.estimate(job)
            start, note = _start_time(job, deps, ends, free_at.get(channel, now), now)
            wall_per_cell = pace(channel)
            known = start is not None and est.duration is not None and wall_per_cell is not None
            end = start + est.duration * wall_per_cell if known else None  # type: ignore[operator]
            if end is None and not note:
                note = est.reason or (MAX_SPEED_NOTE if wall_per_cell is None else "")
            ends[job.id] = end
            free_at[channel] = end
            slots[job.id] = JobSlot(job.id, channel, start, end, est, note)

    for job in pending:  # only a dependency cycle (which the store refuses) leaves jobs here
        if job.id in unresolved:
            slots[job.id] = JobSlot(
                job.id,
                job.requested_channel,
                None,
                None,
                estimator.estimate(job),
                "waits for a job that cannot be scheduled",
            )
    ordered = tuple(slots[job.id] for job in jobs if job.id in slots)
    return Schedule(ordered, dict(sorted(free_at.items())))


def _start_time(
    job: Job, deps: list[Job | None], ends: Mapping[int, float | None], channel_free: float | None, now: float
) -> tuple[float | None, str]:
    """When a queued job can start: its channel free, its not-before time passed, the jobs it
    depends on completed. (None, why) when that cannot be told."""
    if channel_free is None:
        return None, "an earlier job on its channel has no estimate"
    start = max(channel_free, now, job.not_before or now)
    for dep in deps:
        if dep is None:
            continue  # cleared from the store: it completed (the store cancels dependents of failures)
        if dep.state in FINISHED_STATES:
            if dep.state is not JobState.COMPLETED:
                return None, f"will not run: job {dep.id}, which it depends on, ended {dep.state.value}"
            continue
        dep_end = ends.get(dep.id)
        if dep_end is None:
            return None, f"depends on job {dep.id}, which has no estimate"
        start = max(start, dep_end)
    return start, ""
