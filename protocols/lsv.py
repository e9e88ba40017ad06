"""Oxidation stability window by linear sweep voltammetry on Li|SE|SS.

Sequence: open-circuit rest (records the OCV), then a sweep from OCV to the
upper limit (default 5.0 V, up to 6 V) at 1 mV/s (0.01–10 mV/s), stopped early
if the current density runs away. The onset is found by the chosen method
(current-density threshold, default 0.05 mA/cm²; tangent; dI/dV) and the other
methods' values are reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.analysis.lsv import lsv_onset
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import Limits, Rest, VoltageSweep
from labctl.units import current_density_to_a, mv_per_s_to_v_per_s

PARAMS = (
    Param("upper", 5.0, "V", "upper potential limit (vs Li/Li+)", minimum=1.0, maximum=6.0),
    Param("rate", 1.0, "mV/s", "scan rate", minimum=0.01, maximum=10.0),
    Param("rest", 60.0, "s", "open-circuit rest before the sweep", minimum=1.0, maximum=86400.0),
    Param("threshold", 0.05, "mA/cm²", "onset current density (threshold method)", minimum=0.001, maximum=1.0),
    Param(
        "method",
        "threshold",
        "",
        "onset method reported as onset_V",
        kind="choice",
        choices=("threshold", "tangent", "dIdV"),
    ),
    Param("resolution", 1.0, "mV", "potential step between samples", minimum=0.1, maximum=10.0),
    Param("max_current", 5.0, "mA/cm²", "stop the sweep above this current density", minimum=0.01, maximum=100.0),
    *GEOMETRY_PARAMS,
)


def check(values: Mapping[str, Any], cell: Cell | None) -> None:
    if values["max_current"] <= values["threshold"]:
        raise ParameterError(
            "max_current",
            f"{values['max_current']:g} mA/cm² must be above the threshold {values['threshold']:g} mA/cm²",
        )
    if cell is not None and cell.ocv_V is not None and values["upper"] <= cell.ocv_V:
        raise ParameterError(
            "upper",
            f"{values['upper']:g} V is not above the cell's open-circuit voltage "
            f"{cell.ocv_V:.3f} V (allowed: OCV to 6 V)",
        )


def plan(values: Mapping[str, Any], cell: Cell) -> Plan:
    rest = yield Rest(duration=float(values["rest"]), sample_period=1.0, label="OCV")
    ocv = rest.last.get("E")
    if ocv is not None and values["upper"] <= ocv:
        raise ValueError(f"upper limit {values['upper']:g} V is not above the measured OCV {ocv:.3f} V")
    rate = mv_per_s_to_v_per_s(float(values["rate"]))
    sweep = yield VoltageSweep(
        start="ocv",
        stop=float(values["upper"]),
        rate=rate,
        sample_period=float(values["resolution"]) / float(values["rate"]),
        limits=Limits(current_above=current_density_to_a(float(values["max_current"]), cell.area_cm2)),
        label=f"LSV {values['rate']:g} mV/s",
    )
    data = sweep.data
    onset = lsv_onset(
        data["E"],
        data["I"],
        cell.area_cm2,
        rate,
        method=values["method"],
        j_threshold_mA_cm2=float(values["threshold"]),
    )
    out = onset.as_dict()
    out.update({"ocv_V": ocv, "sweep_end_reason": sweep.end_reason.value, "E_max_V": float(data["E"].max())})
    return out


def demands(values: Mapping[str, Any], cell: Cell) -> list[Demand]:
    return [
        Demand("voltage", values["upper"], "upper"),
        Demand(
            "current",
            current_density_to_a(values["max_current"], cell.area_cm2),
            "max_current",
            f"{values['max_current']:g} mA/cm² × {cell.area_cm2:g} cm²",
        ),
    ]


PROTOCOL = Protocol(
    name="lsv",
    version="1.0",
    title="Linear sweep -> oxidation stability limit",
    cell_type="li_ss",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"Rest", "VoltageSweep"}),
    description=__doc__ or "",
    preview=lambda values, cell: [VoltageSweep(start="ocv", stop=float(values["upper"]), rate=1e-3)],
    result_keys=("onset_V",),
    demands=demands,
)
