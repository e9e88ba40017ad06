"""Ionic conductivity of a membrane between blocking electrodes (SS|SE|SS).

Sequence: a short open-circuit rest (records the OCV and lets the cell settle),
then one potentiostatic impedance sweep; the spectrum is fitted with
R0-p(R1,CPE1)-CPE2 and σ = L/(R_b·A) with R_b = R_total − R_leads.
Defaults follow the seed papers' method sections: 100 kHz → 0.1 Hz, 10 mV rms,
10 points per decade.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.analysis.eis_conductivity import ConductivityResult, conductivity_from_spectrum
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol
from labctl.steps import StepResult
from protocols._steps import SweepValues, eis_sweep, impedance_step, rest

# The seed papers' sweep: 100 kHz → 0.1 Hz, 10 mV rms, 10 points per decade.
F_START_HZ = 1e5
F_STOP_HZ = 0.1
AMPLITUDE_MV = 10.0
POINTS_PER_DECADE = 10

PARAMS = (
    Param("f_start", F_START_HZ, "Hz", "first (highest) frequency", minimum=1e-3, maximum=1e7),
    Param("f_stop", F_STOP_HZ, "Hz", "last (lowest) frequency", minimum=1e-4, maximum=1e7),
    Param("points_per_decade", POINTS_PER_DECADE, "", "frequencies per decade", minimum=1, maximum=100, kind="int"),
    Param("amplitude", AMPLITUDE_MV, "mV", "sine amplitude (rms)", minimum=0.1, maximum=500.0),
    Param("rest", 10.0, "s", "open-circuit rest before the sweep (0 = none)", minimum=0.0, maximum=86400.0),
    Param(
        "r_leads",
        0.0,
        "Ω",
        "lead + contact resistance measured on a shorted cell, subtracted from the intercept "
        "(default: the channel's calibration from the 'leads' protocol, else 0; simulator: --sim r_series)",
        minimum=0.0,
        maximum=1e6,
    ),
    Param(
        "r_leads_source",
        "",
        "",
        "where r_leads came from (filled in by labctl: parameter, calibration FILE (measured …), none)",
        kind="str",
        internal=True,
    ),
    Param(
        "circuit",
        "auto",
        "",
        "equivalent circuit: auto, blocking R0-p(R1,CPE1)-CPE2, blocking with a grain-boundary arc",
        kind="choice",
        choices=("auto", "blocking", "blocking_gb"),
    ),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class EisValues(SweepValues, GeometryValues):
    rest: float
    circuit: str


def plan(p: EisValues, cell: Cell) -> Plan:
    yield from rest(p.rest, label="OCV")
    sweep = yield from eis_sweep(p)
    return analyse_eis(p, cell, sweep)


def analyse_eis(p: EisValues, cell: Cell, sweep: StepResult) -> dict[str, Any]:
    """σ and the fit from the recorded sweep, with the cell temperature during it."""
    if sweep.spectrum is None or len(sweep.spectrum) < 5:
        raise RuntimeError(f"impedance sweep returned too few points ({sweep.end_reason.value})")
    out = sweep_conductivity(sweep.spectrum, cell, r_leads_ohm=p.r_leads, circuit=p.circuit).as_dict()
    out["temperature_C"] = mean_temperature(sweep.spectrum)
    out["r_leads_source"] = r_leads_source(p)
    return out


def sweep_conductivity(spectrum: np.ndarray, cell: Cell, *, r_leads_ohm: float, circuit: str) -> ConductivityResult:
    """σ from a measured sweep, with the protocol's lead resistance and circuit."""
    return conductivity_from_spectrum(
        spectrum["freq"],
        spectrum["z_re"] + 1j * spectrum["z_im"],
        thickness_um=cell.thickness_um,
        area_cm2=cell.area_cm2,
        r_leads_ohm=r_leads_ohm,
        circuit=circuit,
    )


def r_leads_source(p: SweepValues) -> str:
    """Where the subtracted lead resistance came from, for the result."""
    return p.r_leads_source or ("parameter" if p.r_leads > 0 else "none (0 ohm assumed)")


def mean_temperature(spectrum: np.ndarray) -> float | None:
    """The cell temperature during a sweep, when the instrument knows it."""
    temps = spectrum["T"][np.isfinite(spectrum["T"])]
    return float(temps.mean()) if temps.size else None


def check(p: EisValues, cell: Cell | None) -> None:
    if p.f_start == p.f_stop:
        raise ParameterError("f_stop", "must differ from f_start")


PROTOCOL = Protocol(
    name="eis",
    version="1.0",
    title="EIS on a blocking cell -> ionic conductivity",
    cell_type="ss",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"Rest", "Impedance"}),
    description=__doc__ or "",
    preview=lambda p, cell: [impedance_step(p)],
    result_keys=("R_bulk_ohm", "sigma_S_cm"),
    values_type=EisValues,
)
