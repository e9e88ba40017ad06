"""Oxidation stability window by linear sweep voltammetry on Li|SE|SS.

Sequence: open-circuit rest (records the OCV), then a sweep from OCV to the
upper limit (default 5.0 V, up to 6 V) at 1 mV/s (0.01–10 mV/s), stopped early
if the current density runs away. The onset is found by the chosen method
(current-density threshold, default 0.05 mA/cm²; tangent; dI/dV) and the other
methods' values are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.analysis.lsv import lsv_onset
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import Limits, StepResult, VoltageSweep
from labctl.units import current_density_to_a, mv_per_s_to_v_per_s
from protocols._steps import rest

# The seed papers' sweep: OCV → 5.0 V at 1 mV/s, onset at 0.05 mA/cm².
UPPER_V = 5.0
SCAN_RATE_MV_S = 1.0
ONSET_THRESHOLD_MA_CM2 = 0.05

PARAMS = (
    Param("upper", UPPER_V, "V", "upper potential limit (vs Li/Li+)", minimum=1.0, maximum=6.0),
    Param("rate", SCAN_RATE_MV_S, "mV/s", "scan rate", minimum=0.01, maximum=10.0),
    Param("rest", 60.0, "s", "open-circuit rest before the sweep", minimum=1.0, maximum=86400.0),
    Param(
        "threshold",
        ONSET_THRESHOLD_MA_CM2,
        "mA/cm²",
        "onset current density (threshold method)",
        minimum=0.001,
        maximum=1.0,
    ),
    Param(
        "method",
        "threshold",
        "",
        "onset method reported as onset_V",
        kind="choice",
        choices=("threshold", "tangent", "dIdV"),
    ),
    Param("resolution", 1.0, "mV", "potential step between samples", minimum=0.1, maximum=10.0),
    Param("max_current", 5.0, "mA/cm²", "stop the sweep above this current density", minimum=0.01, maximum=100.0),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class LsvValues(GeometryValues):
    upper: float
    rate: float
    rest: float
    threshold: float
    method: str
    resolution: float
    max_current: float


def check(p: LsvValues, cell: Cell | None) -> None:
    if p.max_current <= p.threshold:
        raise ParameterError(
            "max_current",
            f"{p.max_current:g} mA/cm² must be above the threshold {p.threshold:g} mA/cm²",
        )
    if cell is not None and cell.ocv_V is not None and p.upper <= cell.ocv_V:
        raise ParameterError(
            "upper",
            f"{p.upper:g} V is not above the cell's open-circuit voltage {cell.ocv_V:.3f} V (allowed: OCV to 6 V)",
        )


def plan(p: LsvValues, cell: Cell) -> Plan:
    at_rest = yield from rest(p.rest, label="OCV")
    ocv = at_rest.last.get("E") if at_rest is not None else None
    if ocv is not None and p.upper <= ocv:
        raise ValueError(f"upper limit {p.upper:g} V is not above the measured OCV {ocv:.3f} V")
    sweep = yield sweep_step(p, cell)
    return analyse_lsv(p, cell, ocv, sweep)


def sweep_step(p: LsvValues, cell: Cell) -> VoltageSweep:
    """OCV to the upper limit, one sample per ``resolution`` mV, stopped if the current runs away."""
    return VoltageSweep(
        start="ocv",
        stop=p.upper,
        rate=mv_per_s_to_v_per_s(p.rate),
        sample_period=p.resolution / p.rate,
        limits=Limits(current_above=current_density_to_a(p.max_current, cell.area_cm2)),
        label=f"LSV {p.rate:g} mV/s",
    )


def analyse_lsv(p: LsvValues, cell: Cell, ocv: float | None, sweep: StepResult) -> dict[str, Any]:
    """The onset by the chosen method (the others beside it) from the recorded sweep."""
    data = sweep.data
    onset = lsv_onset(
        data["E"],
        data["I"],
        cell.area_cm2,
        mv_per_s_to_v_per_s(p.rate),
        method=p.method,
        j_threshold_mA_cm2=p.threshold,
    )
    out = onset.as_dict()
    out.update({"ocv_V": ocv, "sweep_end_reason": sweep.end_reason.value, "E_max_V": float(data["E"].max())})
    out.update(judge_onset(data["E"], data["I"], cell.area_cm2, out.get("onset_V"), p.threshold))
    return out


def _steepest_exponent(e: Any, j: Any, onset_V: float, span_V: float = 0.05) -> float:
    """Steepest d ln j / d ln(E − E_start) over ``span_V`` windows below the onset.

    A leakage (ohmic) current grows like (E − E_ocv): exponent ≤ 1; a Tafel-type oxidation
    current grows like exp((E − E_ocv)/b): exponent (E − E_ocv)/b ≫ 1 a few b above OCV.
    """
    e0 = float(e[0])
    keep = (e < onset_V) & (j > 0) & (e > e0 + 0.02)
    e, lj = e[keep], np.log(j[keep])
    if e.size < 3:
        return 0.0
    best = 0.0
    for lo in np.arange(e.min(), onset_V, span_V / 2):
        w = (e >= lo) & (e < lo + span_V)
        if np.count_nonzero(w) >= 3:
            best = max(best, float(np.polyfit(np.log(e[w] - e0), lj[w], 1)[0]))
    return best


#: An oxidation (Tafel-type) wave grows faster than this power of (E − E_ocv) somewhere below
#: its onset; leakage and ohmic currents grow like the first power.
MIN_WAVE_EXPONENT = 3.0

#: Below this rise of log10 j per volt around the onset the current is not a Tafel-type
#: (exponential) oxidation but ohmic/leakage: even a 500 mV/dec Tafel slope gives 2 decades/V.
MIN_ONSET_DECADES_PER_V = 1.5


def judge_onset(E: Any, current_A: Any, area_cm2: float, onset_V: float | None, threshold: float) -> dict[str, Any]:
    """valid/reason/warnings for an onset: none found, or a current that is not an oxidation wave.

    A resistive cell (low conductivity, long path, bad contact) drops most of the applied
    potential ohmically: its current grows about linearly with E and crosses any threshold
    at a potential that says nothing about the electrolyte's stability.
    """
    e = np.asarray(E, dtype=float)
    j = np.abs(np.asarray(current_A, dtype=float)) / area_cm2 * 1e3  # mA/cm²
    out: dict[str, Any] = {"valid": True, "reason": "", "warnings": []}
    if onset_V is None or not np.isfinite(onset_V):
        out["valid"] = False
        out["reason"] = (
            f"no onset: the current density never exceeded {threshold:g} mA/cm² up to {e.max():.3f} V "
            f"(max {j.max():.3g} mA/cm²); the stability limit is above the sweep, or an ohmic drop "
            "(resistive cell) shifts it there"
        )
        return out
    window = (e > onset_V - 0.05) & (e < onset_V + 0.05) & (j > 0)
    if np.count_nonzero(window) >= 3:
        slope = float(np.polyfit(e[window], np.log10(j[window]), 1)[0])
        exponent = _steepest_exponent(e, j, onset_V)
        out["onset_log_slope_dec_per_V"] = slope
        out["steepest_exponent_below_onset"] = exponent
        if exponent < MIN_WAVE_EXPONENT:
            out["valid"] = False
            out["reason"] = (
                f"no oxidation wave below the onset: the current grows at most like (E - E_ocv)^{exponent:.2g} "
                f"(< {MIN_WAVE_EXPONENT:g}; leakage or ohmic current grows like (E - E_ocv)^1); the threshold "
                "crossing reflects the cell's electronic leakage or resistance, not its stability"
            )
        elif slope < MIN_ONSET_DECADES_PER_V:
            out["warnings"].append(
                f"an oxidation wave rises below the onset but only {slope:.2g} decades/V at it: "
                "an ohmic drop flattens it, so the onset depends on the cell's resistance (compare cells of "
                "similar resistance)"
            )
    return out


def demands(p: LsvValues, cell: Cell) -> list[Demand]:
    return [
        Demand("voltage", p.upper, "upper"),
        Demand(
            "current",
            current_density_to_a(p.max_current, cell.area_cm2),
            "max_current",
            f"{p.max_current:g} mA/cm² × {cell.area_cm2:g} cm²",
        ),
    ]


PROTOCOL = Protocol(
    name="lsv",
    version="1.0",
    title="Linear sweep -> oxidation stability limit",
    cell_type="li_ss",
    params=PARAMS,
    plan=plan,
    check=check,
    step_kinds=frozenset({"Rest", "VoltageSweep"}),
    description=__doc__ or "",
    preview=lambda p, cell: [VoltageSweep(start="ocv", stop=p.upper, rate=1e-3)],
    result_keys=("onset_V",),
    demands=demands,
    values_type=LsvValues,
)
