"""How jobs look on a terminal and in ``--json`` (the CLI's and scripts' view of the store)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from labctl.jsonable import to_jsonable
from labctl.queue.jobparams import split_params
from labctl.queue.jobs import ChannelHold, Job, JobState

STATE_STYLE = {
    JobState.QUEUED: "cyan",
    JobState.RUNNING: "bold green",
    JobState.PAUSING: "yellow",
    JobState.PAUSED: "yellow",
    JobState.COMPLETED: "green",
    JobState.FAILED: "bold red",
    JobState.ABORTED: "red",
    JobState.CANCELLED: "dim",
    JobState.INTERRUPTED: "bold magenta",
}
KEY_PARAMS_SHOWN = 3


def job_record(job: Job) -> dict[str, Any]:
    """A job as plain JSON: what ``queue list --json`` and ``queue show --json`` print."""
    params, sim = split_params(job.params)
    return {
        "id": job.id,
        "state": job.state.value,
        "protocol": job.protocol,
        "channel": job.channel or job.requested_channel,
        "requested_channel": job.requested_channel,
        "file": job.file,
        "results": to_jsonable(dict(job.results)) if job.results is not None else None,
        "error": job.error,
        "cell": {"id": job.cell.id, "electrolyte": job.cell.electrolyte, "notes": job.cell.notes},
        "params": params,
        "sim": sim,
        "on_failure": job.on_failure.value,
        "after": list(job.depends_on),
        "not_before": job.not_before,
        "request": job.request.value if job.request else None,
        "worker": job.worker,
        "progress": job.fraction,
        "step": job.step,
        "eta": job.eta,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "attempt": job.attempt,
        "retry_of": job.retry_of,
    }


def clock_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    moment = datetime.fromtimestamp(epoch)
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def key_params(job: Job) -> str:
    params, _ = split_params(job.params)
    shown = [f"{name}={value}" for name, value in list(params.items())[:KEY_PARAMS_SHOWN]]
    if len(params) > KEY_PARAMS_SHOWN:
        shown.append("…")
    return " ".join(shown)


def progress_text(job: Job) -> str:
    if job.state == JobState.COMPLETED:
        return "100%"
    if job.fraction is None:
        return ""
    step = f" {job.step}" if job.step else ""
    return f"{job.fraction * 100:.0f}%{step}"


def jobs_table(jobs: list[Job], holds: list[ChannelHold]) -> Table:
    """The ``queue list`` table (all text from the store is escaped: it is typed by people)."""
    title = "queue" if not holds else "queue  (held: " + ", ".join(h.channel for h in holds) + ")"
    table = Table("id", "cell", "protocol", "parameters", "state", "channel", "progress", "ETA", title=title)
    for job in jobs:
        style = STATE_STYLE.get(job.state, "")
        state = job.state.value + (f" ({job.request.value}?)" if job.request else "")
        table.add_row(
            str(job.id),
            escape(job.cell.id),
            escape(job.protocol),
            escape(key_params(job)),
            f"[{style}]{state}[/]" if style else state,
            escape(job.channel or job.requested_channel or "any"),
            escape(progress_text(job)),
            clock_time(job.eta) if job.active else "",
        )
    return table


def job_details(job: Job) -> list[tuple[str, str]]:
    record = job_record(job)
    rows = []
    for key, value in record.items():
        if value in (None, "", [], {}):
            continue
        if key in ("created", "started", "finished", "eta", "not_before"):
            text = clock_time(value)
        elif isinstance(value, dict | list):
            text = json.dumps(value)
        else:
            text = str(value)
        rows.append((key, text))
    return rows
