"""Analysis after the fact: stored run files and spectra measured elsewhere.

A stored run is re-analysed by *replaying* its protocol: the protocol
generator is driven with the StepResults rebuilt from the file instead of a
channel, so the analysis is exactly the code that ran live, and analysis-only
parameters (an onset method, a threshold, the lead resistance) can be changed
with ``-p``. Parameters that change the steps make the replay diverge from the
recording, which is reported as an error rather than silently mixed.

Impedance files from other software (ZPlot, EC-Lab, Gamry, CSV, text) go
through the same conductivity analysis as the ``eis`` protocol.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labctl import registry
from labctl.analysis.arrhenius import fit_arrhenius
from labctl.analysis.eis_conductivity import ConductivityResult, conductivity_from_spectrum, sigma_from_resistance
from labctl.cathode import resolve_cathode
from labctl.params import Param, ParameterError, validate
from labctl.steps import EndReason, StepResult, StepRows, empty_samples

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

SPECTRUM_PARAMS = (
    Param("thickness", None, "µm", "electrolyte thickness", minimum=0.1, maximum=1e5, default_text="required"),
    Param("area", None, "cm²", "electrode area", minimum=1e-4, maximum=1e3, default_text="required"),
    Param("r_leads", 0.0, "Ω", "lead resistance subtracted from the intercept", minimum=0.0, maximum=1e6),
    Param(
        "circuit",
        "auto",
        "",
        "equivalent circuit",
        kind="choice",
        choices=("auto", "blocking", "blocking_gb"),
    ),
)


def is_run_file(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_SIGNATURE


class NothingToAnalyse(Exception):
    """A readable run file that holds nothing its protocol can analyse (an
    interrupted run whose completed steps are not enough): exit 1, one line."""


#: How many unrecorded steps an interrupted run's protocol may still ask for
#: before the replay gives up (protocols are finite; this bounds a broken one).
MAX_UNRECORDED_STEPS = 100_000

#: Statuses whose steps may stop short of what the protocol wanted.
_CUT_SHORT = ("interrupted", "running")


def replay_run(path: Path, overrides: Mapping[str, str]) -> dict[str, Any]:
    """Re-run the stored run's protocol analysis on its recorded steps.

    An interrupted run (or one still running) is analysed from its completed
    steps: the steps the protocol still asks for are handed back as aborted
    with no data, so the protocol's own handling of cut-short steps decides
    what can be said, and the report carries a ``note`` saying so.
    """
    from labctl.storage import open_run
    from labctl.storage.guard import untrusted
    from labctl.storage.reader import SampleRowsFromFile

    with open_run(path) as run, untrusted(path):
        status = run.status
        protocol = registry.get_protocol(str(run.meta.get("protocol", "")))
        values = protocol.validate({**_stored_parameters(run.meta), **overrides})
        cell = _cell(run.meta, protocol.cell_type)
        if "loading" in values:  # a full cell: cathode parameters given now win over the recorded ones
            cell = dataclasses.replace(cell, cathode=resolve_cathode(values, run.meta.get("cell") or {}))
        results = _completed_steps(run, SampleRowsFromFile(path))
        n_steps = len(run.steps)
    cut_short = status in _CUT_SHORT
    try:
        out = _drive(protocol, values, cell, results, status, cut_short)
    except NothingToAnalyse as exc:
        raise NothingToAnalyse(f"{path}: {exc}") from None
    report: dict[str, Any] = {
        "file": str(path),
        "protocol": protocol.name,
        "status": status,
        "parameters": values,
        "results": out,
    }
    if cut_short:
        report["completed_steps"] = len(results)
        state = "interrupted after" if status == "interrupted" else "still running; so far up to"
        report["note"] = (
            f"run {state} step {results[-1].index}; results from the {len(results)} completed steps"
            f" (of {n_steps} recorded)"
        )
    return report


def _drive(
    protocol: Any, values: Mapping[str, Any], cell: Any, results: list[StepResult], status: str, cut_short: bool
) -> dict[str, Any]:
    if cut_short and not results:
        raise NothingToAnalyse(f"run {status} before its first step completed; nothing to analyse")
    plan = protocol.make_plan(values, cell)
    try:
        step = next(plan)
        for recorded in results:
            if step.kind != recorded.step.kind:
                raise ValueError(
                    f"replay diverged at step {recorded.index}: the protocol now asks for {step.kind}, "
                    f"the file recorded {recorded.step.kind} (a changed parameter alters the steps)"
                )
            step = plan.send(recorded)
        if not cut_short:
            raise ValueError(
                f"the run file ends after {len(results)} steps (status {status}); the protocol wanted more"
            )
        _send_unrecorded(plan, step, results)
    except StopIteration as stop:
        return dict(stop.value or {})
    finally:
        plan.close()
    raise AssertionError("unreachable")  # _send_unrecorded ends in StopIteration or raises


def _send_unrecorded(plan: Any, step: Any, results: list[StepResult]) -> Any:
    """Hand the protocol the steps the run never did, as aborted and empty.

    Raises StopIteration with the protocol's results, or NothingToAnalyse if
    the protocol cannot summarise without them."""
    last = results[-1]
    t_end = last.t_start + (last.duration if np.isfinite(last.duration) else 0.0)
    index = last.index + 1
    try:
        for _ in range(MAX_UNRECORDED_STEPS):
            step = plan.send(
                StepResult(
                    index=index,
                    step=step,
                    end_reason=EndReason.ABORTED,
                    t_start=t_end,
                    duration=0.0,
                    charge=0.0,
                    data=empty_samples(),
                    message="not recorded: the run was interrupted",
                )
            )
            index += 1
    except StopIteration:
        raise
    except Exception as exc:  # the protocol's code on steps it never got: any failure means "cannot say"
        raise NothingToAnalyse(
            f"run interrupted after step {last.index}; the {step.kind} steps after it are needed for this "
            f"analysis ({type(exc).__name__}: {str(exc)[:120]})"
        ) from exc
    raise NothingToAnalyse(f"run interrupted after step {last.index}; the protocol asks for endless more steps")


def _stored_parameters(meta: Mapping[str, Any]) -> dict[str, Any]:
    stored = meta.get("parameters") or {}
    return {str(k): v for k, v in stored.items() if v is not None}


def _cell(meta: Mapping[str, Any], default_type: str) -> Any:
    """The cell from the file's ``cell`` attribute (types checked on opening)."""
    from labctl.cathode import CathodeSpec
    from labctl.protocol import Cell
    from labctl.storage.guard import RunFileError

    cell_meta = meta.get("cell") or {}
    for name in ("area_cm2", "thickness_um"):
        if cell_meta.get(name) is None:
            raise RunFileError(f"cell.{name}", "missing: the analysis needs the cell's geometry")
    return Cell(
        type=str(cell_meta.get("type") or default_type),
        area_cm2=float(cell_meta["area_cm2"]),
        thickness_um=float(cell_meta["thickness_um"]),
        id=str(cell_meta.get("id") or ""),
        ocv_V=cell_meta.get("ocv_V"),
        cathode=CathodeSpec.from_mapping(cell_meta["cathode"]) if cell_meta.get("cathode") else None,
    )


def _completed_steps(run: Any, rows_from_file: Any) -> list[StepResult]:
    """StepResults of the steps that ended, up to the first that did not (the
    step an interruption cut); a step's samples are read back when the protocol
    asks for them (a long run's samples are never all loaded)."""
    from labctl.storage.guard import RunFileError

    results = []
    for rec in run.steps:
        if rec.running or rec.end_reason is None:
            break
        where = f"steps[{rec.position}]"
        if rec.step is None:
            kind = str(rec.step_dict.get("kind", rec.kind))[:40]
            raise RunFileError(f"{where}.step", f"kind {kind!r} with fields this labctl cannot rebuild")
        if not isinstance(rec.end_reason, EndReason):
            allowed = ", ".join(r.value for r in EndReason)
            raise RunFileError(f"{where}.end_reason", f"is {str(rec.end_reason)[:40]!r}; allowed: {allowed}")
        results.append(
            StepResult(
                index=rec.index,
                step=rec.step,
                end_reason=rec.end_reason,
                t_start=rec.t_start,
                duration=rec.duration,
                charge=rec.charge,
                last=_last_row(run, rec),
                spectrum=rec.spectrum,
                data=StepRows(rec.row_start, rec.row_start + rec.n_rows, rows_from_file),
                message=rec.message,
            )
        )
    return results


def _last_row(run: Any, record: Any) -> dict[str, float]:
    """A recorded step's last sample as a dict (only that row is read)."""
    n = record.n_rows
    if not n:
        return {}
    row = run.samples(record.row_start + n - 1, record.row_start + n)
    return {name: float(row[name][0]) for name in row.dtype.names}


def headline(results: Mapping[str, Any]) -> list[str]:
    """The lines a reader needs first: σ ± SE (or why there is none), Ea ± SE, the labelled
    circuit and every warning in full."""
    lines = []
    if results.get("valid") is False:
        lines.append(f"INVALID: {results.get('reason')}")
    for key, unit, fmt in (("sigma", "S/cm", ".4g"), ("sigma_bulk", "S/cm", ".4g"), ("ea", "eV", ".4f")):
        value = results.get(f"{key}_{unit.replace('/', '_')}" if key != "ea" else "ea_eV")
        if isinstance(value, float) and math.isfinite(value):
            se = results.get(f"{key}_stderr_{unit.replace('/', '_')}" if key != "ea" else "ea_stderr_eV")
            pm = f" ± {se:{fmt}}" if isinstance(se, float) and math.isfinite(se) else ""
            form = f" ({results.get('form')} form)" if key == "ea" else ""
            lines.append(f"{key} = {value:{fmt}}{pm} {unit} (1 sigma){form}")
    if results.get("circuit_labelled"):
        lines.append(f"circuit: {results['circuit_labelled']}")
    lines += [f"warning: {w}" for w in results.get("warnings") or []]
    return lines


def analyze_spectrum_file(path: Path, given: Mapping[str, str]) -> dict[str, Any]:
    """Conductivity of one imported spectrum."""
    from labctl.importers import load_spectrum

    values = validate(SPECTRUM_PARAMS, given, context="an impedance file")
    _require_geometry(values)
    spectrum = load_spectrum(path)
    result = _conductivity(spectrum, values)
    return {
        "file": str(path),
        "format": spectrum.format,
        "points": len(spectrum.freq),
        "metadata": spectrum.metadata,
        "results": result.as_dict(),
    }


def _conductivity(spectrum: Any, values: Mapping[str, Any]) -> ConductivityResult:
    return conductivity_from_spectrum(
        spectrum.freq,
        spectrum.z,
        thickness_um=values["thickness"],
        area_cm2=values["area"],
        r_leads_ohm=values["r_leads"],
        circuit=values["circuit"],
    )


def _require_geometry(values: Mapping[str, Any]) -> None:
    for name in ("thickness", "area"):
        if values[name] is None:
            param = next(p for p in SPECTRUM_PARAMS if p.name == name)
            raise ParameterError(name, f"is required for an impedance file: -p {name}=… ({param.allowed})")


def analyze_arrhenius_files(
    paths: Sequence[Path],
    temperatures_c: Sequence[float] | None,
    given: Mapping[str, str],
    form: str = "sigma",
) -> dict[str, Any]:
    """σ(T) and Ea from a set of spectra, one per temperature.

    By default from the total electrolyte resistance (bulk + grain boundary);
    where two arcs are resolved the bulk-only σ and Ea are reported as well.
    """
    from labctl.importers import load_spectrum

    values = validate(SPECTRUM_PARAMS, given, context="arrhenius")
    _require_geometry(values)
    if temperatures_c is not None and len(temperatures_c) != len(paths):
        raise ParameterError("temperatures", f"{len(temperatures_c)} temperatures given for {len(paths)} files")
    rows = []
    for k, path in enumerate(paths):
        spectrum = load_spectrum(path)
        temp = temperatures_c[k] if temperatures_c is not None else spectrum.metadata.get("temperature_C")
        if temp is None:
            raise ParameterError("temperatures", f"{path} carries no temperature: give --temperatures")
        fit = _conductivity(spectrum, values)
        bulk = fit.R_bulk_arc_ohm if fit.R_gb_ohm is not None else None
        rows.append(
            {
                "file": str(path),
                "T_C": float(temp),
                "R_total_ohm": fit.R_total_ohm,
                "sigma_S_cm": fit.sigma_S_cm,
                "sigma_stderr_S_cm": fit.sigma_stderr_S_cm,
                "valid": fit.valid,
                "warnings": list(fit.warnings),
                "R_bulk_ohm": bulk,
                "R_bulk_rel_err": fit.R_bulk_arc_rel_err if bulk is not None else None,
                "R_gb_ohm": fit.R_gb_ohm,
                "sigma_bulk_S_cm": None
                if bulk is None
                else sigma_from_resistance(bulk, values["thickness"], values["area"]),
                "sigma_bulk_stderr_S_cm": fit.sigma_bulk_stderr_S_cm,
                "circuit": fit.circuit,
            }
        )
    invalid = [r["file"] for r in rows if not r["valid"]]
    if invalid:
        raise NothingToAnalyse(f"sigma not determined for {', '.join(invalid)}: see 'labctl analyze FILE'")
    temps = np.array([r["T_C"] for r in rows])
    ses = [r["sigma_stderr_S_cm"] for r in rows]
    weighted = all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in ses)
    total = fit_arrhenius(
        temps, [r["sigma_S_cm"] for r in rows], form=form, sigma_stderr_S_cm=ses if weighted else None
    )
    warnings = sorted({w for r in rows for w in r["warnings"]})
    out: dict[str, Any] = {
        "ea_eV": total.Ea_eV,
        "ea_stderr_eV": total.Ea_stderr_eV,
        "r_squared": total.r_squared,
        "form": form,
        "basis": "total electrolyte resistance (bulk + grain boundary)",
        "conventions": total.conventions,
        "warnings": warnings,
        "table": rows,
    }
    if all(r["sigma_bulk_S_cm"] is not None for r in rows) and len(rows) >= 2:
        bulk_ses = [r["sigma_bulk_stderr_S_cm"] for r in rows]
        bulk_weighted = all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in bulk_ses)
        bulk_fit = fit_arrhenius(
            temps,
            [r["sigma_bulk_S_cm"] for r in rows],
            form=form,
            sigma_stderr_S_cm=bulk_ses if bulk_weighted else None,
        )
        out["ea_bulk_eV"] = bulk_fit.Ea_eV
        out["ea_bulk_stderr_eV"] = bulk_fit.Ea_stderr_eV
    return {"files": [str(p) for p in paths], "results": out}
