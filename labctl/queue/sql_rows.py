"""Reading the job store's rows into plain records (shared by both SQL backends).

SQL here uses ``?`` placeholders; the PostgreSQL backend translates them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from labctl.queue.errors import JobNotFound
from labctl.queue.jobs import CellInfo, ChannelHold, Job, JobState, OnFailure, Request


class Tx(Protocol):
    """One open transaction."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


def marks(values: Sequence[Any]) -> str:
    """``?, ?, ?`` for an IN list."""
    return ", ".join("?" for _ in values)


def load_jobs(tx: Tx, where: str, params: Sequence[Any] = (), order: bool = True) -> list[Job]:
    sql = f"SELECT * FROM jobs j WHERE {where}"
    if order:
        sql += " ORDER BY j.position, j.id"
    rows = tx.rows(sql, params)
    if not rows:
        return []
    ids = [int(row["id"]) for row in rows]
    if len(ids) <= 500:
        dep_rows = tx.rows(f"SELECT job_id, depends_on FROM job_deps WHERE job_id IN ({marks(ids)})", ids)
    else:
        dep_rows = tx.rows(
            f"SELECT d.job_id, d.depends_on FROM job_deps d JOIN jobs j ON j.id = d.job_id WHERE {where}", params
        )
    deps: dict[int, list[int]] = {}
    for dep in dep_rows:
        deps.setdefault(int(dep["job_id"]), []).append(int(dep["depends_on"]))
    return [job_from_row(row, tuple(sorted(deps.get(int(row["id"]), ())))) for row in rows]


def job_from_row(row: Mapping[str, Any], depends_on: tuple[int, ...]) -> Job:
    return Job(
        id=int(row["id"]),
        protocol=row["protocol"],
        params=json.loads(row["params"]),
        cell=CellInfo(id=row["cell_id"], electrolyte=row["electrolyte"], notes=row["notes"]),
        requested_channel=row["requested_channel"],
        channel=row["channel"],
        on_failure=OnFailure(row["on_failure"]),
        not_before=row["not_before"],
        depends_on=depends_on,
        state=JobState(row["state"]),
        position=int(row["position"]),
        request=None if row["request"] is None else Request(row["request"]),
        worker=row["worker"],
        heartbeat=row["heartbeat"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        file=row["file"],
        results=None if row["results"] is None else json.loads(row["results"]),
        error=row["error"],
        fraction=row["fraction"],
        step=row["step"],
        eta=row["eta"],
        attempt=int(row["attempt"]),
        retry_of=None if row["retry_of"] is None else int(row["retry_of"]),
    )


def get_job(tx: Tx, job_id: int) -> Job:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise JobNotFound(f"job id must be an integer, got {job_id!r}")
    jobs = load_jobs(tx, "j.id = ?", (job_id,), order=False)
    if not jobs:
        raise JobNotFound(f"job {job_id}: no such job")
    return jobs[0]


def hold_from_row(row: Mapping[str, Any]) -> ChannelHold:
    job_id = row["job_id"]
    return ChannelHold(row["channel"], row["reason"], None if job_id is None else int(job_id), row["since"])
