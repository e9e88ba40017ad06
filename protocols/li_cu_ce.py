"""Average Coulombic efficiency of Li plating on Cu (Adams et al., Adv. Energy
Mater. 8 (2018) 1702097; Aurbach's reservoir method).

Sequence on Li|SE|Cu (working electrode Cu; negative current plates Li on Cu):
1. precondition: plate Q_t, strip to the cutoff (1.0 V) — forms the SEI on Cu;
2. plate the reservoir Q_t;
3. n × (strip Q_c, plate Q_c);
4. strip everything left to the cutoff: Q_s.
CE_avg = (Q_s + n·Q_c)/(Q_t + n·Q_c). The result is invalid when a cycling
strip hit the cutoff before passing Q_c (the reservoir ran out), or when the
cell shorted (a sudden lasting fall of |V|, a step far below the earlier ones,
or a strip to the cutoff that never reaches it: the current then flows through
the filament, not by stripping Li; the sequence stops there). The nucleation
overpotential (spike minus the growth plateau just after it) is read from the
first plating on bare Cu.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.analysis.coulombic import (
    CCStep,
    NucleationResult,
    average_coulombic_efficiency,
    li_cu_short_evidence,
    nucleation_overpotential,
)
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol, largest_current_step
from labctl.safety import Demand
from labctl.steps import EndReason, StepResult
from labctl.units import areal_capacity_to_c, c_to_areal_capacity, current_density_to_a
from protocols._steps import SubPlan, plate_charge, rest, strip_charge

# Adams et al. (2018), methods: Q_T = 5 mAh/cm², Q_C = 0.5 mAh/cm², n = 10 at 0.5 mA/cm²,
# stripping to 1.0 V vs Li/Li+.
RESERVOIR_MAH_CM2 = 5.0
CYCLING_MAH_CM2 = 0.5
CYCLES = 10
CURRENT_DENSITY_MA_CM2 = 0.5
STRIP_CUTOFF_V = 1.0

PARAMS = (
    Param("q_t", RESERVOIR_MAH_CM2, "mAh/cm²", "reservoir charge Q_t", minimum=0.01, maximum=50.0),
    Param("q_c", CYCLING_MAH_CM2, "mAh/cm²", "cycling charge Q_c", minimum=0.001, maximum=50.0),
    Param("n", CYCLES, "", "number of cycles", minimum=1, maximum=1000, kind="int"),
    Param("j", CURRENT_DENSITY_MA_CM2, "mA/cm²", "current density", minimum=0.001, maximum=50.0),
    Param("cutoff", STRIP_CUTOFF_V, "V", "stripping cutoff vs Li/Li+", minimum=0.1, maximum=3.0),
    Param("plating_limit", -1.0, "V", "safety limit while plating", minimum=-5.0, maximum=-0.01),
    Param("precondition", True, "", "precondition the Cu (plate Q_t, strip to cutoff)", kind="bool"),
    Param("rest", 0.0, "s", "open-circuit rest between steps", minimum=0.0, maximum=86400.0),
    Param("sample_period", 10.0, "s", "sampling interval", minimum=0.01, maximum=600.0),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class LiCuValues(GeometryValues):
    q_t: float
    q_c: float
    n: int
    j: float
    cutoff: float
    plating_limit: float
    precondition: bool
    rest: float
    sample_period: float


def check(p: LiCuValues, cell: Cell | None) -> None:
    if p.q_c > p.q_t:
        raise ParameterError("q_c", f"Q_c = {p.q_c:g} mAh/cm² must not exceed Q_t = {p.q_t:g} mAh/cm²")


def plan(p: LiCuValues, cell: Cell) -> Plan:
    area = cell.area_cm2
    current = current_density_to_a(p.j, area)
    q_t = areal_capacity_to_c(p.q_t, area)
    q_c = areal_capacity_to_c(p.q_c, area)

    def plate(charge: float, label: str) -> SubPlan:
        return plate_charge(current, charge, p.plating_limit, p.sample_period, label)

    def strip(charge: float | None, label: str) -> SubPlan:
        return strip_charge(current, charge, p.cutoff, p.sample_period, label, budget_C=q_t * 3)

    platings: list[StepResult] = []
    steps: list[tuple[StepResult, bool, bool]] = []  # (step, onto bare Cu, strip to the cutoff)
    if p.precondition:
        platings.append((yield from plate(q_t, "precondition plate Q_t")))
        steps.append((platings[-1], True, False))
        if platings[-1].end_reason != EndReason.CHARGE:
            return _aborted_sequence(platings[-1], area)
        yield from rest(p.rest)
        pre_strip = yield from strip(None, "precondition strip to cutoff")
        steps.append((pre_strip, False, True))
        if pre_strip.end_reason not in (EndReason.VOLTAGE_ABOVE,):
            return _shorted_sequence(steps, platings[0], area)
        yield from rest(p.rest)
    platings.append((yield from plate(q_t, "plate reservoir Q_t")))
    steps.append((platings[-1], True, False))
    if platings[-1].end_reason != EndReason.CHARGE:
        return _aborted_sequence(platings[-1], area)
    yield from rest(p.rest)
    strips: list[StepResult] = []
    for k in range(p.n):
        strips.append((yield from strip(q_c, f"cycle {k + 1} strip Q_c")))
        steps.append((strips[-1], False, False))
        yield from rest(p.rest)
        platings.append((yield from plate(q_c, f"cycle {k + 1} plate Q_c")))
        steps.append((platings[-1], False, False))
        yield from rest(p.rest)
    final = yield from strip(None, "final strip to cutoff")
    steps.append((final, False, True))
    out = analyse_coulombic_efficiency(p, cell, platings, strips, final)
    return _with_short_check(out, steps)


def _cc_steps(steps: list[tuple[StepResult, bool, bool]]) -> list[CCStep]:
    out = []
    for r, bare, to_cutoff in steps:
        data = r.data
        if data is None or len(data) == 0:
            continue
        out.append(CCStep(r.step.label, data["t"] - r.t_start, data["E"], r.end_reason.value, bare, to_cutoff))
    return out


def _with_short_check(out: dict[str, Any], steps: list[tuple[StepResult, bool, bool]]) -> dict[str, Any]:
    """Invalid, with the evidence, when the cell shorted anywhere in the sequence."""
    evidence = li_cu_short_evidence(_cc_steps(steps))
    out["short_detected"] = bool(evidence)
    if evidence:
        out["valid"] = False
        first = steps[0][0].step.label if steps else ""
        if any(f"'{first}'" in e for e in evidence):  # shorted while nucleating: its trace is not a clean dip
            out.update(_nucleation_mv(None))
            out.setdefault("warnings", []).append(
                f"the cell shorted during '{first}': no nucleation overpotential from its trace"
            )
        out["invalid_reasons"] = [*out.get("invalid_reasons", []), *(f"cell shorted: {e}" for e in evidence)]
    out["reason"] = "; ".join(out.get("invalid_reasons", []))
    return out


def _shorted_sequence(steps: list[tuple[StepResult, bool, bool]], first: StepResult, area: float) -> dict[str, Any]:
    """The precondition strip never reached the cutoff: no CE can follow; say why."""
    out: dict[str, Any] = {
        "ce_avg": None,
        "valid": False,
        "invalid_reasons": [],
        "warnings": [],
        **_nucleation_mv(_nucleation(first)),
    }
    out = _with_short_check(out, steps)
    if not out["short_detected"]:  # a strip that passes on and on: say so even without other evidence
        out["invalid_reasons"].append("the precondition strip did not reach the voltage cutoff")
        out["reason"] = "; ".join(out["invalid_reasons"])
    return out


def analyse_coulombic_efficiency(
    p: LiCuValues, cell: Cell, platings: list[StepResult], strips: list[StepResult], final: StepResult
) -> dict[str, Any]:
    """CE_avg from the reservoir (the last Q_t plating), the cycling strips and the final strip.

    ``platings`` are all platings in order (the first on bare Cu gives the nucleation
    overpotential); the result is invalid when a plating ended before its charge.
    """
    area = cell.area_cm2
    reservoir = platings[1] if p.precondition else platings[0]
    nucleation = _nucleation(platings[0])
    result = average_coulombic_efficiency(
        abs(reservoir.charge),
        areal_capacity_to_c(p.q_c, area),
        abs(final.charge),
        [abs(s.charge) for s in strips],
        [s.end_reason.value for s in strips],
        final_strip_end_reason=final.end_reason.value,
        nucleation=nucleation,
    )
    out = result.as_dict()
    short_platings = [plating.step.label for plating in platings if plating.end_reason != EndReason.CHARGE]
    if short_platings:
        out["valid"] = False
        out["invalid_reasons"] = [
            *out["invalid_reasons"],
            f"plating ended before its charge (plating_limit {p.plating_limit:g} V): {', '.join(short_platings)}",
        ]
    warnings = []
    if nucleation is None or not nucleation.has_dip:
        warnings.append(
            "no nucleation spike distinguishable from the growth transient in the first plating on bare Cu "
            "(or too few samples): nucleation overpotential not reported"
        )
    out.update(
        {
            "ce_avg": result.ce_avg if out["valid"] else None,
            "ce_avg_unchecked": result.ce_avg,
            "valid": out["valid"],
            "warnings": warnings,
            "Q_s_mAh_cm2": c_to_areal_capacity(abs(final.charge), area),
            "Q_t_mAh_cm2": c_to_areal_capacity(abs(reservoir.charge), area),
            "Q_c_mAh_cm2": p.q_c,
            **_nucleation_mv(nucleation),
        }
    )
    return out


def _nucleation(plating: StepResult) -> NucleationResult | None:
    """Nucleation on bare Cu, when the first plating recorded enough of the trace."""
    data = plating.data
    if data is None or len(data) < 10:
        return None
    try:
        return nucleation_overpotential(data["t"] - plating.t_start, data["E"])
    except ValueError:  # too little of the early trace to tell a dip from the plateau
        return None


def _nucleation_mv(nucleation: NucleationResult | None) -> dict[str, float | None]:
    if nucleation is None or not nucleation.has_dip:
        return {
            "nucleation_overpotential_mV": None,
            "nucleation_dip_mV": None,
            "growth_plateau_mV": None,
            "nucleation_magnitude_mV": None,
        }
    return {
        "nucleation_overpotential_mV": nucleation.overpotential_V * 1e3,
        "nucleation_dip_mV": nucleation.dip_V * 1e3,
        "growth_plateau_mV": nucleation.plateau_V * 1e3,
        "nucleation_magnitude_mV": nucleation.magnitude_V * 1e3,
    }


def _aborted_sequence(plating: StepResult, area: float) -> dict[str, Any]:
    """A reservoir that could not be plated: no CE, and the reason why."""
    reason = (
        f"'{plating.step.label}' ended by {plating.end_reason.value} after "
        f"{c_to_areal_capacity(abs(plating.charge), area):.4g} mAh/cm² "
        f"(E = {plating.last.get('E', float('nan')):.3f} V): the reservoir could not be plated"
    )
    return {
        "ce_avg": None,
        "valid": False,
        "reason": reason,
        "warnings": [],
        "invalid_reasons": [
            f"'{plating.step.label}' ended by {plating.end_reason.value} after "
            f"{c_to_areal_capacity(abs(plating.charge), area):.4g} mAh/cm² "
            f"(E = {plating.last.get('E', float('nan')):.3f} V): the reservoir could not be plated"
        ],
        **_nucleation_mv(_nucleation(plating)),
    }


def demands(p: LiCuValues, cell: Cell) -> list[Demand]:
    return [
        Demand("current", current_density_to_a(p.j, cell.area_cm2), "j", f"{p.j:g} mA/cm² × {cell.area_cm2:g} cm²"),
        Demand("voltage", p.cutoff, "cutoff"),
        Demand("voltage", p.plating_limit, "plating_limit"),
    ]


PROTOCOL = Protocol(
    name="li_cu_ce",
    version="1.0",
    title="Li||Cu average Coulombic efficiency (Adams/Aurbach reservoir method)",
    cell_type="li_cu",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"ConstantCurrent", "Rest"}),
    description=__doc__ or "",
    preview=lambda p, cell: [largest_current_step(p.j, cell)],
    result_keys=("ce_avg", "Q_s_mAh_cm2", "nucleation_overpotential_mV", "valid"),
    demands=demands,
    values_type=LiCuValues,
)
