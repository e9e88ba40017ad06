"""Oxidation stability window by linear sweep voltammetry on Li|SE|SS.

Sequence: open-circuit rest (records the OCV), then a sweep from OCV to the
upper limit (default 5.0 V, up to 6 V) at 1 mV/s (0.01–10 mV/s), stopped early
if the current density runs away. The onset is found by the chosen method
(current-density threshold, default 0.05 mA/cm²; tangent; dI/dV) and the other
methods' values are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.analysis.lsv import lsv_onset
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import Limits, StepResult, VoltageSweep
from labctl.units import current_density_to_a, mv_per_s_to_v_per_s
from protocols._steps import rest

# The seed papers' sweep: OCV → 5.0 V at 1 mV/s, onset at 0.05 mA/cm².
UPPER_V = 5.0
SCAN_RATE_MV_S = 1.0
ONSET_THRESHOLD_MA_CM2 = 0.05

PARAMS = (
    Param("upper", UPPER_V, "V", "upper potential limit (vs Li/Li+)", minimum=1.0, maximum=6.0),
    Param("rate", SCAN_RATE_MV_S, "mV/s", "scan rate", minimum=0.01, maximum=10.0),
    Param("rest", 60.0, "s", "open-circuit rest before the sweep", minimum=1.0, maximum=86400.0),
    Param(
        "threshold",
        ONSET_THRESHOLD_MA_CM2,
        "mA/cm²",
        "onset current density (threshold method)",
        minimum=0.001,
        maximum=1.0,
    ),
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


@dataclass(frozen=True)
class LsvValues(GeometryValues):
    upper: float
    rate: float
    rest: float
    threshold: float
    method: str
    resolution: float
    max_current: float


def check(p: LsvValues, cell: Cell | None) -> None:
    if p.max_current <= p.threshold:
        raise ParameterError(
            "max_current",
            f"{p.max_current:g} mA/cm² must be above the threshold {p.threshold:g} mA/cm²",
        )
    if cell is not None and cell.ocv_V is not None and p.upper <= cell.ocv_V:
        raise ParameterError(
            "upper",
            f"{p.upper:g} V is not above the cell's open-circuit voltage {cell.ocv_V:.3f} V (allowed: OCV to 6 V)",
        )


def plan(p: LsvValues, cell: Cell) -> Plan:
    at_rest = yield from rest(p.rest, label="OCV")
    ocv = at_rest.last.get("E") if at_rest is not None else None
    if ocv is not None and p.upper <= ocv:
        raise ValueError(f"upper limit {p.upper:g} V is not above the measured OCV {ocv:.3f} V")
    sweep = yield sweep_step(p, cell)
    return analyse_lsv(p, cell, ocv, sweep)


def sweep_step(p: LsvValues, cell: Cell) -> VoltageSweep:
    """OCV to the upper limit, one sample per ``resolution`` mV, stopped if the current runs away."""
    return VoltageSweep(
        start="ocv",
        stop=p.upper,
        rate=mv_per_s_to_v_per_s(p.rate),
        sample_period=p.resolution / p.rate,
        limits=Limits(current_above=current_density_to_a(p.max_current, cell.area_cm2)),
        label=f"LSV {p.rate:g} mV/s",
    )


def analyse_lsv(p: LsvValues, cell: Cell, ocv: float | None, sweep: StepResult) -> dict[str, Any]:
    """The onset by the chosen method (the others beside it) from the recorded sweep."""
    data = sweep.data
    onset = lsv_onset(
        data["E"],
        data["I"],
        cell.area_cm2,
        mv_per_s_to_v_per_s(p.rate),
        method=p.method,
        j_threshold_mA_cm2=p.threshold,
    )
    out = onset.as_dict()
    out.update({"ocv_V": ocv, "sweep_end_reason": sweep.end_reason.value, "E_max_V": float(data["E"].max())})
    return out


def demands(p: LsvValues, cell: Cell) -> list[Demand]:
    return [
        Demand("voltage", p.upper, "upper"),
        Demand(
            "current",
            current_density_to_a(p.max_current, cell.area_cm2),
            "max_current",
            f"{p.max_current:g} mA/cm² × {cell.area_cm2:g} cm²",
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
    preview=lambda p, cell: [VoltageSweep(start="ocv", stop=p.upper, rate=1e-3)],
    result_keys=("onset_V",),
    demands=demands,
    values_type=LsvValues,
)
