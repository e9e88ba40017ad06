"""Li⁺ transference number by DC polarisation (Bruce–Vincent–Evans) on Li|SE|Li.

Sequence: OCV rest → EIS → ConstantVoltage ΔV (default 10 mV) until the
current is steady (|dI/dt| over a window below a fraction of the current per
hour) or a maximum time → EIS under the same bias (so the steady state holds
while it is measured).

t+ = Iss(ΔV − I0·R0) / (I0(ΔV − Iss·Rss)) (Evans, Vincent & Bruce, Polymer 28
(1987) 2324), with R0/Rss everything in series that is not the electrolyte
bulk (interfacial arcs + leads), taken from the two spectra. I0 by default is
the "ohmic" initial current ΔV/(R_b + R0) from the first spectrum: the first
sample already misses the fast part of the decay (Zugmann et al.,
Electrochim. Acta 56 (2011) 3926); the measured first-sample value is reported
too, and the convention used is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.analysis.eis_interface import split_symmetric_spectrum
from labctl.analysis.transference import initial_current, steady_state_current, transference_number
from labctl.params import Param
from labctl.protocol import Cell, GeometryValues, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import Limits, StepResult
from labctl.units import mv_to_v
from protocols._steps import SweepValues, eis_sweep, hold_voltage, impedance_step, rest
from protocols.eis import PARAMS as EIS_PARAMS

# DESIGN §3: ΔV = 10 mV, small enough for the linear response the Bruce–Vincent–Evans
# derivation assumes.
DELTA_V_MV = 10.0

PARAMS = (
    Param("dv", DELTA_V_MV, "mV", "polarisation voltage ΔV", minimum=1.0, maximum=100.0),
    Param("max_time", 10.0, "h", "longest polarisation", minimum=0.01, maximum=200.0),
    Param(
        "steady_rate",
        1.0,
        "%/h",
        "steady when |dI/dt| is below this fraction of the current per hour",
        minimum=0.01,
        maximum=100.0,
    ),
    Param("steady_window", 600.0, "s", "window over which dI/dt is fitted", minimum=10.0, maximum=36000.0),
    Param("sample_period", 1.0, "s", "current sampling interval", minimum=0.01, maximum=60.0),
    Param(
        "i0",
        "ohmic",
        "",
        "initial-current convention: ohmic = ΔV/(R_b+R0) from EIS, first_sample, extrapolated",
        kind="choice",
        choices=("ohmic", "first_sample", "extrapolated"),
    ),
    *(p for p in EIS_PARAMS if p.name not in ("circuit", "rest")),
    Param("rest", 60.0, "s", "open-circuit rest before the first EIS", minimum=0.0, maximum=86400.0),
)


@dataclass(frozen=True)
class TransferenceValues(SweepValues, GeometryValues):
    dv: float
    max_time: float
    steady_rate: float
    steady_window: float
    sample_period: float
    i0: str
    rest: float


def plan(p: TransferenceValues, cell: Cell) -> Plan:
    dv = mv_to_v(p.dv)
    yield from rest(p.rest, label="OCV")
    before = yield from eis_sweep(p, label="EIS before")
    hold = yield from hold_voltage(dv, steady_limits(p, before), p.sample_period, label=f"ΔV {p.dv:g} mV")
    after = yield from eis_sweep(p, label="EIS after (under ΔV)", bias_V=dv)
    return analyse_transference(p, before, hold, after)


def steady_limits(p: TransferenceValues, before: StepResult) -> Limits:
    """End the hold when |dI/dt| < steady_rate %/h of the current expected from the first spectrum."""
    split0 = split_symmetric_spectrum(before.spectrum, r_leads_ohm=p.r_leads)
    i_estimate = mv_to_v(p.dv) / split0.R_dc_ohm
    return Limits(
        max_time=p.max_time * 3600.0,
        steady_slope=p.steady_rate / 100.0 * i_estimate / 3600.0,
        steady_window=p.steady_window,
    )


def analyse_transference(
    p: TransferenceValues, before: StepResult, hold: StepResult, after: StepResult
) -> dict[str, Any]:
    """t+ (Bruce–Vincent–Evans) from the two spectra and the current decay of the hold."""
    dv = mv_to_v(p.dv)
    split0 = split_symmetric_spectrum(before.spectrum, r_leads_ohm=p.r_leads)
    split_ss = split_symmetric_spectrum(after.spectrum, r_leads_ohm=p.r_leads)
    t = hold.data["t"] - hold.t_start
    current = hold.data["I"]
    steady = steady_state_current(t, current)
    first = initial_current(t, current, convention="first_sample", t_step=0.0)
    if p.i0 == "ohmic":
        i0 = dv / (split0.R_bulk_ohm + split0.R_interface_ohm)
        initial = None
    else:
        initial = initial_current(t, current, convention=p.i0, t_step=0.0)
        i0 = initial.I0_A
    result = transference_number(
        dv,
        i0,
        steady.Iss_A,
        split0.R_interface_ohm,
        split_ss.R_interface_ohm,
        i0_convention=p.i0,
        steady=steady,
        initial=initial,
    )
    return {
        "t_plus": result.t_plus,
        "I0_A": i0,
        "I0_convention": p.i0,
        "I0_first_sample_A": first.I0_A,
        "Iss_A": steady.Iss_A,
        "R0_ohm": split0.R_interface_ohm,
        "Rss_ohm": split_ss.R_interface_ohm,
        "R_bulk_before_ohm": split0.R_bulk_ohm,
        "R_bulk_after_ohm": split_ss.R_bulk_ohm,
        "delta_V": dv,
        "steady": bool(steady.is_steady),
        "hold_end_reason": hold.end_reason.value,
        "hold_duration_s": hold.duration,
        "plausible": bool(result.plausible),
        "current_ratio": result.current_ratio,
        "conventions": {
            **result.conventions,
            "R0/Rss": "all series resistance except the electrolyte bulk: interfacial arc(s) + r_leads",
            "EIS after": "measured under the ΔV bias",
            "spectrum split": split0.conventions,
        },
        "I_final_A": float(np.asarray(current)[-1]) if len(current) else None,
    }


def demands(p: TransferenceValues, cell: Cell) -> list[Demand]:
    return [Demand("voltage", mv_to_v(p.dv), "dv", "relative to OCV")]


PROTOCOL = Protocol(
    name="transference",
    version="1.0",
    title="DC polarisation + EIS -> Li+ transference number (Bruce–Vincent–Evans)",
    cell_type="li_li",
    params=PARAMS,
    plan=plan,
    step_kinds=frozenset({"Rest", "Impedance", "ConstantVoltage"}),
    description=__doc__ or "",
    preview=lambda p, cell: [impedance_step(p)],
    result_keys=("t_plus", "I0_A", "Iss_A", "R0_ohm", "Rss_ohm"),
    demands=demands,
    values_type=TransferenceValues,
)
