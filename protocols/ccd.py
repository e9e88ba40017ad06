"""Critical current density on Li|SE|Li: plate/strip at rising current density until a short.

Each current density j (default from 0.1 mA/cm² in 0.1 steps) gets one plating
and one stripping half-cycle, time-limited (default 0.5 h) or capacity-limited
(``capacity`` > 0). After every half-cycle its voltage trace is classified
(``labctl.analysis.ccd``): a hard or soft short ends the test and defines the
CCD; a voltage rising into the cutoff is contact loss, which ends the test too
but is not a short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.analysis.ccd import HalfCycle, classify_half_cycle, critical_current_density
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, Plan, Protocol, largest_current_step
from labctl.safety import Demand
from labctl.steps import ConstantCurrent, Limits, Rest
from labctl.units import areal_capacity_to_c, current_density_to_a

PARAMS = (
    Param("start", 0.1, "mA/cm²", "first current density", minimum=0.001, maximum=50.0),
    Param("step", 0.1, "mA/cm²", "increase per step", minimum=0.001, maximum=50.0),
    Param("max", 5.0, "mA/cm²", "stop after this current density", minimum=0.001, maximum=100.0),
    Param("half_cycle", 0.5, "h", "duration of each half-cycle (time-limited mode)", minimum=0.001, maximum=100.0),
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


def check(values: Mapping[str, Any], cell: Cell | None) -> None:
    if values["max"] < values["start"]:
        raise ParameterError("max", f"{values['max']:g} mA/cm² is below start {values['start']:g} mA/cm²")


def current_densities(values: Mapping[str, Any]) -> list[float]:
    """start, start+step, ... up to max (rounded so 0.1+0.2 prints as 0.3)."""
    out = []
    k = 0
    while True:
        j = round(values["start"] + k * values["step"], 9)
        if j > values["max"] + 1e-9:
            return out
        out.append(j)
        k += 1


def plan(values: Mapping[str, Any], cell: Cell) -> Plan:
    cutoff = float(values["cutoff"])
    half_cycles: list[HalfCycle] = []
    failed = False
    for j in current_densities(values):
        current = current_density_to_a(j, cell.area_cm2)
        for sign, name in ((-1, "plate"), (1, "strip")):
            if values["capacity"] > 0:
                end = {
                    "max_charge": areal_capacity_to_c(values["capacity"], cell.area_cm2),
                    "max_time": 10 * values["capacity"] / j * 3600.0,
                }
            else:
                end = {"max_time": values["half_cycle"] * 3600.0}
            limits = Limits(**end, voltage_above=cutoff, voltage_below=-cutoff)
            result = yield ConstantCurrent(
                current=sign * current,
                limits=limits,
                sample_period=float(values["sample_period"]),
                label=f"{name} {j:g} mA/cm²",
            )
            data = result.data
            half = HalfCycle(j, data["t"] - result.t_start, data["E"], result.end_reason.value)
            half_cycles.append(half)
            kind = classify_half_cycle(half, len(half_cycles) - 1).kind
            if kind != "normal":
                failed = True
                break
            if values["rest"] > 0:
                yield Rest(duration=float(values["rest"]), label="rest")
        if failed:
            break
    result = critical_current_density(half_cycles)
    out = result.as_dict()
    out["failure"] = result.failure_kind
    out["half_cycles"] = len(half_cycles)
    out["mode"] = "capacity" if values["capacity"] > 0 else "time"
    return out


def demands(values: Mapping[str, Any], cell: Cell) -> list[Demand]:
    densities = current_densities(values)
    j_max = max(densities) if densities else values["start"]
    return [
        Demand(
            "current", current_density_to_a(j_max, cell.area_cm2), "max", f"{j_max:g} mA/cm² × {cell.area_cm2:g} cm²"
        ),
        Demand("voltage", values["cutoff"], "cutoff"),
        Demand("voltage", -values["cutoff"], "cutoff"),
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
    preview=lambda values, cell: [largest_current_step(max(current_densities(values) or [values["start"]]), cell)],
    result_keys=("ccd_mA_cm2", "last_passed_mA_cm2", "failure"),
    demands=demands,
)
