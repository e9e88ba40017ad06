"""Ionic conductivity from a resistance and the cell geometry: σ = L / (R·A), in S/cm.

Labs quote thickness in µm (films, membranes), mm or cm (pellets) and areas in cm², and
report σ in S/cm; a factor-10⁴ slip between µm and cm is the classic mistake, so the unit of
the thickness is an explicit argument everywhere. Functions accept scalars or numpy arrays.

The resistance to use is the electrolyte's: for a SS|SE|SS cell, ``R_total`` from the
impedance fit minus the lead/contact resistance measured on a shorted cell
(:func:`bulk_resistance`).
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
from scipy import constants

__all__ = [
    "EPSILON_0_F_PER_CM",
    "bulk_resistance",
    "conductivity",
    "disc_area_cm2",
    "geometric_capacitance",
    "resistance_from_conductivity",
    "thickness_to_cm",
]

ThicknessUnit = Literal["um", "µm", "mm", "cm", "m"]
Num = TypeVar("Num", float, np.ndarray)

#: Vacuum permittivity in F/cm (CODATA via scipy.constants).
EPSILON_0_F_PER_CM: float = constants.epsilon_0 / 100.0

_TO_CM = {"um": 1e-4, "µm": 1e-4, "mm": 0.1, "cm": 1.0, "m": 100.0}


def _positive(name: str, value: float | np.ndarray) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return arr


def _out(value: np.ndarray) -> float | np.ndarray:
    return float(value) if value.ndim == 0 else value


def thickness_to_cm(thickness: float | np.ndarray, unit: ThicknessUnit) -> float | np.ndarray:
    """Convert a thickness in ``unit`` ("um"/"µm", "mm", "cm", "m") to cm."""
    if unit not in _TO_CM:
        raise ValueError(f"unknown thickness unit {unit!r}; use one of {sorted(_TO_CM)}")
    return _out(_positive("thickness", thickness) * _TO_CM[unit])


def conductivity(
    resistance_ohm: float | np.ndarray,
    thickness: float | np.ndarray,
    area_cm2: float | np.ndarray,
    *,
    thickness_unit: ThicknessUnit,
) -> float | np.ndarray:
    """σ = L/(R·A) in S/cm, from R in Ω, the thickness in ``thickness_unit`` and A in cm²."""
    length = np.asarray(thickness_to_cm(thickness, thickness_unit))
    r = _positive("resistance", resistance_ohm)
    a = _positive("area", area_cm2)
    return _out(length / (r * a))


def resistance_from_conductivity(
    sigma_s_per_cm: float | np.ndarray,
    thickness: float | np.ndarray,
    area_cm2: float | np.ndarray,
    *,
    thickness_unit: ThicknessUnit,
) -> float | np.ndarray:
    """The inverse: R = L/(σ·A) in Ω (used to set up simulated cells)."""
    length = np.asarray(thickness_to_cm(thickness, thickness_unit))
    return _out(length / (_positive("conductivity", sigma_s_per_cm) * _positive("area", area_cm2)))


def geometric_capacitance(
    eps_r: float | np.ndarray,
    thickness: float | np.ndarray,
    area_cm2: float | np.ndarray,
    *,
    thickness_unit: ThicknessUnit,
) -> float | np.ndarray:
    """Parallel-plate (bulk) capacitance ε0·εr·A/L in F; sets the bulk arc's frequency."""
    length = np.asarray(thickness_to_cm(thickness, thickness_unit))
    return _out(EPSILON_0_F_PER_CM * _positive("eps_r", eps_r) * _positive("area", area_cm2) / length)


def disc_area_cm2(diameter_cm: float | np.ndarray) -> float | np.ndarray:
    """Area of a disc electrode or pellet face, π·d²/4, in cm²."""
    return _out(math.pi * _positive("diameter", diameter_cm) ** 2 / 4.0)


def bulk_resistance(r_total_ohm: float, r_leads_ohm: float) -> float:
    """Electrolyte resistance = fitted R_total − lead/contact resistance of a shorted cell.

    Raises if the leads account for all of R_total: the electrolyte is then not resolved by
    the measurement (too conductive or too thin for this set-up), which is worth knowing
    rather than reporting a negative or absurdly large conductivity."""
    if not (math.isfinite(r_total_ohm) and math.isfinite(r_leads_ohm)) or r_leads_ohm < 0:
        raise ValueError(f"need finite R_total and R_leads >= 0, got {r_total_ohm!r}, {r_leads_ohm!r}")
    r_bulk = r_total_ohm - r_leads_ohm
    if r_bulk <= 0:
        raise ValueError(
            f"R_total ({r_total_ohm:.4g} ohm) does not exceed the lead resistance "
            f"({r_leads_ohm:.4g} ohm): the electrolyte resistance is not resolved"
        )
    return r_bulk
