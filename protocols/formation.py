"""Formation of a Li|SE|cathode full cell: a few slow CC-CV cycles.

Before a full cell is cycled at 1 C the papers run it a few times slowly
(e.g. 3 cycles at 0.1 C) so the interfaces form; the first cycle's CE is the
formation loss. Each cycle: CC charge at ``c_rate`` to v_max, CV at v_max to
``cv_cutoff`` (C/20), CC discharge at ``c_rate`` to v_min. Results per cycle:
mAh/g and mAh/cm², CE, energy, mean voltages and their gap, retention vs
``reference_cycle``, dQ/dV of the selected cycles; headline: first-cycle CE
and the specific discharge capacity.
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

PARAMS = (
    Param("cycles", 3, "", "formation cycles", minimum=1, maximum=100, kind="int"),
    Param("c_rate", 0.1, "C", "charge and discharge rate", minimum=0.005, maximum=20.0),
    Param("reference_cycle", 1, "", "retention reference cycle (from 1)", minimum=1, maximum=100, kind="int"),
    *COMMON_PARAMS,
)


@dataclass(frozen=True)
class FormationValues(FullCellValues):
    cycles: int
    c_rate: float
    reference_cycle: int


def check(p: FormationValues, cell: Cell | None) -> None:
    check_common(p, cell)
    if p.reference_cycle > p.cycles:
        raise ParameterError("reference_cycle", f"{p.reference_cycle} is beyond the {p.cycles} cycles")


def plan(p: FormationValues, cell: Cell) -> Plan:
    run = Cycling.start(p, cell)
    for _ in range(p.cycles):
        if not (yield from run.cycle(p.c_rate, p.c_rate, "formation")):
            break
    return analyse(p, run)


def analyse(p: FormationValues, run: Cycling) -> dict[str, Any]:
    out = run.results(reference_cycle=p.reference_cycle)
    ce = out["table"]["coulombic_efficiency"]
    out["first_cycle_ce"] = ce[0] if ce else None
    out["conventions"]["first_cycle_ce"] = "discharge / charge capacity of cycle 1 (the formation loss is 1 - it)"
    return out


PROTOCOL = full_cell_protocol(
    name="formation",
    version="1.0",
    title="Full-cell formation (slow CC-CV cycles)",
    params=PARAMS,
    plan=plan,
    check=check,
    description=__doc__ or "",
    result_keys=("capacity_mAh_g", "first_cycle_ce", "valid"),
    values_type=FormationValues,
    fastest_rate=lambda p: p.c_rate,
)
