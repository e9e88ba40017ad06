"""The report's words and numbers (no figures): metadata rows, results rows,
problems, conventions, as plain data for the HTML, PDF and JSON writers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from labctl.jsonable import to_jsonable
from labctl.report.runview import RunView
from labctl.report.tabulate import Problems, ResultRow, conventions, format_value, problems, result_rows


@dataclass(frozen=True)
class Summary:
    title: str
    notes: tuple[str, ...]
    metadata: tuple[tuple[str, str], ...]
    parameters: tuple[tuple[str, str], ...]
    results: tuple[ResultRow, ...]
    tables: tuple[tuple[str, list[dict[str, Any]]], ...]  # results that are lists of records
    problems: Problems
    conventions: tuple[tuple[str, str], ...]
    steps: tuple[tuple[str, ...], ...]  # header row first


STEP_HEADER = (
    "index",
    "kind",
    "label",
    "end reason",
    "t_start / s",
    "duration / s",
    "charge / C",
    "rows",
    "Z points",
    "message",
)


def summarize(view: RunView) -> Summary:
    rows = result_rows(view.results)
    tables = tuple(
        (r.name, list(r.raw))
        for r in rows
        if isinstance(r.raw, list) and r.raw and all(isinstance(x, dict) for x in r.raw)
    )
    table_names = {name for name, _ in tables}
    notes = list(view.notes)
    if view.status not in ("completed",):
        notes.insert(0, f"run status: {view.status}" + (f" — {view.error.splitlines()[0]}" if view.error else ""))
    return Summary(
        title=f"{view.protocol} run {view.run_id} — cell {view.cell_id}",
        notes=tuple(dict.fromkeys(notes)),
        metadata=tuple(_metadata(view)),
        parameters=tuple((str(k), format_value(v)) for k, v in view.parameters.items()),
        results=tuple(r for r in rows if r.name not in table_names),
        tables=tables,
        problems=problems(view.results),
        conventions=tuple(conventions(view.results)),
        steps=(STEP_HEADER, *(_step_row(s) for s in view.steps)),
    )


def _metadata(view: RunView) -> list[tuple[str, str]]:
    cell = ", ".join(f"{k}={format_value(v)}" for k, v in view.cell.items() if v not in (None, ""))
    inst = ", ".join(f"{k}={format_value(v)}" for k, v in view.instrument.items() if v not in (None, ""))
    rows = [
        ("file", str(view.path)),
        ("run id", view.run_id),
        ("protocol", f"{view.protocol} {view.protocol_version}"),
        ("status", view.status),
        ("end reason", view.end_reason),
        ("started", view.started_at),
        ("ended", view.ended_at or "—"),
        ("operator", view.operator or "—"),
        ("cell", cell or "—"),
        ("instrument", inst or "—"),
        ("samples / impedance points / steps", f"{view.n_samples} / {view.n_spectra} / {len(view.steps)}"),
        (
            "results",
            {
                "replayed": "replayed from the recorded steps (as labctl analyze)",
                "stored": "as stored in the file",
                "none": "none",
            }[view.results_source],
        ),
        ("labctl", view.labctl_version),
    ]
    if view.simulation:
        rows.append(("simulation", json.dumps(to_jsonable(view.simulation), default=str)[:400]))
    if view.software:
        rows.append(("software", json.dumps(to_jsonable(view.software), default=str)[:300]))
    return rows


def _step_row(s: Any) -> tuple[str, ...]:
    n_z = 0 if s.spectrum is None else len(s.spectrum)
    return (
        str(s.index),
        s.kind,
        s.label,
        s.end_reason or "running",
        format_value(s.t_start),
        format_value(s.duration),
        format_value(s.charge),
        str(s.rows),
        str(n_z),
        s.message,
    )


def report_json(view: RunView) -> dict[str, Any]:
    """What results.json holds: metadata, results (as computed), problems, notes."""
    summ = summarize(view)
    return to_jsonable(
        {
            "file": str(view.path),
            "protocol": view.protocol,
            "protocol_version": view.protocol_version,
            "run_id": view.run_id,
            "status": view.status,
            "end_reason": view.end_reason,
            "started_at": view.started_at,
            "ended_at": view.ended_at,
            "operator": view.operator,
            "cell": view.cell,
            "instrument": view.instrument,
            "parameters": view.parameters,
            "results_source": view.results_source,
            "results": view.results,
            "uncertainties": {r.name: r.raw_uncertainty for r in summ.results if r.raw_uncertainty is not None},
            "warnings": list(summ.problems.warnings),
            "invalid": list(summ.problems.invalid),
            "notes": list(summ.notes),
        }
    )
