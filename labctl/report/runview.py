"""A run file read once for a report: metadata, steps (samples decimated for
plotting), spectra, and the results.

The file is untrusted input: it is opened through ``labctl.storage.open_run``
(SWMR reader, structure checks) inside ``guard.untrusted``, so a refusal is a
``RunFileError`` naming the field. Results come from the same replay as
``labctl analyze RUN.h5`` (the protocol's own analysis on the recorded steps);
where the replay cannot run (a protocol this labctl does not know, an
interrupted run whose analysis needs the missing steps) the results stored in
the file are shown, and the report says why.

Samples are never all loaded: each step is read in chunks and reduced to at
most a budget of rows by min/max decimation on E (a spike or a short stays
visible), the budget shared between the steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.steps import SAMPLE_DTYPE, EndReason

#: Rows of samples kept for plotting, over the whole run.
PLOT_ROWS_BUDGET = 400_000
#: ... but at least this many per step.
PLOT_ROWS_MIN = 400
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class StepView:
    """One recorded step. ``data`` holds the (decimated) samples, ``spectrum`` the
    impedance points (all of them) or None."""

    index: int
    kind: str
    label: str
    end_reason: str  # "" while running, "interrupted" for the step an interruption cut
    message: str
    t_start: float
    duration: float
    charge: float
    step: dict[str, Any]
    rows: int
    row_start: int
    data: np.ndarray = field(repr=False)
    decimated: bool = False
    spectrum: np.ndarray | None = field(default=None, repr=False)

    @property
    def title(self) -> str:
        return f"step {self.index} {self.kind}" + (f" [{self.label}]" if self.label else "")


@dataclass(frozen=True)
class RunView:
    """Everything a report shows about one run."""

    path: Path
    protocol: str
    protocol_version: str
    run_id: str
    status: str
    started_at: str
    ended_at: str
    operator: str
    error: str
    cell: dict[str, Any]
    instrument: dict[str, Any]
    parameters: dict[str, Any]
    software: Any
    simulation: Any
    labctl_version: str
    steps: tuple[StepView, ...]
    events: tuple[dict[str, Any], ...]
    results: dict[str, Any]
    results_source: str  # "replayed" (the analyze code path) or "stored" (the file's own)
    notes: tuple[str, ...]
    n_samples: int
    n_spectra: int

    @property
    def cell_id(self) -> str:
        return str(self.cell.get("id") or "") or "(no cell id)"

    @property
    def end_reason(self) -> str:
        """Why the run ended: its status, the error, and the last step's end reason."""
        parts = [self.status]
        if self.error:
            parts.append(self.error.splitlines()[0][:200])
        if self.steps:
            last = self.steps[-1]
            parts.append(f"last step {last.index} ({last.kind}) ended: {last.end_reason or 'running'}")
        return "; ".join(parts)

    def steps_of(self, *kinds: str) -> list[StepView]:
        return [s for s in self.steps if s.kind in kinds]

    @property
    def spectra_steps(self) -> list[StepView]:
        return [s for s in self.steps if s.spectrum is not None and len(s.spectrum)]


def load_run(path: Path, overrides: dict[str, str] | None = None) -> RunView:
    """Read ``path`` for a report (raises RunFileError for a refused file, OSError
    when it cannot be read)."""
    from labctl.storage import describe_run, open_run
    from labctl.storage.guard import untrusted

    summary = describe_run(path)  # the same status and interruption note as `labctl show`
    with open_run(path) as run, untrusted(path):
        meta = run.meta
        status = run.status
        records = run.steps
        budget = max(PLOT_ROWS_MIN, PLOT_ROWS_BUDGET // max(len(records), 1))
        steps = tuple(_step_view(run, rec, status, budget) for rec in records)
        view_meta = {
            "protocol": str(meta.get("protocol", "")),
            "protocol_version": str(meta.get("protocol_version", "")),
            "run_id": str(meta.get("run_id", "")),
            "started_at": str(meta.get("started_at", "")),
            "operator": str(meta.get("operator", "")),
            "cell": _as_dict(meta.get("cell")),
            "instrument": _as_dict(meta.get("instrument")),
            "parameters": _as_dict(meta.get("parameters")),
            "software": meta.get("software"),
            "simulation": meta.get("simulation"),
            "labctl_version": str(meta.get("labctl_version", "")),
        }
        stored_results = dict(run.results or {})
        error, ended_at = run.error, run.ended_at
        events = tuple(run.events)
        n_samples, n_spectra = run.n_samples, run.n_spectra
    notes: list[str] = []
    if status == "running":
        notes.append("the run is still running: this report shows what was flushed to the file so far")
    if summary.get("note"):
        notes.append(str(summary["note"]))
    results, source, note = analysis_results(path, overrides or {}, stored_results)
    if note:
        notes.append(note)
    return RunView(
        path=path,
        status=status,
        ended_at=ended_at,
        error=error,
        steps=steps,
        events=events,
        results=results,
        results_source=source,
        notes=tuple(notes),
        n_samples=n_samples,
        n_spectra=n_spectra,
        **view_meta,
    )


def analysis_results(path: Path, overrides: dict[str, str], stored: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The analyze code path's results, or the stored ones with the reason why."""
    from labctl.analyze import NothingToAnalyse, replay_run
    from labctl.params import ParameterError

    try:
        report = replay_run(path, overrides)
    except (NothingToAnalyse, ValueError, ParameterError, KeyError) as exc:
        text = " ".join(str(exc).split())[:300]
        if overrides:
            raise
        if stored:
            return stored, "stored", f"results as stored in the file (the analysis could not be replayed: {text})"
        return {}, "none", f"no results: {text}"
    note = str(report.get("note") or "")
    return dict(report.get("results") or {}), "replayed", note


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _step_view(run: Any, rec: Any, status: str, budget: int) -> StepView:
    reason = rec.end_reason
    cut = rec.running and status != "running"
    reason_text = "interrupted" if cut else (reason.value if isinstance(reason, EndReason) else str(reason or ""))
    n = rec.n_rows
    data = _decimated(run, rec.row_start, n, budget)
    return StepView(
        index=rec.index,
        kind=rec.kind,
        label=rec.label,
        end_reason=reason_text,
        message=rec.message,
        t_start=rec.t_start,
        duration=rec.duration,
        charge=rec.charge,
        step=dict(rec.step_dict),
        rows=n,
        row_start=rec.row_start,
        data=data,
        decimated=len(data) < n,
        spectrum=rec.spectrum,
    )


def _decimated(run: Any, start: int, n: int, budget: int) -> np.ndarray:
    """Rows [start, start+n) reduced to <= ``budget`` rows: per bucket, the rows
    with the lowest and the highest E (in time order)."""
    if n <= budget:
        return run.samples(start, start + n)
    bucket = math.ceil(n / (budget // 2))
    chunk_rows = max(bucket, (_READ_CHUNK // bucket) * bucket)
    parts = []
    for lo in range(start, start + n, chunk_rows):
        rows = run.samples(lo, min(lo + chunk_rows, start + n))
        if not len(rows):
            break
        full = (len(rows) // bucket) * bucket
        if full:
            e = np.nan_to_num(rows["E"][:full].reshape(-1, bucket), nan=0.0)
            base = np.arange(0, full, bucket)
            picks = np.stack([base + e.argmin(axis=1), base + e.argmax(axis=1)], axis=1).ravel()
            parts.append(rows[np.unique(picks)])
        if full < len(rows):
            parts.append(rows[full:][[0, -1]] if len(rows) - full > 1 else rows[full:])
    return np.concatenate(parts) if parts else np.empty(0, dtype=SAMPLE_DTYPE)
