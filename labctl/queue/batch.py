"""A night's plan from a TOML file (``labctl queue add-batch FILE.toml``), checked whole.

::

    [[job]]
    key = "eis-a"                 # optional: how other jobs of the file refer to this one
    protocol = "eis"
    cell_id = "A-017"
    electrolyte = "LiTFSI in PEO"  # optional, as are notes
    channel = "sim1"              # optional: omitted = any free channel
    on_failure = "stop"           # stop | continue | retry (default continue)
    after = ["other-key"]         # optional: keys of this file or ids of queued jobs
    not_before = 2026-12-05T02:00:00   # optional: TOML date-time or ISO text, local time
    params = { thickness = 500 }  # protocol parameters, lab units
    sim = { sigma = 1e-3 }        # simulated channels: the cell's truth

Every job is checked like ``labctl run`` would check it (protocol, parameters, channel, the
lab file's limits), dependencies must exist and form no cycle; the first problem rejects the
whole file with one line naming the job and field, and nothing is queued. Jobs are queued in
file order, except that a job is moved after the jobs it depends on (a channel's queue is
strict FIFO: a job waiting for one behind it would wait for ever).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labctl.config import LabConfig
from labctl.queue.errors import InvalidJobSpec
from labctl.queue.jobparams import job_params
from labctl.queue.jobs import CellInfo, JobSpec, OnFailure, choice
from labctl.queue.timeparse import parse_time
from labctl.queue.validate import check_spec

JOB_KEYS = (
    "key", "protocol", "cell_id", "electrolyte", "notes", "channel",
    "on_failure", "after", "not_before", "params", "sim",
)  # fmt: skip
MAX_JOBS = 10_000
MAX_FILE_BYTES = 1 << 20


def load_batch(path: Path, lab: LabConfig | None) -> list[JobSpec]:
    """The file's jobs, checked and in queueing order; InvalidJobSpec (one line) otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidJobSpec(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidJobSpec(f"{path}: {len(raw)} bytes is too large for a batch file (allowed: up to 1 MiB)")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidJobSpec(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidJobSpec(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(document) - {"job"})
    if unknown:
        raise InvalidJobSpec(f"{path}: unknown table {unknown[0]!r} (allowed: [[job]] tables)")
    tables = document.get("job", [])
    if not isinstance(tables, list) or not tables:
        raise InvalidJobSpec(f"{path}: no jobs (write one [[job]] table per job)")
    if len(tables) > MAX_JOBS:
        raise InvalidJobSpec(f"{path}: {len(tables)} jobs (allowed: up to {MAX_JOBS})")
    specs = []
    for index, table in enumerate(tables):
        where = _where(path, index, table)
        try:
            spec = spec_from_table(table)
            check_spec(spec, lab)
        except InvalidJobSpec as exc:
            raise InvalidJobSpec(f"{where}: {exc}") from None
        specs.append(spec)
    return dependency_order(path, specs)


def _where(path: Path, index: int, table: object) -> str:
    key = table.get("key") if isinstance(table, Mapping) else None
    return f"{path}: job {index + 1}" + (f" ({key})" if isinstance(key, str) and key else "")


def spec_from_table(table: object) -> JobSpec:
    if not isinstance(table, Mapping):
        raise InvalidJobSpec("expected a [[job]] table")
    unknown = sorted(set(table) - set(JOB_KEYS))
    if unknown:
        raise InvalidJobSpec(f"unknown field {unknown[0]!r} (allowed: {', '.join(JOB_KEYS)})")
    for name in ("protocol", "cell_id"):
        if not isinstance(table.get(name), str) or not table[name].strip():
            raise InvalidJobSpec(f"{name}: required, a non-empty text")
    text_fields = {name: table.get(name, "") for name in ("electrolyte", "notes")}
    for name, value in text_fields.items():
        if not isinstance(value, str):
            raise InvalidJobSpec(f"{name}: expected text, got {type(value).__name__}")
    channel = table.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise InvalidJobSpec(f"channel: expected a channel name, got {type(channel).__name__}")
    after = table.get("after", [])
    if isinstance(after, str | int):
        after = [after]
    if not isinstance(after, list) or any(isinstance(a, bool) or not isinstance(a, str | int) for a in after):
        raise InvalidJobSpec("after: expected keys of this file or job ids")
    return JobSpec(
        protocol=table["protocol"].strip(),
        cell=CellInfo(table["cell_id"].strip(), text_fields["electrolyte"], text_fields["notes"]),
        params=job_params(_table(table, "params"), _table(table, "sim")),
        channel=channel,
        on_failure=choice(OnFailure, table.get("on_failure", OnFailure.CONTINUE.value), "on_failure"),
        after=tuple(after),
        not_before=None if table.get("not_before") is None else parse_time(table["not_before"], "not_before"),
        key=table.get("key"),
    ).validated()


def _table(table: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = table.get(name, {})
    if not isinstance(value, Mapping):
        raise InvalidJobSpec(f"{name}: expected a table of NAME = value")
    for key, item in value.items():
        if isinstance(item, Mapping):
            raise InvalidJobSpec(f"{name}.{key}: expected a number, text or list, got a table")
    return value


def dependency_order(path: Path, specs: list[JobSpec]) -> list[JobSpec]:
    """File order, with each job moved after the jobs of the file it depends on; a cycle or an
    unknown key rejects the file."""
    keys = {spec.key: index for index, spec in enumerate(specs) if spec.key is not None}
    if len(keys) != sum(spec.key is not None for spec in specs):
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            if spec.key in seen:
                raise InvalidJobSpec(f"{path}: job {index + 1} ({spec.key}): key: used by an earlier job too")
            if spec.key is not None:
                seen.add(spec.key)
    for index, spec in enumerate(specs):
        for ref in spec.after:
            if isinstance(ref, str) and ref not in keys:
                raise InvalidJobSpec(
                    f"{path}: job {index + 1}{_key(spec)}: after: {ref!r} is not the key of a job in this file"
                )
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int, trail: list[int]) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "visiting":
            cycle = [*trail[trail.index(index) :], index]
            names = " -> ".join(str(specs[i].key) for i in cycle)
            spec = specs[cycle[0]]
            raise InvalidJobSpec(f"{path}: job {cycle[0] + 1}{_key(spec)}: after: dependency cycle {names}")
        state[index] = "visiting"
        for ref in specs[index].after:
            if isinstance(ref, str):
                visit(keys[ref], [*trail, index])
        state[index] = "done"
        order.append(index)

    for index in range(len(specs)):
        visit(index, [])
    return [specs[i] for i in order]


def _key(spec: JobSpec) -> str:
    return f" ({spec.key})" if spec.key else ""
