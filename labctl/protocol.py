"""What a protocol is (lookups by name live in ``labctl.registry``).

A protocol is a generator function (bluesky-style plans): it yields Steps,
receives each StepResult and returns its headline results. It never sleeps,
never talks to an instrument, never opens a file, so the same plan runs on a
simulator, on hardware and in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from labctl.cathode import CathodeSpec, resolve_cathode
from labctl.params import Param, ParameterError, check_values_type, typed_values, validate
from labctl.safety import Demand
from labctl.steps import Step, StepResult

Plan = Generator[Step, StepResult, dict[str, Any]]


@dataclass(frozen=True)
class Cell:
    """The cell under test, in lab units (what protocols convert from)."""

    type: str
    area_cm2: float
    thickness_um: float
    id: str = ""
    notes: str = ""
    geometry_source: str = "parameters"
    #: Open-circuit voltage when known before the run (a simulator knows it),
    #: so e.g. an LSV whose upper limit is below OCV is refused up front.
    ocv_V: float | None = None
    #: A full cell's cathode (chemistry, loading, nominal mAh/g, window): what 1 C means.
    cathode: CathodeSpec | None = None

    @property
    def area_m2(self) -> float:
        return self.area_cm2 * 1e-4

    @property
    def thickness_m(self) -> float:
        return self.thickness_um * 1e-6

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "area_cm2": self.area_cm2,
            "thickness_um": self.thickness_um,
            "notes": self.notes,
            "geometry_source": self.geometry_source,
            "ocv_V": self.ocv_V,
            "cathode": None if self.cathode is None else self.cathode.as_dict(),
        }


#: Parameters every protocol on a real cell needs; on a simulator they
#: default to the simulated cell's geometry.
GEOMETRY_PARAMS = (
    Param(
        "thickness",
        None,
        "µm",
        "electrolyte thickness",
        minimum=0.1,
        maximum=1e5,
        default_text="from the simulated cell; required on hardware",
    ),
    Param(
        "area",
        None,
        "cm²",
        "electrode area (the smaller of the two electrodes)",
        minimum=1e-4,
        maximum=1e3,
        default_text="from the simulated cell; required on hardware",
    ),
)


@dataclass(frozen=True)
class GeometryValues:
    """The typed :data:`GEOMETRY_PARAMS`, a base for protocols' parameter classes
    (None: taken from the simulated cell; the plan reads ``cell`` instead)."""

    thickness: float | None
    area: float | None


@dataclass(frozen=True)
class Protocol:
    """A named, versioned test procedure with declared parameters.

    ``plan(params, cell)`` builds the generator; ``check(params, cell)`` does
    the cross-parameter validation (Q_c <= Q_t, upper limit above OCV ...)
    before anything runs (``cell`` is None when no cell is known yet);
    ``step_kinds`` lets the engine refuse a channel that cannot do the steps
    before the run starts. ``cell_type_for`` picks the cell type when it
    depends on a parameter (cycling: symmetric or full cell).

    With ``values_type`` (a frozen dataclass with one field per parameter) the
    callbacks receive that typed object, built from the validated lab-unit
    values; callers keep passing the plain mapping, which is what the run file
    stores. Without it (small test protocols) they receive the mapping itself.
    """

    name: str
    version: str
    title: str
    cell_type: str
    params: tuple[Param, ...]
    plan: Callable[[Any, Cell], Plan]
    step_kinds: frozenset[str]
    check: Callable[[Any, Cell | None], None] | None = None
    description: str = ""
    result_keys: tuple[str, ...] = field(default=())
    cell_type_from: Callable[[Any], str] | None = None
    #: What the parameters will demand of the channel (largest current,
    #: potentials, chamber temperature), checked against its safety limits.
    demands: Callable[[Any, Cell], list[Demand]] | None = None
    #: Representative steps the parameters will produce (e.g. the impedance
    #: sweep, the largest current step), checked against the channel's
    #: capabilities before the run so a 10 Hz sweep on a 20 Hz meter is
    #: refused up front, not half-way through.
    preview: Callable[[Any, Cell], list[Step]] | None = None
    #: The frozen dataclass the callbacks read parameters from.
    values_type: type | None = None

    def __post_init__(self) -> None:
        if self.values_type is not None:
            check_values_type(self.values_type, self.params)

    def typed(self, values: Mapping[str, Any]) -> Any:
        """The parameter object the callbacks receive for validated ``values``."""
        if self.values_type is None or isinstance(values, self.values_type):
            return values
        return typed_values(self.values_type, self.params, values)

    def make_plan(self, values: Mapping[str, Any], cell: Cell) -> Plan:
        """The protocol's generator for validated lab-unit ``values``."""
        return self.plan(self.typed(values), cell)

    def preview_steps(self, values: Mapping[str, Any], cell: Cell) -> list[Step]:
        return self.preview(self.typed(values), cell) if self.preview else []

    def demands_for(self, values: Mapping[str, Any], cell: Cell) -> list[Demand]:
        return self.demands(self.typed(values), cell) if self.demands else []

    def validate(self, given: Mapping[str, Any], cell: Cell | None = None) -> dict[str, Any]:
        values = validate(self.params, given, context=f"protocol '{self.name}'")
        self.check_values(values, cell)
        return values

    def check_values(self, values: Mapping[str, Any], cell: Cell | None) -> None:
        if self.check is not None:
            self.check(self.typed(values), cell)

    def cell_type_for(self, values: Mapping[str, Any]) -> str:
        return self.cell_type_from(self.typed(values)) if self.cell_type_from else self.cell_type

    def resolve_cell(
        self, values: Mapping[str, Any], channel_cell: Mapping[str, Any] | None, cell_id: str = ""
    ) -> Cell:
        """The cell geometry: from parameters, else from a simulator's truth."""
        source = "parameters"
        thickness = values.get("thickness")
        area = values.get("area")
        if (thickness is None or area is None) and channel_cell:
            thickness = thickness if thickness is not None else channel_cell.get("thickness_um")
            area = area if area is not None else channel_cell.get("area_cm2")
            given_none = values.get("thickness") is None and values.get("area") is None
            source = "simulated cell" if given_none else "parameters + simulated cell"
        for name, value in (("thickness", thickness), ("area", area)):
            if value is None:
                param = next(p for p in GEOMETRY_PARAMS if p.name == name)
                raise ParameterError(name, f"is required on this instrument (allowed: {param.allowed})")
        ocv = (channel_cell or {}).get("ocv_V")
        return Cell(
            type=self.cell_type_for(values),
            area_cm2=float(area),
            thickness_um=float(thickness),
            id=cell_id,
            geometry_source=source,
            ocv_V=None if ocv is None else float(ocv),
            # Protocols that declare the cathode parameters (full cells) get it resolved here.
            cathode=resolve_cathode(values, channel_cell) if "loading" in values else None,
        )


def largest_current_step(j_ma_cm2: float, cell: Cell) -> Step:
    """A stand-in for a protocol's largest galvanostatic step, for previews."""
    from labctl.steps import ConstantCurrent, Limits

    return ConstantCurrent(current=j_ma_cm2 * 1e-3 * cell.area_cm2, limits=Limits(max_time=1.0))
