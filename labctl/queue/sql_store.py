"""The job store's logic, written once in the SQL both SQLite and PostgreSQL understand.

The backends only supply a connection, a transaction (``BEGIN IMMEDIATE`` on SQLite, a plain
transaction on PostgreSQL), the row lock used when claiming (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite's write lock already serialises claimers), a change notification and a
watcher. Keeping one copy of the rules is what lets one test suite vouch for both.

SQL here uses ``?`` placeholders; the PostgreSQL backend translates them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from labctl.queue.errors import InvalidJobSpec, InvalidTransition, QueueError
from labctl.queue.jobs import (
    ACTIVE_STATES,
    FINISH_STATES,
    FINISHED_STATES,
    ChannelHold,
    Job,
    JobSpec,
    JobState,
    OnFailure,
    Request,
    choice,
)
from labctl.queue.schema import ACTIVE_SQL, FINISHED_SQL
from labctl.queue.sql_rows import Tx, get_job, hold_from_row, load_jobs, marks
from labctl.queue.sql_rules import (
    cancel_dependents,
    dependencies_met,
    hold_channel,
    insert_job,
    requeue,
    tail_position,
)
from labctl.queue.store import ChannelFit, JobStore

#: How often a claim is retried when a concurrent claimer took the same channel first (PostgreSQL).
CLAIM_ATTEMPTS = 50


def _check_worker(worker: str) -> str:
    if not isinstance(worker, str) or not worker.strip():
        raise QueueError(f"worker: must be a non-empty worker id, got {worker!r}")
    return worker


def _json_or_none(value: Mapping[str, Any] | None, field_name: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(dict(value), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"{field_name}: must be a JSON object of plain values ({exc})") from None


class SqlJobStore(JobStore):
    """JobStore on a DB-API connection; subclasses provide the backend specifics."""

    #: Appended to the SELECT that locks a job being claimed.
    claim_lock_sql: str = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    # ---- backend hooks -----------------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction, committed on normal exit, rolled back on an exception."""

    def _reading(self) -> AbstractContextManager[Tx]:
        """A transaction that only reads (backends may make it cheaper than a write)."""
        return self._transaction()

    @abstractmethod
    def _notify(self, tx: Tx) -> None:
        """Tell watchers that this transaction changed something (delivered on commit)."""

    @abstractmethod
    def _is_conflict(self, exc: BaseException) -> bool:
        """True for the unique-index violation a concurrent claim of the same channel causes."""

    # ---- reading -------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        with self._reading() as tx:
            return get_job(tx, job_id)

    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        channel: str | None = None,
        worker: str | None = None,
    ) -> list[Job]:
        clauses, params = ["1 = 1"], []
        if states is not None:
            wanted = [choice(JobState, s, "states").value for s in states]
            if not wanted:
                return []
            clauses.append(f"j.state IN ({marks(wanted)})")
            params += wanted
        if channel is not None:
            clauses.append("(j.channel = ? OR (j.channel IS NULL AND j.requested_channel = ?))")
            params += [channel, channel]
        if worker is not None:
            clauses.append("j.worker = ?")
            params.append(worker)
        with self._reading() as tx:
            return load_jobs(tx, " AND ".join(clauses), params)

    def holds(self) -> list[ChannelHold]:
        with self._reading() as tx:
            rows = tx.rows("SELECT * FROM channel_holds ORDER BY since, channel")
        return [hold_from_row(row) for row in rows]

    # ---- adding --------------------------------------------------------------------------------

    def add(self, spec: JobSpec, *, now: float | None = None) -> Job:
        return self.add_batch([spec], now=now)[0]

    def add_batch(self, specs: Sequence[JobSpec], *, now: float | None = None) -> list[Job]:
        now = _now(now)
        checked = [self._checked_spec(spec, index) for index, spec in enumerate(specs)]
        keys: dict[str, int] = {}
        for index, spec in enumerate(checked):
            for ref in spec.after:
                if isinstance(ref, str) and ref not in keys:
                    raise InvalidJobSpec(
                        f"job {index + 1} of the batch: after: {ref!r} is not the key of an earlier job in the batch"
                    )
            if spec.key is not None:
                if spec.key in keys:
                    raise InvalidJobSpec(f"job {index + 1} of the batch: key {spec.key!r} is used twice")
                keys[spec.key] = index
        if not checked:
            return []
        with self._transaction() as tx:
            existing = sorted({ref for spec in checked for ref in spec.after if isinstance(ref, int)})
            if existing:
                found = {int(r["id"]): r["state"] for r in tx.rows(
                    f"SELECT id, state FROM jobs WHERE id IN ({marks(existing)})", existing)}
                for ref in existing:
                    if ref not in found:
                        raise InvalidJobSpec(f"after: job {ref} does not exist")
                    if found[ref] in FINISHED_STATES and found[ref] != JobState.COMPLETED:
                        raise InvalidJobSpec(f"after: job {ref} ended {found[ref]}, so this job could never run")
            position = tail_position(tx)
            ids: list[int] = []
            for offset, spec in enumerate(checked):
                ids.append(insert_job(tx, spec, position + offset, now))
            for job_id, spec in zip(ids, checked, strict=True):
                targets = {ref if isinstance(ref, int) else ids[keys[ref]] for ref in spec.after}
                for target in sorted(targets):
                    tx.run("INSERT INTO job_deps (job_id, depends_on) VALUES (?, ?)", (job_id, target))
            self._notify(tx)
            jobs = {job.id: job for job in load_jobs(tx, f"j.id IN ({marks(ids)})", ids)}
        return [jobs[job_id] for job_id in ids]

    @staticmethod
    def _checked_spec(spec: JobSpec, index: int) -> JobSpec:
        if not isinstance(spec, JobSpec):
            raise InvalidJobSpec(f"job {index + 1} of the batch: expected a JobSpec, got {type(spec).__name__}")
        try:
            return spec.validated()
        except InvalidJobSpec as exc:
            raise InvalidJobSpec(f"job {index + 1} of the batch: {exc}") from None

    # ---- claiming ------------------------------------------------------------------------------

    def claim_next(
        self,
        worker: str,
        channels: Iterable[str],
        *,
        fits: ChannelFit | None = None,
        now: float | None = None,
    ) -> Job | None:
        _check_worker(worker)
        if isinstance(channels, str):
            raise QueueError(f"channels: must be a list of channel names, got the string {channels!r}")
        wanted = list(dict.fromkeys(channels))
        if not all(isinstance(c, str) and c for c in wanted):
            raise QueueError(f"channels: must be channel names, got {wanted!r}")
        if not wanted:
            return None
        for _ in range(CLAIM_ATTEMPTS):
            try:
                with self._transaction() as tx:
                    # The start time is read once the write lock is held, so that it never
                    # precedes the finish of the channel's previous job.
                    return self._claim(tx, worker, wanted, fits, _now(now))
            except Exception as exc:
                if not self._is_conflict(exc):
                    raise
        raise QueueError(f"claim by worker {worker!r}: gave up after {CLAIM_ATTEMPTS} conflicting claims")

    def _claim(self, tx: Tx, worker: str, wanted: list[str], fits: ChannelFit | None, now: float) -> Job | None:
        taken = {r["channel"] for r in tx.rows(
            f"SELECT channel FROM jobs WHERE state IN {ACTIVE_SQL} AND channel IN ({marks(wanted)})", wanted)}
        taken |= {r["channel"] for r in tx.rows(
            f"SELECT channel FROM channel_holds WHERE channel IN ({marks(wanted)})", wanted)}
        free = [c for c in wanted if c not in taken]
        if not free:
            return None
        # The head of each free channel's own queue: strict FIFO, it alone may start. One index
        # seek per channel (state, requested_channel, position, id), whatever the queue's length.
        head_ids = " UNION ALL ".join(
            f"SELECT * FROM (SELECT id FROM jobs WHERE state = 'queued' AND requested_channel = ?"
            f" ORDER BY position, id LIMIT 1) AS h{i}"
            for i in range(len(free))
        )
        heads = load_jobs(tx, f"j.id IN ({head_ids})", free)
        candidates: list[tuple[Job, str]] = [(job, str(job.requested_channel)) for job in heads]
        idle = [c for c in free if c not in {job.requested_channel for job in heads}]
        if idle:
            for job in load_jobs(tx, "j.state = 'queued' AND j.requested_channel IS NULL AND "
                                      "(j.not_before IS NULL OR j.not_before <= ?)", (now,)):
                channel = next((c for c in idle if fits is None or fits(c, job)), None)
                if channel is not None:
                    candidates.append((job, channel))
        candidates = [(job, c) for job, c in candidates if job.not_before is None or job.not_before <= now]
        ready = dependencies_met(tx, [job.id for job, _ in candidates])
        candidates.sort(key=lambda jc: (jc[0].position, jc[0].id))
        for job, channel in candidates:
            if job.id not in ready:
                continue
            locked = tx.rows(f"SELECT id FROM jobs WHERE id = ? AND state = 'queued'{self.claim_lock_sql}", (job.id,))
            if not locked:
                continue  # another worker is claiming it right now
            tx.run(
                "UPDATE jobs SET state = 'running', channel = ?, worker = ?, started = ?, heartbeat = ?,"
                " request = NULL WHERE id = ?",
                (channel, worker, now, now, job.id),
            )
            self._notify(tx)
            return get_job(tx, job.id)
        return None

    # ---- the worker reports --------------------------------------------------------------------

    def _owned(self, tx: Tx, job_id: int, worker: str) -> Job:
        job = get_job(tx, job_id)
        if job.state not in ACTIVE_STATES:
            raise InvalidTransition(f"job {job_id} is {job.state}, not running: worker {worker!r} cannot report on it")
        if job.worker != worker:
            raise InvalidTransition(f"job {job_id} is run by worker {job.worker!r}, not {worker!r}")
        return job

    def heartbeat(
        self,
        job_id: int,
        worker: str,
        *,
        fraction: float | None = None,
        step: str | None = None,
        eta: float | None = None,
        now: float | None = None,
    ) -> Request | None:
        _check_worker(worker)
        if fraction is not None and not (isinstance(fraction, int | float) and 0.0 <= fraction <= 1.0):
            raise QueueError(f"fraction: must be between 0 and 1, got {fraction!r}")
        if eta is not None and not (isinstance(eta, int | float) and math.isfinite(eta)):
            raise QueueError(f"eta: must be seconds since the epoch, got {eta!r}")
        now = _now(now)
        with self._transaction() as tx:
            job = self._owned(tx, job_id, worker)
            tx.run(
                "UPDATE jobs SET heartbeat = ?, fraction = COALESCE(?, fraction), step = COALESCE(?, step),"
                " eta = COALESCE(?, eta) WHERE id = ?",
                (now, fraction, step, eta, job_id),
            )
            self._notify(tx)
            return job.request

    def attach_file(self, job_id: int, worker: str, file: str) -> Job:
        if not isinstance(file, str) or not file:
            raise QueueError(f"file: must be a path, got {file!r}")
        with self._transaction() as tx:
            self._owned(tx, job_id, _check_worker(worker))
            tx.run("UPDATE jobs SET file = ? WHERE id = ?", (file, job_id))
            self._notify(tx)
            return get_job(tx, job_id)

    def report_paused(self, job_id: int, worker: str, *, now: float | None = None) -> Job:
        now = _now(now)
        with self._transaction() as tx:
            job = self._owned(tx, job_id, _check_worker(worker))
            if job.state == JobState.PAUSED:
                raise InvalidTransition(f"job {job_id} is paused already")
            request = None if job.request == Request.PAUSE else job.request
            tx.run("UPDATE jobs SET state = 'paused', request = ?, heartbeat = ? WHERE id = ?",
                   (_value(request), now, job_id))
            self._notify(tx)
            return get_job(tx, job_id)

    def report_resumed(self, job_id: int, worker: str, *, now: float | None = None) -> Job:
        now = _now(now)
        with self._transaction() as tx:
            job = self._owned(tx, job_id, _check_worker(worker))
            if job.state == JobState.RUNNING:
                raise InvalidTransition(f"job {job_id} is running, not paused: nothing to resume")
            request = None if job.request in (Request.PAUSE, Request.RESUME) else job.request
            tx.run("UPDATE jobs SET state = 'running', request = ?, heartbeat = ? WHERE id = ?",
                   (_value(request), now, job_id))
            self._notify(tx)
            return get_job(tx, job_id)

    def finish(
        self,
        job_id: int,
        worker: str,
        state: JobState,
        *,
        results: Mapping[str, Any] | None = None,
        file: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> Job:
        _check_worker(worker)
        end = choice(JobState, state, "state")
        if end not in FINISH_STATES:
            allowed = ", ".join(sorted(s.value for s in FINISH_STATES))
            raise QueueError(f"finish job {job_id}: state {end.value!r} is not one of {allowed}")
        results_json = _json_or_none(results, "results")
        now = _now(now)
        with self._transaction() as tx:
            job = self._owned(tx, job_id, worker)
            tx.run(
                "UPDATE jobs SET state = ?, finished = ?, heartbeat = ?, results = ?, file = ?, error = ?,"
                " request = NULL WHERE id = ?",
                (end.value, now, now, results_json, file, error, job_id),
            )
            retried = False
            if end == JobState.FAILED:
                if job.on_failure == OnFailure.STOP:
                    hold_channel(tx, str(job.channel), f"job {job_id} failed (on_failure=stop)", job_id, now)
                elif job.on_failure == OnFailure.RETRY and job.retry_of is None:
                    new_id = requeue(tx, job, now)
                    tx.run("UPDATE job_deps SET depends_on = ? WHERE depends_on = ?", (new_id, job_id))
                    retried = True
            if end != JobState.COMPLETED and not retried:
                cancel_dependents(tx, job_id, now)
            self._notify(tx)
            return get_job(tx, job_id)

    def silent_workers(self, *, since: float) -> list[str]:
        with self._reading() as tx:
            rows = tx.rows(
                f"SELECT worker FROM jobs WHERE state IN {ACTIVE_SQL} GROUP BY worker HAVING MAX(heartbeat) < ?"
                " ORDER BY worker",
                (since,),
            )
        return [row["worker"] for row in rows]

    def recover_worker(self, worker: str, *, reason: str = "", now: float | None = None) -> list[Job]:
        _check_worker(worker)
        now = _now(now)
        why = f": {reason}" if reason else ""
        with self._transaction() as tx:
            jobs = load_jobs(tx, f"j.worker = ? AND j.state IN {ACTIVE_SQL}", (worker,))
            for job in jobs:
                tx.run(
                    "UPDATE jobs SET state = 'interrupted', finished = ?, request = NULL, error = ? WHERE id = ?",
                    (now, f"interrupted: worker {worker!r} stopped while the job was {job.state}{why}", job.id),
                )
                hold_channel(
                    tx,
                    str(job.channel),
                    f"job {job.id} was interrupted (worker {worker!r} stopped{why}): check the cell, then acknowledge",
                    job.id,
                    now,
                )
                cancel_dependents(tx, job.id, now)
            if jobs:
                self._notify(tx)
            return [get_job(tx, job.id) for job in jobs]

    # ---- the technician's commands -------------------------------------------------------------

    def cancel(self, job_id: int, *, now: float | None = None) -> Job:
        now = _now(now)
        with self._transaction() as tx:
            job = get_job(tx, job_id)
            if job.state == JobState.QUEUED:
                tx.run("UPDATE jobs SET state = 'cancelled', finished = ?, error = ? WHERE id = ?",
                       (now, "cancelled before it started", job_id))
                cancel_dependents(tx, job_id, now)
            elif job.state in ACTIVE_STATES:
                if job.request == Request.CANCEL:
                    raise InvalidTransition(f"job {job_id} is {job.state} with a cancel request already")
                tx.run("UPDATE jobs SET request = 'cancel' WHERE id = ?", (job_id,))
            else:
                raise InvalidTransition(f"job {job_id} is {job.state}: only queued or running jobs can be cancelled")
            self._notify(tx)
            return get_job(tx, job_id)

    def pause(self, job_id: int, *, now: float | None = None) -> Job:
        with self._transaction() as tx:
            job = get_job(tx, job_id)
            if job.state != JobState.RUNNING:
                raise InvalidTransition(f"job {job_id} is {job.state}: only a running job can be paused")
            if job.request == Request.CANCEL:
                raise InvalidTransition(f"job {job_id} is being cancelled: it cannot be paused")
            tx.run("UPDATE jobs SET state = 'pausing', request = 'pause' WHERE id = ?", (job_id,))
            self._notify(tx)
            return get_job(tx, job_id)

    def resume(self, job_id: int, *, now: float | None = None) -> Job:
        with self._transaction() as tx:
            job = get_job(tx, job_id)
            if job.state not in (JobState.PAUSED, JobState.PAUSING):
                raise InvalidTransition(f"job {job_id} is {job.state}: only a paused job can be resumed")
            if job.request in (Request.CANCEL, Request.RESUME):
                raise InvalidTransition(f"job {job_id} has a {job.request} request pending already")
            tx.run("UPDATE jobs SET request = 'resume' WHERE id = ?", (job_id,))
            self._notify(tx)
            return get_job(tx, job_id)

    def move(self, job_ids: Sequence[int], *, before: int | None = None) -> list[Job]:
        moving = list(job_ids)
        if not moving:
            raise QueueError("move: no jobs given")
        if len(set(moving)) != len(moving):
            raise QueueError(f"move: a job is named twice in {moving}")
        if before is not None and before in moving:
            raise QueueError(f"move: job {before} cannot be moved before itself")
        with self._transaction() as tx:
            jobs = [get_job(tx, job_id) for job_id in moving]
            anchor = None if before is None else get_job(tx, before)
            for job in [*jobs, *([anchor] if anchor else [])]:
                if job.state != JobState.QUEUED:
                    raise InvalidTransition(f"job {job.id} is {job.state}: only queued jobs can be moved")
            queues = {job.requested_channel for job in [*jobs, *([anchor] if anchor else [])]}
            if len(queues) != 1:
                names = ", ".join(sorted(q or "any" for q in queues))
                raise QueueError(f"move: jobs are in different channel queues ({names}); reorder one queue at a time")
            (channel,) = queues
            where = "j.requested_channel IS NULL" if channel is None else "j.requested_channel = ?"
            queue = load_jobs(tx, f"j.state = 'queued' AND {where}", () if channel is None else (channel,))
            rest = [job.id for job in queue if job.id not in moving]
            at = len(rest) if before is None else rest.index(before)
            order = rest[:at] + moving + rest[at:]
            positions = sorted(job.position for job in queue)
            for i in range(1, len(positions)):
                positions[i] = max(positions[i], positions[i - 1] + 1)
            for job_id, position in zip(order, positions, strict=True):
                tx.run("UPDATE jobs SET position = ? WHERE id = ?", (position, job_id))
            self._notify(tx)
            return load_jobs(tx, f"j.state = 'queued' AND {where}", () if channel is None else (channel,))

    def retry(self, job_id: int, *, now: float | None = None) -> Job:
        now = _now(now)
        with self._transaction() as tx:
            job = get_job(tx, job_id)
            if job.state not in (JobState.FAILED, JobState.ABORTED, JobState.CANCELLED, JobState.INTERRUPTED):
                raise InvalidTransition(
                    f"job {job_id} is {job.state}: only failed, aborted, cancelled or interrupted jobs can be retried"
                )
            new_id = requeue(tx, job, now)
            self._notify(tx)
            return get_job(tx, new_id)

    def hold(self, channel: str, reason: str, *, job_id: int | None = None, now: float | None = None) -> None:
        if not isinstance(channel, str) or not channel:
            raise QueueError(f"channel: must be a channel name, got {channel!r}")
        now = _now(now)
        with self._transaction() as tx:
            existing = tx.rows("SELECT reason FROM channel_holds WHERE channel = ?", (channel,))
            if existing:
                raise InvalidTransition(f"channel {channel!r} is held already: {existing[0]['reason']}")
            hold_channel(tx, channel, reason or "held by a technician", job_id, now)
            self._notify(tx)

    def ack(self, channel: str) -> ChannelHold:
        with self._transaction() as tx:
            rows = tx.rows("SELECT * FROM channel_holds WHERE channel = ?", (channel,))
            if not rows:
                raise InvalidTransition(f"channel {channel!r} is not held: nothing to acknowledge")
            tx.run("DELETE FROM channel_holds WHERE channel = ?", (channel,))
            self._notify(tx)
            return hold_from_row(rows[0])

    def clear_finished(self, *, before: float | None = None) -> int:
        with self._transaction() as tx:
            where = f"state IN {FINISHED_SQL}" + ("" if before is None else " AND finished < ?")
            count = tx.run(f"DELETE FROM jobs WHERE {where}", () if before is None else (before,))
            if count:
                self._notify(tx)
            return count


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _value(request: Request | None) -> str | None:
    return None if request is None else request.value

