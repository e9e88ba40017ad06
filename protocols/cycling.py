"""Galvanostatic cycling: symmetric Li|SE|Li or a full cell Li|SE|cathode.

Symmetric: for each current density in ``rates`` (mA/cm²), ``cycles``
plate/strip pairs of ``half_cycle`` hours each, stopped at ±``cutoff``.
Full cell: for each rate, ``cycles`` × (charge at +j to ``v_max``, rest,
discharge at −j to ``v_min``, rest). Results per cycle: overpotential and
hysteresis (symmetric) or capacity, CE and retention (full cell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.analysis.cycling import full_cell_cycling_summary, symmetric_cycling_summary
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol, largest_current_step
from labctl.safety import Demand
from labctl.steps import EndReason, Limits, StepResult
from labctl.units import current_density_to_a
from protocols._steps import constant_current, rest, step_trace

#: A symmetric cell that reaches its voltage cutoff stops cycling.
CUTOFF_REASONS = (EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW)

PARAMS = (
    Param(
        "mode",
        "symmetric",
        "",
        "symmetric Li|Li or full cell",
        kind="choice",
        choices=("symmetric", "full"),
    ),
    Param(
        "rates",
        (0.1,),
        "mA/cm²",
        "current densities, one block of cycles each",
        minimum=0.001,
        maximum=50.0,
        kind="floats",
    ),
    Param("cycles", 10, "", "cycles per rate", minimum=1, maximum=10000, kind="int"),
    Param("half_cycle", 1.0, "h", "symmetric: duration of each half-cycle", minimum=0.001, maximum=100.0),
    Param("cutoff", 1.0, "V", "symmetric: |V| cutoff", minimum=0.01, maximum=10.0),
    Param("v_min", 2.5, "V", "full cell: discharge cutoff", minimum=0.5, maximum=5.0),
    Param("v_max", 4.2, "V", "full cell: charge cutoff", minimum=1.0, maximum=5.5),
    Param("max_half_time", 20.0, "h", "full cell: safety time limit per half-cycle", minimum=0.01, maximum=1000.0),
    Param("rest", 0.0, "s", "open-circuit rest after each half-cycle", minimum=0.0, maximum=86400.0),
    Param("sample_period", 10.0, "s", "sampling interval", minimum=0.01, maximum=600.0),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class CyclingValues(GeometryValues):
    mode: str
    rates: tuple[float, ...]
    cycles: int
    half_cycle: float
    cutoff: float
    v_min: float
    v_max: float
    max_half_time: float
    rest: float
    sample_period: float


def check(p: CyclingValues, cell: Cell | None) -> None:
    if p.mode == "full" and p.v_min >= p.v_max:
        raise ParameterError("v_min", f"{p.v_min:g} V must be below v_max {p.v_max:g} V")


def half_cycles(p: CyclingValues) -> tuple[tuple[int, Limits, str], ...]:
    """(current sign, end limits, name) of one cycle: plate/strip, or charge/discharge."""
    if p.mode == "symmetric":
        duration = p.half_cycle * 3600.0
        return (
            (-1, Limits(max_time=duration, voltage_below=-p.cutoff), "plate"),
            (1, Limits(max_time=duration, voltage_above=p.cutoff), "strip"),
        )
    budget = p.max_half_time * 3600.0
    return (
        (1, Limits(voltage_above=p.v_max, max_time=budget), "charge"),
        (-1, Limits(voltage_below=p.v_min, max_time=budget), "discharge"),
    )


def plan(p: CyclingValues, cell: Cell) -> Plan:
    steps: list[StepResult] = []
    for j in p.rates:
        current = current_density_to_a(j, cell.area_cm2)
        for k in range(p.cycles):
            for sign, limits, name in half_cycles(p):
                label = f"cycle {k + 1} {name} {j:g} mA/cm²"
                steps.append((yield from constant_current(sign * current, limits, p.sample_period, label)))
                yield from rest(p.rest)
                if p.mode == "symmetric" and steps[-1].end_reason in CUTOFF_REASONS:
                    return analyse_cycling(p, cell, steps, f"cutoff reached in cycle {k + 1} at {j:g} mA/cm²")
    return analyse_cycling(p, cell, steps, "")


def analyse_cycling(p: CyclingValues, cell: Cell, steps: list[StepResult], stopped: str) -> dict[str, Any]:
    """Per-cycle overpotential and hysteresis (symmetric) or capacity, CE and retention (full cell)."""
    # A half-cycle cut at its first reading (contact loss) has nothing to summarise.
    segments = [step_trace(r) for r in steps if r.n_samples >= 2]
    if not segments:
        return {"mode": p.mode, "cycles_completed": 0, "stopped": stopped or "no data"}
    if p.mode == "symmetric":
        summary = symmetric_cycling_summary(segments)
        out: dict[str, Any] = {
            "mode": "symmetric",
            "cycles_completed": len(summary.hysteresis_V),
            "mean_overpotential_V": [h.mean_abs_V for h in summary.half_cycles],
            "hysteresis_V": list(summary.hysteresis_V),
            "conventions": summary.conventions,
        }
    else:
        full = full_cell_cycling_summary(segments, cell.area_cm2)
        out = {
            "mode": "full",
            "cycles_completed": len(full.cycles),
            "discharge_capacity_mAh_cm2": [c.discharge_capacity_mAh_cm2 for c in full.cycles],
            "coulombic_efficiency": [c.coulombic_efficiency for c in full.cycles],
            "retention": [c.retention for c in full.cycles],
            "cycles": full.as_dict()["cycles"],
            "conventions": full.conventions,
        }
    out["stopped"] = stopped or "all cycles done"
    return out


def demands(p: CyclingValues, cell: Cell) -> list[Demand]:
    j_max = max(p.rates)
    out = [
        Demand(
            "current", current_density_to_a(j_max, cell.area_cm2), "rates", f"{j_max:g} mA/cm² × {cell.area_cm2:g} cm²"
        )
    ]
    if p.mode == "symmetric":
        out += [Demand("voltage", p.cutoff, "cutoff"), Demand("voltage", -p.cutoff, "cutoff")]
    else:
        out += [Demand("voltage", p.v_max, "v_max"), Demand("voltage", p.v_min, "v_min")]
    return out


PROTOCOL = Protocol(
    name="cycling",
    version="1.0",
    title="Galvanostatic cycling (symmetric Li|Li or full cell)",
    cell_type="li_li",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"ConstantCurrent", "Rest"}),
    description=__doc__ or "",
    preview=lambda p, cell: [largest_current_step(max(p.rates), cell)],
    result_keys=("cycles_completed",),
    cell_type_from=lambda p: "li_li" if p.mode == "symmetric" else "full",
    demands=demands,
    values_type=CyclingValues,
)
