"""Lead calibration: R and L of the leads and cell holder, measured on a short.

Put a short (or the SS|SS blank: two stainless-steel discs pressed together) in the holder
and run this on the channel; ``labctl run leads --lab LAB -i CHANNEL --save`` stores the
result as that channel's calibration, which ``eis``, ``arrhenius`` and ``transference``
then subtract by default (DESIGN §4; see ``labctl.calibration``).

Sequence: one potentiostatic impedance sweep at high frequency (100 kHz → 100 Hz by
default: the band where an electrolyte measurement's intercept is read, and where a short
is still purely R + jωL), fitted with Z = R + jωL (``labctl.analysis.leads``). The
amplitude is small because a short draws amplitude/R: 5 mV on 0.25 Ω is 20 mA rms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labctl.analysis.leads import fit_leads
from labctl.params import Param, ParameterError
from labctl.protocol import Cell, GeometryValues, Plan, Protocol
from labctl.steps import StepResult
from protocols._steps import eis_sweep, impedance_step

PARAMS = (
    Param("f_start", 1e5, "Hz", "first (highest) frequency", minimum=1.0, maximum=1e7),
    Param("f_stop", 100.0, "Hz", "last (lowest) frequency", minimum=1.0, maximum=1e7),
    Param("points_per_decade", 10, "", "frequencies per decade", minimum=1, maximum=100, kind="int"),
    Param(
        "amplitude",
        5.0,
        "mV",
        "sine amplitude (rms); the short draws amplitude/R",
        minimum=0.1,
        maximum=50.0,
    ),
    # A short has no electrolyte: geometry is not used, only recorded (a run file needs a cell).
    Param("thickness", 1.0, "µm", "not used (a short has no electrolyte)", minimum=0.1, maximum=1e5),
    Param("area", 1.0, "cm²", "not used (a short has no electrolyte)", minimum=1e-4, maximum=1e3),
)


@dataclass(frozen=True)
class LeadsValues(GeometryValues):
    f_start: float
    f_stop: float
    points_per_decade: int
    amplitude: float


@dataclass(frozen=True)
class _Sweep:
    """What ``impedance_step`` reads (no lead correction: this measures it)."""

    f_start: float
    f_stop: float
    points_per_decade: int
    amplitude: float
    r_leads: float = 0.0
    r_leads_source: str = ""


def _sweep(p: LeadsValues) -> Any:
    return _Sweep(p.f_start, p.f_stop, p.points_per_decade, p.amplitude)


def plan(p: LeadsValues, cell: Cell) -> Plan:
    sweep = yield from eis_sweep(_sweep(p), label="EIS of the short")
    return analyse_leads(sweep)


def analyse_leads(sweep: StepResult) -> dict[str, Any]:
    """R and L of the leads from the sweep of the short."""
    spectrum = sweep.spectrum
    if spectrum is None or len(spectrum) < 3:
        raise RuntimeError(f"impedance sweep returned too few points ({sweep.end_reason.value})")
    result = fit_leads(spectrum["freq"], spectrum["z_re"] + 1j * spectrum["z_im"])
    return result.as_dict()


def check(p: LeadsValues, cell: Cell | None) -> None:
    if p.f_start == p.f_stop:
        raise ParameterError("f_stop", "must differ from f_start")


PROTOCOL = Protocol(
    name="leads",
    version="1.0",
    title="Lead calibration on a shorted holder -> R and L of the leads",
    cell_type="short",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"Impedance"}),
    description=__doc__ or "",
    preview=lambda p, cell: [impedance_step(_sweep(p))],
    result_keys=("r_ohm", "r_stderr_ohm", "l_h", "valid"),
    values_type=LeadsValues,
)
