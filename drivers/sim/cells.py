"""The cell models by name.

One module per cell type (``cell_blocking``, ``cell_lithium``, ``cell_full``),
all implementing ``cellbase.CellModel``.
"""

from __future__ import annotations

from drivers.sim.cell_blocking import BlockingCell, BlockingState
from drivers.sim.cell_full import FullCell, FullState
from drivers.sim.cell_lithium import LithiumCell, LithiumState
from drivers.sim.cell_short import ShortCell
from drivers.sim.cellbase import COMPLIANCE_V, CellModel, CellState
from drivers.sim.params import SimParams

__all__ = [
    "COMPLIANCE_V",
    "BlockingCell",
    "BlockingState",
    "CellModel",
    "CellState",
    "FullCell",
    "FullState",
    "LithiumCell",
    "LithiumState",
    "ShortCell",
    "make_cell",
]


def make_cell(p: SimParams, cell_type: str) -> CellModel:
    """The model for a cell type name (see ``params.CELL_TYPES``)."""
    if cell_type == "ss":
        return BlockingCell(p)
    if cell_type in ("li_li", "li_cu", "li_ss"):
        return LithiumCell(p, cell_type)
    if cell_type == "full":
        return FullCell(p)
    if cell_type == "short":
        return ShortCell(p)
    raise ValueError(f"unknown cell type {cell_type!r}")
