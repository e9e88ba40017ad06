"""``labctl queue estimate``: how long the queued night will take, before anything touches a cell.

Dry-runs every unfinished job on the simulator (``labctl.queue.estimate``) and prints each
job's expected duration, start and end, and when each channel runs out of work. Jobs the
simulator cannot estimate are listed with the reason, and make their channel's end unknown.

Application layer; the lead registers ``estimate_command`` under the ``queue`` group.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from labctl.config import LabConfig, LabConfigError, load_lab
from labctl.params import ParameterError
from labctl.queue import QueueError, open_store
from labctl.queue.estimate import Estimator, Schedule, estimate_queue
from labctl.queue.jobparams import wall_pace

EXIT_USAGE = 2


def format_duration(seconds: float | None) -> str:
    """``1d 02:03:04`` / ``02:03:04``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def format_time(epoch: float | None) -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch).strftime("%a %H:%M")


def _fail(message: str) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(EXIT_USAGE)


def _sim_settings(pairs: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            _fail(f"--sim: expected NAME=VALUE, got {pair!r}")
        settings[name.strip()] = value.strip()
    return settings


def lab_channels(lab: LabConfig | None) -> list[str]:
    """The measuring channels of the lab file, as ``INSTRUMENT:CHANNEL``."""
    if lab is None:
        return []
    return [
        f"{inst.name}:{channel}"
        for inst in lab.instruments.values()
        if inst.kind != "chamber"
        for channel in inst.channels
    ]


def schedule_json(schedule: Schedule, jobs_by_id: dict[int, object]) -> dict[str, object]:
    return {
        "jobs": [
            {
                "id": slot.job_id,
                "protocol": getattr(jobs_by_id[slot.job_id], "protocol", ""),
                "channel": slot.channel,
                "duration_s": slot.estimate.duration,
                "start": slot.start,
                "end": slot.end,
                "note": slot.note,
            }
            for slot in schedule.jobs
        ],
        "channels": dict(schedule.channel_ends),
    }


@click.command("estimate")
@click.option(
    "--store", "store_location", envvar="LABCTL_STORE", default=None, help="queue store: a file or postgresql:// URL"
)
@click.option("--lab", "lab_path", envvar="LABCTL_LAB", type=click.Path(dir_okay=False), help="lab file (TOML)")
@click.option("--sim", "sim", multiple=True, metavar="NAME=VALUE", help="simulated-cell truth for every job (what if…)")
@click.option("--json", "as_json", is_flag=True, help="print {jobs: [...], channels: {...}} with epoch times")
@click.option(
    "--speed",
    default="1",
    show_default=True,
    help="the speed simulated channels (sim1…) run at, as given to 'queue run': N × real time",
)
def estimate_command(
    store_location: str | None, lab_path: str | None, sim: tuple[str, ...], as_json: bool, speed: str
) -> None:
    """Dry-run every queued job on the simulator: durations (cell time), start/end times and
    channel end times (wall clock: a simulated channel at --speed N takes 1/N of the cell time)."""
    sim_settings = _sim_settings(sim)
    try:
        pace = wall_pace(speed)
    except ParameterError as exc:
        _fail(str(exc))
        return
    lab = None
    if lab_path:
        try:
            lab = load_lab(Path(lab_path))
        except LabConfigError as exc:
            _fail(str(exc))
    try:
        with open_store(store_location) as store:
            jobs = [job for job in store.list_jobs() if not job.done]
    except QueueError as exc:
        _fail(str(exc))
        return
    now = time.time()
    estimator = Estimator(lab=lab, sim_of=(lambda job: sim_settings) if sim_settings else None)
    schedule = estimate_queue(jobs, now, estimator=estimator, channels=lab_channels(lab), pace=pace)
    by_id: dict[int, object] = {job.id: job for job in jobs}
    if as_json:
        click.echo(json.dumps(schedule_json(schedule, by_id)))
        return
    if not schedule.jobs:
        click.echo("nothing queued")
        return
    click.echo(f"{'job':>5}  {'cell':<12} {'protocol':<13} {'channel':<12} {'duration':>11}  {'start':>9}  {'end':>9}")
    for slot in schedule.jobs:
        job = jobs[[j.id for j in jobs].index(slot.job_id)]
        line = (
            f"{slot.job_id:>5}  {job.cell.id[:12]:<12} {job.protocol[:13]:<13} {(slot.channel or 'any')[:12]:<12} "
            f"{format_duration(slot.estimate.duration):>11}  {format_time(slot.start):>9}  {format_time(slot.end):>9}"
        )
        click.echo(line + (f"  ({slot.note})" if slot.note else ""))
    click.echo("")
    for channel, end in schedule.channel_ends.items():
        left = None if end is None else max(end - now, 0.0)
        click.echo(f"channel {channel}: done {format_time(end)} (in {format_duration(left)})")
    click.echo(f"({estimator.dry_runs} dry runs for {len(schedule.jobs)} jobs)")
