"""Critical current density on Li|SE|Li: plate/strip at rising current density until a short.

Each current density j (default from 0.1 mA/cm² in 0.1 steps) gets one plating
and one stripping half-cycle, time-limited (default 0.5 h) or capacity-limited
(``capacity`` > 0). After every half-cycle its voltage trace is judged
(``labctl.analysis.ccd.CCDDetector``) against what the earlier half-cycles
predict at its current density (ohmic + asinh fit) and against its own running
maximum: a half-cycle that starts shorted (the short formed at the end of the
previous one), a sudden lasting fall, a collapse or a flickering fall is a
short; it ends the test and the CCD is the current density of the half-cycle
the short formed in, with the evidence recorded. A voltage rising into the
cutoff is contact loss, which ends the test too but is not a short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labctl.analysis.ccd import CCDDetector, CCDThresholds, HalfCycle, critical_current_density
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol, largest_current_step
from labctl.safety import Demand
from labctl.steps import Limits, StepResult
from labctl.units import areal_capacity_to_c, current_density_to_a
from protocols._steps import OnDemand, constant_current, rest

# The seed papers' ladder: from 0.1 mA/cm² in 0.1 mA/cm² steps, 0.5 h per half-cycle.
START_MA_CM2 = 0.1
STEP_MA_CM2 = 0.1
HALF_CYCLE_H = 0.5

PARAMS = (
    Param("start", START_MA_CM2, "mA/cm²", "first current density", minimum=0.001, maximum=50.0),
    Param("step", STEP_MA_CM2, "mA/cm²", "increase per step", minimum=0.001, maximum=50.0),
    Param("max", 5.0, "mA/cm²", "stop after this current density", minimum=0.001, maximum=100.0),
    Param(
        "half_cycle", HALF_CYCLE_H, "h", "duration of each half-cycle (time-limited mode)", minimum=0.001, maximum=100.0
    ),
    Param(
        "capacity",
        0.0,
        "mAh/cm²",
        "charge per half-cycle (capacity-limited mode; 0 = time-limited)",
        minimum=0.0,
        maximum=100.0,
    ),
    Param("cutoff", 2.0, "V", "|V| cutoff (contact loss / safety)", minimum=0.05, maximum=10.0),
    Param("rest", 0.0, "s", "open-circuit rest between half-cycles", minimum=0.0, maximum=86400.0),
    Param("sample_period", 1.0, "s", "sampling interval", minimum=0.01, maximum=600.0),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class CcdValues(GeometryValues):
    start: float
    step: float
    max: float
    half_cycle: float
    capacity: float
    cutoff: float
    rest: float
    sample_period: float


def check(p: CcdValues, cell: Cell | None) -> None:
    if p.max < p.start:
        raise ParameterError("max", f"{p.max:g} mA/cm² is below start {p.start:g} mA/cm²")
    # The shortest half-cycle must still hold enough samples to classify its trace.
    shortest = shortest_half_cycle_s(p)
    min_samples = CCDThresholds().min_samples
    if p.sample_period * min_samples > shortest:
        raise ParameterError(
            "sample_period",
            f"{p.sample_period:g} s leaves fewer than {min_samples} samples in the shortest half-cycle "
            f"({shortest:g} s) (allowed: at most {shortest / min_samples:g} s)",
        )


def current_densities(p: CcdValues) -> list[float]:
    """start, start+step, ... up to max (rounded so 0.1+0.2 prints as 0.3)."""
    out = []
    k = 0
    while True:
        j = round(p.start + k * p.step, 9)
        if j > p.max + 1e-9:
            return out
        out.append(j)
        k += 1


def shortest_half_cycle_s(p: CcdValues) -> float:
    """Nominal duration of the shortest half-cycle (the last one, in capacity mode)."""
    if p.capacity > 0:
        return p.capacity / max(current_densities(p) or [p.start]) * 3600.0
    return p.half_cycle * 3600.0


def half_cycle_limits(p: CcdValues, j: float, cell: Cell) -> Limits:
    """Time- or capacity-limited (with a 10× time budget), always stopped at ±cutoff."""
    if p.capacity > 0:
        end = {"max_charge": areal_capacity_to_c(p.capacity, cell.area_cm2), "max_time": 10 * p.capacity / j * 3600.0}
    else:
        end = {"max_time": p.half_cycle * 3600.0}
    return Limits(**end, voltage_above=p.cutoff, voltage_below=-p.cutoff)


def plan(p: CcdValues, cell: Cell) -> Plan:
    half_cycles: list[OnDemand] = []
    detector = CCDDetector()  # judges each half-cycle against the ones before it, as they run
    for j in current_densities(p):
        for sign, name in ((-1, "plate"), (1, "strip")):
            current = sign * current_density_to_a(j, cell.area_cm2)
            step = yield from constant_current(
                current, half_cycle_limits(p, j, cell), p.sample_period, f"{name} {j:g} mA/cm²"
            )
            half_cycles.append(half_cycle_record(j, step))
            if detector.add(half_cycles[-1]).kind != "normal":
                return analyse_ccd(p, half_cycles)
            yield from rest(p.rest)
    return analyse_ccd(p, half_cycles)


def half_cycle_record(j: float, step: StepResult) -> OnDemand:
    """A half-cycle for the CCD analysis that reads its trace from the step's
    data when classified: the plan keeps every half-cycle, never their samples."""
    return OnDemand(
        current_density_mA_cm2=lambda: j,
        t=lambda: step.data["t"] - step.t_start,
        V=lambda: step.data["E"],
        end_reason=lambda: step.end_reason.value,
    )


def analyse_ccd(p: CcdValues, half_cycles: Sequence[HalfCycle | Mapping[str, Any]]) -> dict[str, Any]:
    """The CCD (or why there is none) from the half-cycles run, in order."""
    result = critical_current_density(half_cycles)
    out = result.as_dict()
    out["failure"] = result.failure_kind
    out["half_cycles"] = len(half_cycles)
    out["mode"] = "capacity" if p.capacity > 0 else "time"
    ended = [s for s in result.steps if s.kind != "normal"]
    out["stopped"] = (
        f"half-cycle {ended[0].index} {ended[0].kind}: {ended[0].reason}" if ended else "all current densities passed"
    )
    out["parameters"] = {
        "start": p.start,
        "step": p.step,
        "max": p.max,
        "capacity": p.capacity,
        "half_cycle_h": p.half_cycle,
        "sample_period_s": p.sample_period,
    }
    return out


def demands(p: CcdValues, cell: Cell) -> list[Demand]:
    densities = current_densities(p)
    j_max = max(densities) if densities else p.start
    return [
        Demand(
            "current", current_density_to_a(j_max, cell.area_cm2), "max", f"{j_max:g} mA/cm² × {cell.area_cm2:g} cm²"
        ),
        Demand("voltage", p.cutoff, "cutoff"),
        Demand("voltage", -p.cutoff, "cutoff"),
    ]


PROTOCOL = Protocol(
    name="ccd",
    version="1.0",
    title="Rising current density until short -> critical current density",
    cell_type="li_li",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"ConstantCurrent", "Rest"}),
    description=__doc__ or "",
    preview=lambda p, cell: [largest_current_step(max(current_densities(p) or [p.start]), cell)],
    result_keys=("ccd_mA_cm2", "last_passed_mA_cm2", "failure"),
    demands=demands,
    values_type=CcdValues,
)
