"""The queue's rules that touch several rows: positions, retries, holds, dependency cascades.

Each function runs inside the caller's transaction, so a finish and everything it implies
(a hold, a retry, cancelled dependents) commit together or not at all.
"""

from __future__ import annotations

import json

from labctl.queue.jobs import Job, JobSpec, OnFailure
from labctl.queue.sql_rows import Tx, marks


def tail_position(tx: Tx) -> int:
    row = tx.rows("SELECT MAX(position) AS p FROM jobs")[0]
    return 1 if row["p"] is None else int(row["p"]) + 1


def head_position(tx: Tx, requested_channel: str | None, fallback: int) -> int:
    """A position before every queued job of that channel's queue."""
    if requested_channel is None:
        row = tx.rows("SELECT MIN(position) AS p FROM jobs WHERE state = 'queued' AND requested_channel IS NULL")[0]
    else:
        row = tx.rows(
            "SELECT MIN(position) AS p FROM jobs WHERE state = 'queued' AND requested_channel = ?",
            (requested_channel,),
        )[0]
    return fallback if row["p"] is None else min(fallback, int(row["p"]) - 1)


def insert_job(
    tx: Tx, spec: JobSpec, position: int, now: float, *, attempt: int = 1, retry_of: int | None = None
) -> int:
    row = tx.rows(
        "INSERT INTO jobs (position, protocol, params, cell_id, electrolyte, notes, requested_channel,"
        " on_failure, not_before, state, created, attempt, retry_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING id",
        (
            position,
            spec.protocol,
            json.dumps(dict(spec.params), sort_keys=True),
            spec.cell.id,
            spec.cell.electrolyte,
            spec.cell.notes,
            spec.channel,
            OnFailure(spec.on_failure).value,
            spec.not_before,
            now,
            attempt,
            retry_of,
        ),
    )
    return int(row[0]["id"])


def requeue(tx: Tx, job: Job, now: float) -> int:
    """A new attempt of ``job``, first in the queue of the channel it ran on."""
    channel = job.channel or job.requested_channel
    spec = JobSpec(protocol=job.protocol, cell=job.cell, params=job.params, channel=channel,
                   on_failure=job.on_failure, not_before=None)
    position = head_position(tx, channel, job.position)
    return insert_job(tx, spec, position, now, attempt=job.attempt + 1, retry_of=job.id)


def hold_channel(tx: Tx, channel: str, reason: str, job_id: int | None, now: float) -> None:
    tx.run(
        "INSERT INTO channel_holds (channel, reason, job_id, since) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (channel) DO NOTHING",
        (channel, reason, job_id, now),
    )


def cancel_dependents(tx: Tx, job_id: int, now: float) -> None:
    """Queued jobs that can now never run (a job they wait for did not complete) are cancelled."""
    pending = [job_id]
    while pending:
        source = pending.pop()
        state = tx.rows("SELECT state FROM jobs WHERE id = ?", (source,))[0]["state"]
        for row in tx.rows(
            "SELECT j.id FROM jobs j JOIN job_deps d ON d.job_id = j.id"
            " WHERE d.depends_on = ? AND j.state = 'queued' ORDER BY j.id",
            (source,),
        ):
            dependent = int(row["id"])
            tx.run(
                "UPDATE jobs SET state = 'cancelled', finished = ?, error = ? WHERE id = ?",
                (now, f"not run: job {source}, which it depends on, ended {state}", dependent),
            )
            pending.append(dependent)


def dependencies_met(tx: Tx, job_ids: list[int]) -> set[int]:
    if not job_ids:
        return set()
    waiting = {int(r["job_id"]) for r in tx.rows(
        "SELECT d.job_id FROM job_deps d JOIN jobs a ON a.id = d.depends_on"
        f" WHERE d.job_id IN ({marks(job_ids)}) AND a.state <> 'completed'", job_ids)}
    return set(job_ids) - waiting
