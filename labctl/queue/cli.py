"""``labctl queue …``: load the night's work, watch it, steer it, run it.

Every command takes ``--store`` (default: the per-user SQLite file; a path; or a
``postgresql://`` URL; also ``LABCTL_QUEUE_STORE``). Bad input is one ``error:`` line and exit
code 2, with nothing queued or changed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from labctl.params import ParameterError, parse_assignments
from labctl.queue import JobState, JobStore, QueueError, open_store
from labctl.queue.jobs import CellInfo, JobSpec, OnFailure
from labctl.stopkeys import stop_on_signals

EXIT_USAGE = 2

store_option = click.option(
    "--store",
    "store_location",
    envvar="LABCTL_QUEUE_STORE",
    default=None,
    help="job store: a SQLite file or a postgresql:// URL (default: the per-user queue file)",
)
lab_option = click.option(
    "--lab", "lab_path", envvar="LABCTL_LAB", type=click.Path(dir_okay=False), help="lab file (TOML)"
)


def fail(exc: Exception | str) -> NoReturn:
    """Bad input: one ``error:`` line, exit 2."""
    click.echo(f"error: {' '.join(str(exc).split())}", err=True)
    sys.exit(EXIT_USAGE)


@contextlib.contextmanager
def opened(location: str | None) -> Iterator[JobStore]:
    try:
        store = open_store(location)
    except QueueError as exc:
        fail(exc)
    try:
        yield store
    except (QueueError, ParameterError) as exc:
        fail(exc)
    finally:
        store.close()


def load_lab(lab_path: str | None) -> Any:
    if lab_path is None:
        return None
    from labctl.config import LabConfigError
    from labctl.config import load_lab as load

    try:
        return load(Path(lab_path))
    except (LabConfigError, ValueError) as exc:
        fail(exc)


@click.group("queue")
def queue_group() -> None:
    """The overnight queue: jobs on several channels, run in parallel, crash-proof."""


# ---- loading work --------------------------------------------------------------------------


@queue_group.command("add")
@click.argument("protocol_name", metavar="PROTOCOL")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="protocol parameter (lab units)")
@click.option("--sim", "sim", multiple=True, metavar="NAME=VALUE", help="simulated-cell truth (sim channels)")
@click.option(
    "--channel", "--instrument", "-i", "channel", default=None,
    help="channel: simN (simulated) or a lab-file channel; omitted = any free channel",
)  # fmt: skip
@click.option("--cell-id", required=True, help="the cell's identifier (recorded in the run file)")
@click.option("--electrolyte", default="", help="what the cell holds (kept with the job)")
@click.option("--notes", default="", help="free text kept with the job")
@click.option(
    "--on-failure", type=click.Choice([p.value for p in OnFailure]), default="continue", show_default=True,
    help="stop: hold the channel; continue: next job; retry: once more",
)  # fmt: skip
@click.option("--after", "after", multiple=True, type=int, metavar="JOB", help="run only after job JOB completed")
@click.option("--not-before", default=None, metavar="ISO-TIME", help="do not start before (local time)")
@click.option("--json", "as_json", is_flag=True, help="print the queued job as JSON")
@lab_option
@store_option
def add_command(
    protocol_name: str,
    params: tuple[str, ...],
    sim: tuple[str, ...],
    channel: str | None,
    cell_id: str,
    electrolyte: str,
    notes: str,
    on_failure: str,
    after: tuple[int, ...],
    not_before: str | None,
    as_json: bool,
    lab_path: str | None,
    store_location: str | None,
) -> None:
    """Queue PROTOCOL, checked exactly as 'labctl run' checks it (nothing queued if it would not start)."""
    from labctl.queue.jobparams import job_params
    from labctl.queue.timeparse import parse_time
    from labctl.queue.validate import check_spec

    lab = load_lab(lab_path)
    try:
        spec = JobSpec(
            protocol=protocol_name,
            cell=CellInfo(cell_id, electrolyte, notes),
            params=job_params(parse_assignments(params, "-p"), parse_assignments(sim, "--sim")),
            channel=channel,
            on_failure=OnFailure(on_failure),
            after=tuple(after),
            not_before=None if not_before is None else parse_time(not_before, "--not-before"),
        ).validated()
        check_spec(spec, lab)
    except (QueueError, ParameterError) as exc:
        fail(exc)
    with opened(store_location) as store:
        job = store.add(spec)
    _report_jobs([job], as_json)


@queue_group.command("add-batch")
@click.argument("batch_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the queued jobs as JSON")
@lab_option
@store_option
def add_batch_command(batch_file: str, as_json: bool, lab_path: str | None, store_location: str | None) -> None:
    """Queue a night's plan from a TOML file, checked whole: one bad job rejects the file."""
    from labctl.queue.batch import load_batch

    lab = load_lab(lab_path)
    try:
        specs = load_batch(Path(batch_file), lab)
    except QueueError as exc:
        fail(exc)
    with opened(store_location) as store:
        jobs = store.add_batch(specs)
    _report_jobs(jobs, as_json)


def _report_jobs(jobs: list[Any], as_json: bool) -> None:
    from labctl.queue.display import job_record

    if as_json:
        click.echo(json.dumps([job_record(job) for job in jobs]))
        return
    for job in jobs:
        where = job.requested_channel or "any free channel"
        click.echo(f"queued job {job.id}: {job.protocol} on {where} (cell {job.cell.id})")


# ---- looking ---------------------------------------------------------------------------------


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list of jobs")
@click.option("--follow", "-f", is_flag=True, help="redraw whenever the queue changes (Ctrl-C to stop)")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]))
@click.option("--channel", default=None)
@store_option
def list_command(
    as_json: bool, follow: bool, states: tuple[str, ...], channel: str | None, store_location: str | None
) -> None:
    """Jobs in queue order: cell, protocol, key parameters, state, channel, progress, ETA."""
    from labctl.queue.display import job_record, jobs_table

    wanted = [JobState(s) for s in states] or None
    with opened(store_location) as store:
        if as_json:
            jobs = store.list_jobs(states=wanted, channel=channel)
            click.echo(json.dumps([job_record(job) for job in jobs]))
            return
        console = Console(highlight=False)

        def render() -> Table:
            return jobs_table(store.list_jobs(states=wanted, channel=channel), store.holds())

        if not follow:
            console.print(render())
            return
        stop_on_signals()
        if not console.is_terminal:  # a pipe or a log: a new table after each change
            console.print(render())
            with store.watch() as watcher, contextlib.suppress(KeyboardInterrupt):
                while True:
                    if watcher.wait(3600.0) is not None:
                        console.print(render())
                        console.file.flush()
            return
        from rich.live import Live

        with store.watch() as watcher, Live(render(), console=console, auto_refresh=False) as live:
            try:
                while True:
                    watcher.wait(2.0)  # a change, or a periodic redraw for the ETA clock
                    live.update(render(), refresh=True)
            except KeyboardInterrupt:
                pass


@queue_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@store_option
def show_command(job_id: int, as_json: bool, store_location: str | None) -> None:
    """Everything about one job."""
    from labctl.queue.display import job_details, job_record

    with opened(store_location) as store:
        job = store.get(job_id)
    if as_json:
        click.echo(json.dumps(job_record(job)))
        return
    table = Table(show_header=False, box=None, title=f"job {job.id}")
    for key, value in job_details(job):
        table.add_row(key, value)
    Console(highlight=False).print(table, markup=False)


# ---- steering --------------------------------------------------------------------------------


def _each_job(store_location: str | None, job_ids: tuple[int, ...], action: str) -> None:
    with opened(store_location) as store:
        for job_id in job_ids:
            job = getattr(store, action)(job_id)
            click.echo(f"job {job.id}: {job.state}" + (f" ({job.request} requested)" if job.request else ""))


@queue_group.command("cancel")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@store_option
def cancel_command(job_ids: tuple[int, ...], store_location: str | None) -> None:
    """Cancel queued jobs at once; a running job is aborted (cell to its safe state)."""
    _each_job(store_location, job_ids, "cancel")


@queue_group.command("pause")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@store_option
def pause_command(job_ids: tuple[int, ...], store_location: str | None) -> None:
    """Hold a running job's cell (open circuit, or its potential in a potentiostatic step)."""
    _each_job(store_location, job_ids, "pause")


@queue_group.command("resume")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@store_option
def resume_command(job_ids: tuple[int, ...], store_location: str | None) -> None:
    """Continue a paused job forward (nothing is replayed)."""
    _each_job(store_location, job_ids, "resume")


@queue_group.command("retry")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@store_option
def retry_command(job_ids: tuple[int, ...], store_location: str | None) -> None:
    """Queue a new attempt of a job that did not complete, first on its channel."""
    with opened(store_location) as store:
        for job_id in job_ids:
            job = store.retry(job_id)
            click.echo(f"job {job.id}: queued, attempt {job.attempt} of job {job_id}")


@queue_group.command("move")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@click.option("--before", type=int, default=None, metavar="JOB", help="put them just before JOB (default: last)")
@store_option
def move_command(job_ids: tuple[int, ...], before: int | None, store_location: str | None) -> None:
    """Reorder queued jobs of one channel's queue."""
    with opened(store_location) as store:
        order = store.move(list(job_ids), before=before)
    click.echo("queue now: " + " ".join(str(job.id) for job in order))


@queue_group.command("ack")
@click.argument("channel")
@store_option
def ack_command(channel: str, store_location: str | None) -> None:
    """A technician has checked CHANNEL's cell: the channel takes jobs again."""
    with opened(store_location) as store:
        hold = store.ack(channel)
    click.echo(f"channel {hold.channel}: released (was held: {hold.reason})")


@queue_group.command("clear-finished")
@click.option("--before", default=None, metavar="ISO-TIME", help="only jobs finished before this time")
@store_option
def clear_finished_command(before: str | None, store_location: str | None) -> None:
    """Delete finished jobs from the queue (their run files stay)."""
    from labctl.queue.timeparse import parse_time

    try:
        cutoff = None if before is None else parse_time(before, "--before")
    except QueueError as exc:
        fail(exc)
    with opened(store_location) as store:
        count = store.clear_finished(before=cutoff)
    click.echo(f"cleared {count} finished job(s)")


@queue_group.command("resume-remaining")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@store_option
def resume_remaining_command(job_id: int, as_json: bool, store_location: str | None) -> None:
    """Queue a new job with the steps JOB had not run (arrhenius temperatures, cycling cycles)."""
    from labctl.queue.remaining import finished_labels, remaining_spec

    with opened(store_location) as store:
        job = store.get(job_id)
        if not job.file or not Path(job.file).exists():
            fail(f"job {job_id}: has no run file to tell which steps ran")
        try:
            labels = finished_labels(Path(job.file))
        except (OSError, ValueError) as exc:
            fail(f"job {job_id}: cannot read its run file {job.file}: {exc}")
        spec = remaining_spec(job, labels)
        new = store.add(spec)
    if as_json:
        from labctl.queue.display import job_record

        click.echo(json.dumps(job_record(new)))
        return
    click.echo(f"queued job {new.id}: the remaining steps of job {job_id} ({new.protocol} on {new.requested_channel})")


# ---- running ---------------------------------------------------------------------------------


def _run_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(file_okay=False),
                         help="folder for the run files"),
            click.option("--speed", default="max", show_default=True,
                         help="simulated channels: max (virtual time) or N x real time"),
            click.option("--worker-id", default=None, help="stable id of this worker (default: host + lab file)"),
            click.option("--channels", "only_channels", default=None, metavar="A,B",
                         help="run only these of its channels (e.g. sim3,sim4)"),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


@queue_group.command("run")
@click.option("--until-empty", is_flag=True, help="exit once nothing is queued or running on its channels")
@click.option(
    "--sim-channels", default=4, show_default=True, type=int, help="without a lab file: simulated channels sim1…simN"
)
@_run_options
@lab_option
@store_option
def run_command(
    until_empty: bool,
    sim_channels: int,
    runs_dir: str,
    speed: str,
    worker_id: str | None,
    only_channels: str | None,
    lab_path: str | None,
    store_location: str | None,
) -> None:
    """Run the queue on this PC: every channel of the lab file, or simulated channels sim1…simN."""
    _work(store_location, lab_path, sim_channels, runs_dir, speed, worker_id, only_channels, until_empty)


@queue_group.command("worker")
@click.option("--lab", "lab_path", envvar="LABCTL_LAB", required=True, type=click.Path(dir_okay=False))
@click.option("--store", "store_location", envvar="LABCTL_QUEUE_STORE", required=True,
              help="the lab's shared store (postgresql://…)")  # fmt: skip
@click.option("--until-empty", is_flag=True, help="exit once nothing is queued or running on its channels")
@_run_options
def worker_command(
    lab_path: str,
    store_location: str,
    until_empty: bool,
    runs_dir: str,
    speed: str,
    worker_id: str | None,
    only_channels: str | None,
) -> None:
    """Run the jobs of this PC's lab-file channels from a shared store (one worker per PC)."""
    _work(store_location, lab_path, 0, runs_dir, speed, worker_id, only_channels, until_empty)


def _work(
    store_location: str | None,
    lab_path: str | None,
    sim_count: int,
    runs_dir: str,
    speed: str,
    worker_id: str | None,
    only_channels: str | None,
    until_empty: bool,
) -> None:
    from labctl.queue.identity import default_worker_id
    from labctl.queue.validate import known_channels
    from labctl.queue.worker import Worker, WorkerSettings, sim_channels
    from labctl.speed import parse_speed

    lab = load_lab(lab_path)
    try:
        parse_speed(speed)
        channels = tuple(known_channels(lab)) if lab is not None else sim_channels(sim_count)
        if not channels:
            raise ValueError(f"--lab: {lab_path} has no measuring channels")
        if only_channels is not None:
            chosen = tuple(c.strip() for c in only_channels.split(",") if c.strip())
            unknown = [c for c in chosen if c not in channels]
            if unknown or not chosen:
                raise ValueError(
                    f"--channels: {unknown[0] if unknown else only_channels!r} is not one of its channels "
                    f"(allowed: {', '.join(channels)})"
                )
            channels = chosen
        if worker_id is not None and (not worker_id.strip() or "/" in worker_id):
            raise ValueError(f"--worker-id: {worker_id!r} must be non-empty text without '/'")
        settings = WorkerSettings(
            worker_id=worker_id or default_worker_id(None if lab_path is None else Path(lab_path)),
            channels=channels,
            store=store_location,
            runs_dir=Path(runs_dir),
            lab_path=None if lab_path is None else Path(lab_path).resolve(),
            speed=speed,
        )
        from labctl.queue.hooks import alert_hook, job_estimator

        worker = Worker(settings, estimator=job_estimator(lab), on_event=alert_hook(lab))
        with opened(store_location):
            pass  # a bad --store is bad input, reported before anything starts
        worker.install_signal_handlers()
        click.echo(f"worker {settings.worker_id}: channels {', '.join(channels)}", err=True)
        started = time.monotonic()
        worker.run(until_empty=until_empty)
    except (ValueError, ParameterError) as exc:
        fail(exc)
    click.echo(f"worker {settings.worker_id}: stopped after {time.monotonic() - started:.1f} s", err=True)


def _register_planning_commands() -> None:
    """``queue estimate`` (dry-run ETA) and ``queue test-alert`` live in their own modules."""
    from labctl.alerts_cli import test_alert_command
    from labctl.queue.estimate_cli import estimate_command

    queue_group.add_command(estimate_command)
    queue_group.add_command(test_alert_command)


_register_planning_commands()
