"""``labctl export RUN.h5 --csv DIR``: a run as plain CSV files.

What DIR gets (replaced as a whole if it holds a previous export; any other
non-empty folder is refused):

- ``step_0003_ConstantCurrent.csv`` per step with samples: ``t_s,E_V,I_A,Q_C,T_degC``
  (run time; every row of the run file, full precision; ``nan`` where unknown);
- ``spectrum_0001_Impedance.csv`` per step with impedance points:
  ``freq_Hz,Z_real_ohm,Z_imag_ohm,E_dc_V,I_dc_A,t_s,T_degC`` after ``#`` comment
  lines that state the sign convention: Z = Z_real + j·Z_imag, Z_imag < 0 for
  a capacitive response (the convention of impedance.py and of labctl's own
  importer, which reads these files back); plot −Z_imag upward;
- ``steps.csv``: one row per step (kind, label, end reason, times, charge, files);
- ``results.json`` (metadata, results, uncertainties, warnings, notes) and
  ``results.csv`` (``name,value,uncertainty``, one row per result).

Samples are streamed a chunk at a time, never all loaded.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

import click
import numpy as np

from labctl.report.atomic import EXPORT_MARKER, OutputPathError, atomic_dir, check_dir_target

SAMPLE_COLUMNS = (("t", "t_s"), ("E", "E_V"), ("I", "I_A"), ("Q", "Q_C"), ("T", "T_degC"))
SPECTRUM_COLUMNS = (
    ("freq", "freq_Hz"),
    ("z_re", "Z_real_ohm"),
    ("z_im", "Z_imag_ohm"),
    ("E_dc", "E_dc_V"),
    ("I_dc", "I_dc_A"),
    ("t", "t_s"),
    ("T", "T_degC"),
)
SIGN_CONVENTION = "Z = Z_real + j*Z_imag; Z_imag < 0 for a capacitive response (plot -Z_imag upward)"
_CHUNK = 1 << 18
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def export_csv(path: Path, target: Path) -> list[str]:
    """Write the export of ``path`` into folder ``target``; returns the file names."""
    from labctl.report.runview import load_run
    from labctl.report.summary import report_json
    from labctl.report.tabulate import result_rows
    from labctl.storage import open_run
    from labctl.storage.guard import untrusted

    check_dir_target(target, EXPORT_MARKER)
    view = load_run(path)
    written: list[str] = []
    with atomic_dir(target, EXPORT_MARKER) as tmp, open_run(path) as run, untrusted(path):
        index_rows = []
        for rec in run.steps:
            kind = _SAFE.sub("_", rec.kind)[:40] or "step"
            samples_name = spectrum_name = ""
            if rec.n_rows:
                samples_name = f"step_{rec.index:04d}_{kind}.csv"
                with open(tmp / samples_name, "w", newline="", encoding="utf-8") as fh:
                    _write_samples(fh, run, rec.row_start, rec.row_start + rec.n_rows)
                written.append(samples_name)
            spectrum = rec.spectrum
            if spectrum is not None:
                spectrum_name = f"spectrum_{rec.index:04d}_{kind}.csv"
                with open(tmp / spectrum_name, "w", newline="", encoding="utf-8") as fh:
                    _write_spectrum(fh, spectrum, view, rec)
                written.append(spectrum_name)
            step_view = view.steps[rec.position] if rec.position < len(view.steps) else None
            index_rows.append(
                [
                    rec.index,
                    rec.kind,
                    rec.label,
                    step_view.end_reason if step_view else str(rec.end_reason or ""),
                    _num(rec.t_start),
                    _num(rec.duration),
                    _num(rec.charge),
                    rec.n_rows,
                    0 if spectrum is None else len(spectrum),
                    samples_name,
                    spectrum_name,
                    rec.message,
                ]
            )
        with open(tmp / "steps.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "index",
                    "kind",
                    "label",
                    "end_reason",
                    "t_start_s",
                    "duration_s",
                    "charge_C",
                    "rows",
                    "spectrum_points",
                    "samples_file",
                    "spectrum_file",
                    "message",
                ]
            )
            w.writerows(index_rows)
        with open(tmp / "results.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "value", "uncertainty"])
            for r in result_rows(view.results):
                w.writerow([r.name, _cell(r.raw), _cell(r.raw_uncertainty)])
        (tmp / "results.json").write_text(json.dumps(report_json(view), indent=2, allow_nan=False), encoding="utf-8")
    return ["steps.csv", "results.csv", "results.json", *written]


def _num(x: float) -> str:
    return repr(float(x))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value) if not isinstance(value, float) else repr(value)
    return json.dumps(value, default=str, allow_nan=False)


def _write_samples(fh: TextIO, run: Any, start: int, stop: int) -> None:
    fh.write(",".join(name for _, name in SAMPLE_COLUMNS) + "\n")
    for lo in range(start, stop, _CHUNK):
        rows = run.samples(lo, min(lo + _CHUNK, stop))
        if not len(rows):
            break
        _write_rows(fh, np.column_stack([rows[field] for field, _ in SAMPLE_COLUMNS]))


def _write_spectrum(fh: TextIO, spectrum: np.ndarray, view: Any, rec: Any) -> None:
    fh.write(
        f"# labctl impedance spectrum: run {view.run_id}, step {rec.index} {rec.kind} [{_one_line(rec.label)}],"
        f" cell {_one_line(view.cell_id)}\n"
    )
    fh.write(f"# sign convention: {SIGN_CONVENTION}\n")
    fh.write("# units: frequency Hz, impedance ohm, E_dc V, I_dc A, t s (run time), T degC (nan = not measured)\n")
    fh.write(",".join(name for _, name in SPECTRUM_COLUMNS) + "\n")
    _write_rows(fh, np.column_stack([spectrum[field] for field, _ in SPECTRUM_COLUMNS]))


def _write_rows(fh: TextIO, table: np.ndarray) -> None:
    """Shortest text that reads back to the same float (Python's repr), ``nan`` where unknown."""
    fh.writelines(",".join(map(repr, row)) + "\n" for row in table.tolist())


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:200]


@click.command("export")
@click.argument("run_file", metavar="RUN.h5")
@click.option(
    "--csv", "csv_dir", default=None, metavar="DIR", help="folder for the CSV files (new, empty, or a previous export)"
)
def export_command(run_file: str, csv_dir: str | None) -> None:
    """Export a run as CSV: one file per step (units in the header), the
    spectra (freq_Hz, Z_real_ohm, Z_imag_ohm), steps.csv, results.csv/json."""
    from labctl.params import ParameterError
    from labctl.storage import RunFileError
    from labctl.watchdog import read_deadline

    try:
        if csv_dir is None:
            raise OutputPathError("--csv DIR is required (the folder for the CSV files; the only export format)")
        path, target = Path(run_file), Path(csv_dir)
        if not path.is_file():
            raise OutputPathError(f"RUN.h5: no run file at {path}")
        if not csv_dir.strip():
            raise OutputPathError("--csv: empty path (give a folder)")
        check_dir_target(target, EXPORT_MARKER)
        with read_deadline(run_file):
            names = export_csv(path, target)
    except (OutputPathError, ParameterError, RunFileError) as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(
            f"error: cannot export {run_file}: {(str(exc).splitlines() or [type(exc).__name__])[0][:300]}", err=True
        )
        sys.exit(1)
    click.echo(f"{target}  ({len(names)} files)")
