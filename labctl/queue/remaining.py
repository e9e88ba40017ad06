"""``labctl queue resume-remaining JOB``: a new job with the steps an interrupted job had not run.

Only where "the rest" is a protocol of its own with other parameters, read from what the run
file shows as *finished*:

- ``arrhenius``: the temperatures whose impedance sweep did not finish;
- ``cycling``: the cycles not completed (at the rate reached; later rates in full).

Anything else is refused with the reason: a half-done EIS sweep, LSV or CCD ramp is not a
measurement that can be continued on a cell that has since sat at open circuit. Nothing is
ever replayed: the new job starts where the file shows the old one stopped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.queue.errors import InvalidJobSpec
from labctl.queue.jobparams import SIM_KEY, as_text, split_params
from labctl.queue.jobs import FINISHED_STATES, CellInfo, Job, JobSpec, JobState

_EIS_LABEL = re.compile(r"EIS (?P<t>-?[0-9.eE+-]+) °C")
_CYCLE_LABEL = re.compile(r"cycle (?P<k>[0-9]+) (?P<half>\w+) (?P<rate>[0-9.eE+-]+) mA/cm²")


def finished_labels(path: Path) -> list[str]:
    """Labels of the steps the run file shows as ended (a step cut by the interruption is not)."""
    from labctl.storage import open_run

    with open_run(path) as run:
        return [step.label for step in run.steps if step.end_reason is not None]


def remaining_spec(job: Job, labels: list[str]) -> JobSpec:
    """The spec of the rest of ``job``; InvalidJobSpec saying why when there is none."""
    if job.state not in FINISHED_STATES or job.state == JobState.COMPLETED:
        raise InvalidJobSpec(f"job {job.id}: it is {job.state}; only a job that stopped early has steps left")
    planner = PLANNERS.get(job.protocol)
    if planner is None:
        known = ", ".join(sorted(PLANNERS))
        raise InvalidJobSpec(
            f"job {job.id}: protocol {job.protocol!r} cannot be continued part-way (its steps build one "
            f"measurement); queue it again with 'queue retry {job.id}'. Continuable: {known}"
        )
    params, sim = split_params(job.params)
    new_params = planner(job, params, labels)
    stored: dict[str, object] = dict(new_params)
    if sim:
        stored[SIM_KEY] = sim
    return JobSpec(
        protocol=job.protocol,
        cell=CellInfo(job.cell.id, job.cell.electrolyte, _note(job)),
        params=stored,
        channel=job.channel or job.requested_channel,
        on_failure=job.on_failure,
    ).validated()


def _note(job: Job) -> str:
    link = f"remaining steps of job {job.id}"
    return f"{job.cell.notes}; {link}" if job.cell.notes else link


def _values(job: Job, params: dict[str, str]) -> dict[str, Any]:
    from labctl.registry import get_protocol

    return get_protocol(job.protocol).validate(params)


def _arrhenius(job: Job, params: dict[str, str], labels: list[str]) -> dict[str, str]:
    values = _values(job, params)
    temperatures = [float(t) for t in values["temperatures"]]
    measured = [float(m["t"]) for label in labels if (m := _EIS_LABEL.fullmatch(label))]
    left = list(temperatures)
    for done in measured:
        match = next((t for t in left if abs(t - done) < 1e-6), None)
        if match is not None:
            left.remove(match)
    if not left:
        raise InvalidJobSpec(f"job {job.id}: every temperature was measured; nothing remains")
    return {**params, "temperatures": as_text(left)}


def _cycling(job: Job, params: dict[str, str], labels: list[str]) -> dict[str, str]:
    values = _values(job, params)
    rates = [float(r) for r in values["rates"]]
    cycles = int(values["cycles"])
    halves: dict[tuple[float, int], int] = {}
    for label in labels:
        if m := _CYCLE_LABEL.fullmatch(label):
            key = (float(m["rate"]), int(m["k"]))
            halves[key] = halves.get(key, 0) + 1
    done_per_rate = [sum(1 for (rate, _), n in halves.items() if abs(rate - r) < 1e-12 and n >= 2) for r in rates]
    first_open = next((i for i, done in enumerate(done_per_rate) if done < cycles), None)
    if first_open is None:
        raise InvalidJobSpec(f"job {job.id}: every cycle was completed; nothing remains")
    done = done_per_rate[first_open]
    later = rates[first_open + 1 :]
    if done == 0:
        return {**params, "rates": as_text(rates[first_open:])}
    if later:
        raise InvalidJobSpec(
            f"job {job.id}: {done} of {cycles} cycles at {rates[first_open]:g} mA/cm² were done and rates "
            f"{as_text(later)} follow; one job has one cycle count for all rates: queue two jobs by hand"
        )
    return {**params, "rates": as_text([rates[first_open]]), "cycles": str(cycles - done)}


PLANNERS: dict[str, Callable[[Job, dict[str, str], list[str]], dict[str, str]]] = {
    "arrhenius": _arrhenius,
    "cycling": _cycling,
}
