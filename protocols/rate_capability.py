"""Rate capability of a Li|SE|cathode full cell: blocks of cycles at rising C-rates.

As in the seed papers (LCO‖Li and LFP‖Li, rate steps up to 4 C): for each
C-rate in ``rates``, ``cycles`` × (CC charge to v_max, CV to ``cv_cutoff``, CC
discharge to v_min), then ``return_cycles`` back at the first rate to show the
capacity comes back. The charge uses ``charge_rate`` when given (papers often
charge slowly and discharge at the rate under test), else the block's rate.
Per cycle as in every C-rate protocol; per block: the mean specific discharge
capacity and its ratio to the first block's; headline: the recovery (return
block / first block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.params import Param
from labctl.protocol import Cell, Plan
from protocols._fullcell import (
    COMMON_PARAMS,
    Cycling,
    FullCellValues,
    check_common,
    full_cell_protocol,
)

PARAMS = (
    Param(
        "rates",
        (0.1, 0.2, 0.5, 1.0, 2.0, 4.0),
        "C",
        "C-rates, one block of cycles each",
        minimum=0.005,
        maximum=20.0,
        kind="floats",
    ),
    Param("cycles", 5, "", "cycles per rate", minimum=1, maximum=1000, kind="int"),
    Param("return_cycles", 5, "", "cycles back at the first rate (0 = none)", minimum=0, maximum=1000, kind="int"),
    Param("charge_rate", None, "C", "charge rate", minimum=0.005, maximum=20.0, default_text="the block's rate"),
    *COMMON_PARAMS,
)


@dataclass(frozen=True)
class RateValues(FullCellValues):
    rates: tuple[float, ...]
    cycles: int
    return_cycles: int
    charge_rate: float | None


def schedule(p: RateValues) -> list[tuple[int, float]]:
    """(block, C-rate) per block; the return block repeats the first rate."""
    blocks = [(k, c) for k, c in enumerate(p.rates)]
    if p.return_cycles:
        blocks.append((len(p.rates), p.rates[0]))
    return blocks


def plan(p: RateValues, cell: Cell) -> Plan:
    run = Cycling.start(p, cell)
    block_of: list[int] = []
    going = True
    for block, rate in schedule(p):
        n = p.return_cycles if block == len(p.rates) else p.cycles
        for _ in range(n):
            charge = p.charge_rate if p.charge_rate is not None else rate
            going = yield from run.cycle(charge, rate, f"{rate:g} C" + (" (return)" if block == len(p.rates) else ""))
            if not going:
                break
            block_of.append(block)
        if not going:
            break
    return analyse(p, run, block_of)


def analyse(p: RateValues, run: Cycling, block_of: list[int]) -> dict[str, Any]:
    out = run.results(reference_cycle=1)
    table = out["table"]
    q = np.array([np.nan if v is None else v for v in table["discharge_mAh_g"]], dtype=float)
    done = np.array(table["complete"], dtype=bool)
    blocks = np.array(block_of[: len(q)], dtype=int)
    rows = []
    for block, rate in schedule(p):
        sel = (blocks == block) & done
        mean = float(np.mean(q[sel])) if sel.any() else float("nan")
        rows.append({"block": block + 1, "c_rate": rate, "cycles": int(sel.sum()), "discharge_mAh_g": mean})
    first = rows[0]["discharge_mAh_g"] if rows else float("nan")
    for row in rows:
        row["relative_to_first"] = row["discharge_mAh_g"] / first if first > 0 else float("nan")
    out["rates"] = {
        "block": [r["block"] for r in rows],
        "c_rate": [r["c_rate"] for r in rows],
        "cycles": [r["cycles"] for r in rows],
        "discharge_mAh_g": [r["discharge_mAh_g"] for r in rows],
        "relative_to_first": [r["relative_to_first"] for r in rows],
    }
    out["recovery"] = rows[-1]["relative_to_first"] if p.return_cycles and rows else None
    out["conventions"]["rates"] = "per block: mean specific discharge capacity of its complete cycles"
    out["conventions"]["recovery"] = "mean discharge capacity of the return block / that of the first block"
    return out


PROTOCOL = full_cell_protocol(
    name="rate_capability",
    version="1.0",
    title="Full-cell rate capability (C-rate blocks, then back to the first rate)",
    params=PARAMS,
    plan=plan,
    check=check_common,
    description=__doc__ or "",
    result_keys=("capacity_mAh_g", "recovery", "valid"),
    values_type=RateValues,
    fastest_rate=lambda p: max(max(p.rates), p.charge_rate or 0.0),
)
