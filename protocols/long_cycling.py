"""Long-term CC-CV cycling of a Li|SE|cathode full cell at one C-rate.

As in the seed papers (NCM622‖Li, 200 cycles at 1 C, 3.0–4.3 V; LFP‖Li, 1000
cycles at 1 C; 480 cycles at −20 °C): optional chamber temperature (set and
waited for first), optional slow formation cycles, then ``cycles`` × (CC charge
at ``charge_rate`` to v_max, CV to ``cv_cutoff``, CC discharge at ``c_rate`` to
v_min). Per cycle: mAh/g, mAh/cm², CE, energy, mean voltages and gap,
retention vs ``reference_cycle`` (default: the first cycle after formation);
headline: capacity, fade per cycle, mean CE, the cycle at which retention
falls below 80 %, dQ/dV of selected cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.params import Param, ParameterError
from labctl.protocol import Cell, Plan
from protocols._fullcell import (
    COMMON_PARAMS,
    Cycling,
    FullCellValues,
    check_common,
    full_cell_protocol,
)
from protocols._steps import reach_temperature, reached

PARAMS = (
    # at most 20000: the per-cycle table then stays well inside the run file's 32 MB results record
    Param("cycles", 200, "", "cycles at c_rate", minimum=1, maximum=20000, kind="int"),
    Param("c_rate", 1.0, "C", "discharge rate", minimum=0.005, maximum=20.0),
    Param("charge_rate", None, "C", "charge rate", minimum=0.005, maximum=20.0, default_text="c_rate"),
    Param("formation_cycles", 0, "", "slow cycles first", minimum=0, maximum=100, kind="int"),
    Param("formation_rate", 0.1, "C", "rate of the formation cycles", minimum=0.005, maximum=20.0),
    Param(
        "reference_cycle",
        None,
        "",
        "retention reference cycle (from 1, formation included)",
        minimum=1,
        maximum=20100,
        kind="int",
        default_text="the first cycle after formation",
    ),
    Param("temperature", None, "°C", "chamber temperature", minimum=-80.0, maximum=150.0, default_text="no chamber"),
    Param(
        "settle_time",
        1800.0,
        "s",
        "time the cell must stay at temperature before cycling",
        minimum=0.0,
        maximum=86400.0,
    ),
    *COMMON_PARAMS,
)


@dataclass(frozen=True)
class LongCyclingValues(FullCellValues):
    cycles: int
    c_rate: float
    charge_rate: float | None
    formation_cycles: int
    formation_rate: float
    reference_cycle: int | None
    temperature: float | None
    settle_time: float


def reference(p: LongCyclingValues) -> int:
    return p.reference_cycle if p.reference_cycle is not None else p.formation_cycles + 1


def check(p: LongCyclingValues, cell: Cell | None) -> None:
    check_common(p, cell)
    total = p.formation_cycles + p.cycles
    if reference(p) > total:
        raise ParameterError("reference_cycle", f"{reference(p)} is beyond the {total} cycles")


def plan(p: LongCyclingValues, cell: Cell) -> Plan:
    run = Cycling.start(p, cell)
    warnings: list[str] = []
    if p.temperature is not None:
        settled = yield from reach_temperature(p.temperature, 1.0, p.settle_time, 4 * 3600.0 + p.settle_time)
        if not reached(settled):
            warnings.append(f"chamber not stable at {p.temperature:g} °C ({settled.end_reason.value}); cycled anyway")
    going = True
    for _ in range(p.formation_cycles):
        going = yield from run.cycle(p.formation_rate, p.formation_rate, "formation")
        if not going:
            break
    charge_rate = p.charge_rate if p.charge_rate is not None else p.c_rate
    for _ in range(p.cycles if going else 0):
        if not (yield from run.cycle(charge_rate, p.c_rate, "")):
            break
    return analyse(p, run, warnings)


def analyse(p: LongCyclingValues, run: Cycling, warnings: list[str]) -> dict[str, Any]:
    out = run.results(reference_cycle=reference(p))
    out["warnings"] = [*warnings, *out["warnings"]]
    out["temperature_C"] = p.temperature
    return out


def _max_rate(p: LongCyclingValues) -> float:
    return max(p.c_rate, p.charge_rate or 0.0, p.formation_rate if p.formation_cycles else 0.0)


PROTOCOL = full_cell_protocol(
    name="long_cycling",
    version="1.0",
    title="Full-cell long-term CC-CV cycling (retention, fade, CE, cycle at 80 %)",
    params=PARAMS,
    plan=plan,
    check=check,
    description=__doc__ or "",
    result_keys=("capacity_mAh_g", "retention_last", "cycle_below_80", "valid"),
    values_type=LongCyclingValues,
    fastest_rate=_max_rate,
    temperature=lambda p: p.temperature,
)
