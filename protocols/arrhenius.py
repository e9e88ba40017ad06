"""Conductivity over temperature and the activation energy (SS|SE|SS in a chamber).

For each temperature: SetTemperature and wait until the reading is stable,
then the same impedance sweep as ``eis``; σ(T) from the fit at the measured
cell temperature, then an Arrhenius fit (σ form by default, σT or VTF on
request; they differ by about kT, so the form is stored with the result).
Default range -20…90 °C in 10 K steps (12 temperatures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from labctl.analysis.arrhenius import fit_arrhenius
from labctl.params import Param, ParameterError
from labctl.protocol import Cell, GeometryValues, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import StepResult
from protocols._steps import (
    SweepValues,
    eis_sweep,
    impedance_step,
    leave_chamber_at,
    reach_temperature,
    reached,
)
from protocols.eis import PARAMS as EIS_PARAMS
from protocols.eis import mean_temperature, r_leads_source, sweep_conductivity

DEFAULT_TEMPERATURES = tuple(float(t) for t in range(-20, 91, 10))

PARAMS = (
    Param(
        "temperatures",
        DEFAULT_TEMPERATURES,
        "°C",
        "chamber set points, in the order measured",
        minimum=-80.0,
        maximum=250.0,
        kind="floats",
    ),
    Param("tolerance", 0.5, "K", "stable when within this of the set point", minimum=0.05, maximum=10.0),
    Param("settle_time", 1800.0, "s", "must stay within tolerance this long", minimum=0.0, maximum=86400.0),
    Param("timeout", 4.0, "h", "give up on a temperature after this long", minimum=0.1, maximum=48.0),
    Param(
        "form",
        "sigma",
        "",
        "Arrhenius form: sigma = σ0·exp(−Ea/kT), sigmaT = σT = A·exp(−Ea/kT)",
        kind="choice",
        choices=("sigma", "sigmaT"),
    ),
    Param("vtf", False, "", "also fit Vogel–Tammann–Fulcher", kind="bool"),
    Param("final_temperature", 25.0, "°C", "chamber set point left at the end", minimum=-80.0, maximum=250.0),
    *(p for p in EIS_PARAMS if p.name != "rest"),
)


@dataclass(frozen=True)
class ArrheniusValues(SweepValues, GeometryValues):
    temperatures: tuple[float, ...]
    tolerance: float
    settle_time: float
    timeout: float
    form: str
    vtf: bool
    final_temperature: float
    circuit: str


def check(p: ArrheniusValues, cell: Cell | None) -> None:
    temps = p.temperatures
    if len(temps) < 2:
        raise ParameterError("temperatures", "needs at least two temperatures for an activation energy")
    if len(set(temps)) != len(temps):
        raise ParameterError("temperatures", "lists a temperature twice")
    if p.vtf and len(temps) < 4:
        raise ParameterError("vtf", "needs at least four temperatures")


def plan(p: ArrheniusValues, cell: Cell) -> Plan:
    table: list[dict[str, Any]] = []
    for set_point in p.temperatures:
        stable = yield from reach_temperature(set_point, p.tolerance, p.settle_time, p.timeout * 3600.0)
        if not reached(stable):
            table.append({"T_set_C": set_point, "skipped": stable.end_reason.value})
            continue
        sweep = yield from eis_sweep(p, label=f"EIS {set_point:g} °C")
        table.append(conductivity_row(p, cell, set_point, sweep))
    yield from leave_chamber_at(p.final_temperature)
    return analyse_arrhenius(p, table)


def conductivity_row(p: ArrheniusValues, cell: Cell, set_point: float, sweep: StepResult) -> dict[str, Any]:
    """σ at the cell temperature measured during one sweep (the set point if unknown)."""
    measured = mean_temperature(sweep.spectrum)
    fit = sweep_conductivity(sweep.spectrum, cell, r_leads_ohm=p.r_leads, circuit=p.circuit)
    return {
        "T_set_C": set_point,
        "T_C": measured if measured is not None else set_point,
        "R_total_ohm": fit.R_total_ohm,
        "R_bulk_ohm": fit.R_bulk_ohm,
        "sigma_S_cm": fit.sigma_S_cm,
        "sigma_stderr_S_cm": fit.sigma_stderr_S_cm,
        "arc_resolved": fit.arc_resolved,
        "valid": fit.valid,
        "reason": fit.reason,
        "warnings": list(fit.warnings),
    }


def analyse_arrhenius(p: ArrheniusValues, table: list[dict[str, Any]]) -> dict[str, Any]:
    """Activation energy from the reached temperatures' rows (skipped ones are kept in the table)."""
    measured_rows = [row for row in table if "sigma_S_cm" in row and row.get("valid", True)]
    if len(measured_rows) < 2:
        # The run measured what it could: a result marked invalid with the points' reasons,
        # not a failed run (the spectra are in the file, and may be read again by hand).
        reasons = sorted({str(row.get("reason") or "no conductivity") for row in table if row not in measured_rows})
        return {
            "ea_eV": None,
            "ea_stderr_eV": None,
            "form": p.form,
            "valid": False,
            "reason": "fewer than two temperatures gave a valid conductivity: " + "; ".join(reasons),
            "sigma_S_cm": {f"{row['T_C']:.2f}": row["sigma_S_cm"] for row in measured_rows},
            "table": table,
            "r_leads_ohm": p.r_leads,
            "r_leads_source": r_leads_source(p),
            "warnings": _point_warnings(table),
        }
    temps = [row["T_C"] for row in measured_rows]
    sigmas = [row["sigma_S_cm"] for row in measured_rows]
    ses = [row.get("sigma_stderr_S_cm") for row in measured_rows]
    weighted = all(se is not None and math.isfinite(se) and se > 0 for se in ses)
    fit = fit_arrhenius(temps, sigmas, form=p.form, sigma_stderr_S_cm=ses if weighted else None)
    warnings = _point_warnings(table)
    results: dict[str, Any] = {
        "ea_eV": fit.Ea_eV,
        "ea_stderr_eV": fit.Ea_stderr_eV,
        "form": fit.form,
        "prefactor": fit.prefactor,
        "prefactor_unit": fit.prefactor_unit,
        "r_squared": fit.r_squared,
        "sigma_S_cm": {f"{row['T_C']:.2f}": row["sigma_S_cm"] for row in measured_rows},
        "table": table,
        "r_leads_ohm": p.r_leads,
        "r_leads_source": r_leads_source(p),
        "warnings": warnings,
        "valid": True,
        "conventions": {
            **fit.conventions,
            "temperature": "mean measured cell temperature during each sweep",
            "resistance": "R_total - r_leads (all electrolyte arcs)",
        },
    }
    if p.vtf:
        results["vtf"] = fit_arrhenius(temps, sigmas, form="vtf").as_dict()
    return results


def _point_warnings(table: list[dict[str, Any]]) -> list[str]:
    """The temperatures' warnings, each once, prefixed with the set points it came from."""
    seen: dict[str, list[str]] = {}
    for row in table:
        for w in row.get("warnings", []):
            seen.setdefault(w.split(";")[0], []).append(f"{row['T_set_C']:g}")
        if row.get("valid") is False:
            seen.setdefault(f"excluded (invalid): {row.get('reason')}", []).append(f"{row['T_set_C']:g}")
    return [f"{text} [at {', '.join(ts)} °C]" for text, ts in seen.items()]


def demands(p: ArrheniusValues, cell: Cell) -> list[Demand]:
    return [
        Demand("temperature", max(p.temperatures), "temperatures", "highest set point"),
        Demand("temperature", p.final_temperature, "final_temperature"),
    ]


PROTOCOL = Protocol(
    name="arrhenius",
    version="1.0",
    title="EIS over temperature -> σ(T) and activation energy",
    cell_type="ss",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"SetTemperature", "Impedance"}),
    description=__doc__ or "",
    preview=lambda p, cell: [impedance_step(p)],
    result_keys=("ea_eV", "sigma_S_cm", "form"),
    demands=demands,
    values_type=ArrheniusValues,
)
