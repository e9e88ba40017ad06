"""What a full cell's cathode is: the metadata that turn C-rates into currents.

Full-cell papers quote rates in C and capacities in mAh/g of active material
("NCM622‖Li, 1 C, 3.0–4.3 V, 160 mAh/g at 10 mg/cm²"), so the run must know,
before any current flows, the cathode chemistry, the active mass loading
(mg/cm²), the nominal specific capacity (mAh/g) and the voltage window. The
convention (recorded with every result):

    1 C current (A) = nominal specific capacity (mAh/g) × loading (mg/cm²) × area (cm²) × 1e-6

i.e. 1 C would (dis)charge the *nominal* capacity in one hour. The nominal value
is the lab's declaration, not a measurement: the measured mAh/g is a result.

On hardware the loading and the specific capacity are required (a default
would set a wrong current); on the simulator they default to the simulated
cell's own values. The window defaults to the chemistry's usual one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labctl.params import Param, ParameterError

#: Usual voltage windows vs Li (V), as in the seed papers: NCM622‖Li 3.0–4.3 V,
#: LCO‖Li 3.0–4.3 V, LFP‖Li 2.5–4.0 V. "other" has none: give v_min and v_max.
WINDOWS: dict[str, tuple[float, float]] = {"nmc": (3.0, 4.3), "lco": (3.0, 4.3), "lfp": (2.5, 4.0)}
CHEMISTRIES = ("nmc", "lco", "lfp", "other")

_FROM_SIM = "from the simulated cell; required on hardware"

CATHODE_PARAMS = (
    Param(
        "cathode",
        None,
        "",
        "cathode chemistry (nmc = NCM/NMC layered oxides such as NCM622)",
        kind="choice",
        choices=CHEMISTRIES,
        default_text=_FROM_SIM,
    ),
    Param(
        "loading", None, "mg/cm²", "active-material mass loading", minimum=0.01, maximum=200.0, default_text=_FROM_SIM
    ),
    Param(
        "specific_capacity",
        None,
        "mAh/g",
        "nominal specific capacity: defines 1 C",
        minimum=1.0,
        maximum=4000.0,
        default_text=_FROM_SIM,
    ),
    Param(
        "v_min", None, "V", "discharge cutoff", minimum=0.5, maximum=5.5, default_text="the chemistry's usual window"
    ),
    Param(
        "v_max",
        None,
        "V",
        "charge cutoff (CV hold voltage)",
        minimum=0.5,
        maximum=5.5,
        default_text="the chemistry's usual window",
    ),
)


@dataclass(frozen=True)
class CathodeSpec:
    """Chemistry, loading (mg/cm²), nominal specific capacity (mAh/g), window (V)."""

    chemistry: str
    loading_mg_cm2: float
    specific_capacity_mAh_g: float
    v_min: float
    v_max: float

    def __post_init__(self) -> None:
        if self.chemistry not in CHEMISTRIES:
            raise ParameterError(
                "cathode", f"{self.chemistry!r} is not allowed (allowed: one of {', '.join(CHEMISTRIES)})"
            )
        for name, low, high in (("loading_mg_cm2", 0.01, 200.0), ("specific_capacity_mAh_g", 1.0, 4000.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ParameterError(name, f"{value!r} is out of range (allowed: a number from {low:g} to {high:g})")
        for name in ("v_min", "v_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.5 <= value <= 5.5:
                raise ParameterError(name, f"{value!r} is out of range (allowed: a number from 0.5 to 5.5 V)")
        if self.v_min >= self.v_max:
            raise ParameterError("v_min", f"{self.v_min:g} V must be below v_max {self.v_max:g} V")

    def active_mass_g(self, area_cm2: float) -> float:
        return self.loading_mg_cm2 * area_cm2 * 1e-3

    def nominal_capacity_mAh(self, area_cm2: float) -> float:
        return self.specific_capacity_mAh_g * self.active_mass_g(area_cm2)

    def one_c_A(self, area_cm2: float) -> float:
        """The 1 C current (A) of a cell of ``area_cm2``: the nominal capacity in one hour."""
        return self.nominal_capacity_mAh(area_cm2) * 1e-3

    def as_dict(self) -> dict[str, Any]:
        return {
            "chemistry": self.chemistry,
            "loading_mg_cm2": self.loading_mg_cm2,
            "specific_capacity_mAh_g": self.specific_capacity_mAh_g,
            "v_min": self.v_min,
            "v_max": self.v_max,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "cell.cathode") -> CathodeSpec:
        """Rebuild from ``as_dict`` output (a run file's cell record: untrusted)."""
        if not isinstance(data, Mapping):
            raise ParameterError(where, f"is {type(data).__name__}; expected an object")
        try:
            return cls(
                chemistry=str(data["chemistry"]),
                loading_mg_cm2=data["loading_mg_cm2"],
                specific_capacity_mAh_g=data["specific_capacity_mAh_g"],
                v_min=data["v_min"],
                v_max=data["v_max"],
            )
        except KeyError as exc:
            raise ParameterError(f"{where}.{exc.args[0]}", "missing") from None


#: Lab-file cell keys (the parameter names) -> ``CathodeSpec.as_dict`` names.
LAB_KEYS = {
    "cathode": "chemistry",
    "loading": "loading_mg_cm2",
    "specific_capacity": "specific_capacity_mAh_g",
    "v_min": "v_min",
    "v_max": "v_max",
}


def from_lab_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cathode entries of a lab file's ``cell`` table, in ``as_dict`` names (may be partial)."""
    return {name: cell[key] for key, name in LAB_KEYS.items() if cell.get(key) is not None}


def resolve_cathode(values: Mapping[str, Any], known: Mapping[str, Any] | None) -> CathodeSpec:
    """The cathode from the parameters, else from a simulator's (or lab file's) cell.

    ``known`` is the channel's cell record; its ``cathode`` entry (``as_dict``
    form) fills what the parameters leave out. ParameterError names the first
    field nobody gave.
    """
    sim = dict((known or {}).get("cathode") or {})
    chemistry = values.get("cathode") if values.get("cathode") is not None else sim.get("chemistry")
    loading = values.get("loading") if values.get("loading") is not None else sim.get("loading_mg_cm2")
    capacity = values.get("specific_capacity")
    if capacity is None:
        capacity = sim.get("specific_capacity_mAh_g")
    for name, value in (("cathode", chemistry), ("loading", loading), ("specific_capacity", capacity)):
        if value is None:
            param = next(p for p in CATHODE_PARAMS if p.name == name)
            raise ParameterError(name, f"is required on this instrument (allowed: {param.allowed})")
    window = WINDOWS.get(str(chemistry))
    v_min = values.get("v_min") if values.get("v_min") is not None else sim.get("v_min")
    v_max = values.get("v_max") if values.get("v_max") is not None else sim.get("v_max")
    for name, value in (("v_min", v_min), ("v_max", v_max)):
        if value is None and window is None:
            raise ParameterError(name, f"is required for cathode {chemistry!r} (allowed: a number from 0.5 to 5.5 V)")
    return CathodeSpec(
        chemistry=str(chemistry),
        loading_mg_cm2=float(loading),
        specific_capacity_mAh_g=float(capacity),
        v_min=float(v_min if v_min is not None else window[0]),  # type: ignore[index]
        v_max=float(v_max if v_max is not None else window[1]),  # type: ignore[index]
    )
