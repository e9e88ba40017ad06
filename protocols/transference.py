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

Whether the hold reached steady state is judged afterwards against the diffusion
time constant τ = L²/(π²D) fitted to the whole current transient
(``labctl.analysis.polarization_fit``), not by the dI/dt rule that ended it: a slow
cell passes that rule at ≈2.5 τ with Iss still ≈5 % high. A hold shorter than
``steady_taus`` τ has Iss extrapolated from the fit, and says so. The standard
errors of R_bulk, R0, Rss (EIS fits), I0 and Iss propagate into ``t_plus_stderr``
(``labctl.analysis.transference_trust``); ``valid`` is False, with ``reason``, when
that error exceeds ``max_stderr`` or the interface takes almost all of ΔV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.analysis.eis_interface import SymmetricSplit, split_symmetric_spectrum
from labctl.analysis.polarization_fit import STEADY_TAUS, TransientFit, fit_transient
from labctl.analysis.transference import SteadyCurrent, initial_current, steady_state_current
from labctl.analysis.transference_trust import (
    MAX_STDERR,
    Measured,
    as_measured,
    assess_t_plus,
    pair_covariance,
)
from labctl.params import Param
from labctl.protocol import Cell, GeometryValues, Plan, Protocol
from labctl.safety import Demand
from labctl.steps import Limits, StepResult
from labctl.units import mv_to_v
from protocols._steps import SweepValues, eis_sweep, hold_voltage, impedance_step, rest
from protocols.eis import PARAMS as EIS_PARAMS
from protocols.eis import r_leads_source

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
        "initial-current convention: ohmic = ΔV/(R_b+R0) from EIS, first_sample, extrapolated (√t), "
        "fitted (t = 0 of the diffusion-transient fit)",
        kind="choice",
        choices=("ohmic", "first_sample", "extrapolated", "fitted"),
    ),
    Param(
        "steady_taus",
        STEADY_TAUS,
        "τ",
        "a hold this many diffusion time constants long counts as steady (Iss measured); shorter: extrapolated",
        minimum=1.0,
        maximum=50.0,
    ),
    Param(
        "drift_check",
        True,
        "",
        "measure a second spectrum under bias to see whether the interface is still changing",
        kind="bool",
    ),
    Param(
        "max_stderr",
        MAX_STDERR,
        "",
        "largest standard error of t+ reported as valid",
        minimum=1e-4,
        maximum=1.0,
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
    steady_taus: float
    drift_check: bool
    max_stderr: float
    rest: float


def plan(p: TransferenceValues, cell: Cell) -> Plan:
    dv = mv_to_v(p.dv)
    yield from rest(p.rest, label="OCV")
    before = yield from eis_sweep(p, label="EIS before")
    hold = yield from hold_voltage(dv, steady_limits(p, before), p.sample_period, label=f"ΔV {p.dv:g} mV")
    after = yield from eis_sweep(p, label="EIS after (under ΔV)", bias_V=dv)
    again = None
    if p.drift_check:
        again = yield from eis_sweep(p, label="EIS again (drift check)", bias_V=dv)
    return analyse_transference(p, before, hold, after, again)


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
    p: TransferenceValues,
    before: StepResult,
    hold: StepResult,
    after: StepResult,
    again: StepResult | None = None,
) -> dict[str, Any]:
    """t+ (Bruce–Vincent–Evans) from the two spectra and the current decay of the hold,
    with its standard error, the steadiness judged in units of the fitted τ, and a verdict."""
    dv = mv_to_v(p.dv)
    split0 = split_symmetric_spectrum(before.spectrum, r_leads_ohm=p.r_leads)
    split_ss = split_symmetric_spectrum(after.spectrum, r_leads_ohm=p.r_leads)
    t = hold.data["t"] - hold.t_start
    current = hold.data["I"]
    warnings: list[str] = []
    dIdt = steady_state_current(t, current)
    first = initial_current(t, current, convention="first_sample", t_step=0.0)
    try:
        fit: TransientFit | None = fit_transient(t, current)
    except ValueError as exc:
        fit = None
        warnings.append(f"transient fit failed ({exc}): tau unknown, steadiness judged by dI/dt alone")
    iss, iss_source = _steady_current(p, t, current, dIdt, fit, warnings)
    initial, i0 = _initial_current(p, t, current, fit, split0, dv, warnings)
    r_bulk0 = as_measured(split0.R_bulk_ohm, _widened(split0.stderr["R_bulk_ohm"]))
    r0 = _interface(split0, "before", warnings)
    rss = _interface(split_ss, "after", warnings)
    rss, drift = _drift_check(p, after, again, rss, hold.duration, warnings)
    cov_b0 = pair_covariance(r_bulk0.stderr, r0.stderr, _widened(split0.stderr["R_bulk_plus_interface_ohm"]))[0, 1]
    both_fitted = fit is not None and iss_source == "extrapolated" and p.i0 == "fitted"
    verdict = assess_t_plus(
        dv,
        R_bulk0=r_bulk0,
        R0=r0,
        R_bulk0_R0_cov=float(cov_b0),
        Rss=rss,
        I0=i0,
        Iss=iss,
        I0_Iss_cov=fit.cov[0][1] if both_fitted and fit is not None else 0.0,
        i0_ohmic=p.i0 == "ohmic",
        max_stderr=p.max_stderr,
    )
    steady = bool(fit.hold_over_tau >= p.steady_taus) if fit is not None else bool(dIdt.is_steady)
    warnings.extend(verdict.warnings)
    reason = "; ".join(r for r in (drift.get("reason", ""), verdict.reason) if r)
    if r_leads_source(p).startswith("none"):
        warnings.append("r_leads not known (0 ohm assumed): R_bulk includes the leads; run 'leads' on this channel")
    return {
        "t_plus": verdict.t_plus,
        "t_plus_stderr": verdict.t_plus_stderr,
        "valid": verdict.valid and not drift.get("reason"),
        "reason": reason,
        "warnings": warnings,
        "I0_A": i0.value,
        "I0_stderr_A": None if p.i0 == "ohmic" else i0.stderr,
        "I0_convention": p.i0,
        "I0_first_sample_A": first.I0_A,
        "Iss_A": iss.value,
        "Iss_stderr_A": iss.stderr,
        "Iss_source": iss_source,
        "Iss_end_window_A": dIdt.Iss_A,
        "R0_ohm": r0.value,
        "R0_stderr_ohm": r0.stderr,
        "Rss_ohm": rss.value,
        "Rss_stderr_ohm": rss.stderr,
        "R_bulk_before_ohm": split0.R_bulk_ohm,
        "R_bulk_before_stderr_ohm": r_bulk0.stderr,
        "R_bulk_after_ohm": split_ss.R_bulk_ohm,
        "r_leads_ohm": p.r_leads,
        "r_leads_source": r_leads_source(p),
        "delta_V": dv,
        "steady": steady,
        "tau_s": None if fit is None else fit.tau_s,
        "tau_stderr_s": None if fit is None else fit.tau_stderr_s,
        "hold_over_tau": None if fit is None else fit.hold_over_tau,
        "steady_dIdt": bool(dIdt.is_steady),
        "hold_end_reason": hold.end_reason.value,
        "hold_duration_s": hold.duration,
        "plausible": bool(0.0 < verdict.t_plus <= 1.0),
        "current_ratio": iss.value / i0.value,
        "drop_fraction_0": verdict.drop_fraction_0,
        "drop_fraction_ss": verdict.drop_fraction_ss,
        "stderr_contributions": verdict.contributions,
        "transient_fit": None if fit is None else fit.as_dict(),
        "drift_check": drift.get("details"),
        "conventions": {
            "formula": _FORMULA,
            "i0_convention": p.i0,
            "i0_details": initial,
            "Iss": _ISS_CONVENTIONS[iss_source],
            "steady": f"hold >= {p.steady_taus:g} tau of the fitted transient (tau = L^2/(pi^2 D)); "
            "dI/dt only ends the hold",
            "R0/Rss": "all series resistance except the electrolyte bulk: interfacial arc(s) + r_leads",
            "EIS after": "measured under the dV bias",
            "spectrum split": split0.conventions,
            "uncertainty": {
                **verdict.conventions,
                "EIS stderr": f"fit covariance x {EIS_STDERR_FACTOR:g} (model-error allowance)",
            },
            "dIdt_check": dIdt.conventions,
        },
        "I_final_A": float(np.asarray(current)[-1]) if len(current) else None,
    }


#: The EIS fits' standard errors assume the circuit exact and the noise white; on the
#: simulator the errors of R_int (Rss) over 16 noise draws had z-scores with a spread of
#: 1.4 (j0 = 0.01 mA/cm², interface 170× bulk), so they are widened by this factor
#: before propagation (recorded in the result's conventions).
EIS_STDERR_FACTOR = 2.0

_FORMULA = "t+ = Iss*(dV - I0*R0) / (I0*(dV - Iss*Rss))  [Evans, Vincent & Bruce, Polymer 28 (1987) 2324]"
_ISS_CONVENTIONS = {
    "measured": "mean of the end window (hold >= steady_taus tau); stderr = standard error of the mean "
    "combined with the fitted excess current still left there",
    "extrapolated": "Iss of the fitted transient (t -> infinity): the hold was shorter than steady_taus tau",
    "end window (unjudged)": "mean of the end window; tau unknown (transient fit failed)",
}


def _steady_current(
    p: TransferenceValues,
    t: np.ndarray,
    current: np.ndarray,
    dIdt: SteadyCurrent,
    fit: TransientFit | None,
    warnings: list[str],
) -> tuple[Measured, str]:
    """Iss measured at the end of a long enough hold, else extrapolated from the fit."""
    sel = np.asarray(t) >= dIdt.window_start_s
    window = np.asarray(current, dtype=float)[sel]
    sem = float(np.std(window, ddof=1) / np.sqrt(window.size)) if window.size > 1 else math.inf
    drift = abs(dIdt.rel_change * dIdt.Iss_A)  # the change of the straight line across the window
    if fit is None:
        return Measured(dIdt.Iss_A, float(np.hypot(sem, drift))), "end window (unjudged)"
    if fit.hold_over_tau >= p.steady_taus:
        mid = 0.5 * (dIdt.window_start_s + dIdt.window_end_s)
        excess = float(fit.current(np.array([mid]))[0]) - fit.Iss_A
        return Measured(dIdt.Iss_A, float(np.hypot(sem, excess))), "measured"
    warnings.append(
        f"hold was {fit.hold_over_tau:.2g} tau (< {p.steady_taus:g} tau, tau = {fit.tau_s:.4g} s): "
        f"Iss extrapolated from the fitted transient; the end-window current was still "
        f"{100 * fit.excess_at_end:.2g} % above it"
    )
    return Measured(fit.Iss_A, fit.Iss_stderr_A), "extrapolated"


def _initial_current(
    p: TransferenceValues,
    t: np.ndarray,
    current: np.ndarray,
    fit: TransientFit | None,
    split0: SymmetricSplit,
    dv: float,
    warnings: list[str],
) -> tuple[dict[str, Any], Measured]:
    if p.i0 == "ohmic":
        r = split0.R_bulk_ohm + split0.R_interface_ohm
        return {"I0": "dV/(R_bulk + R0) from the EIS before the hold"}, Measured(dv / r, 0.0)
    if p.i0 == "fitted":
        if fit is None:
            raise RuntimeError("i0=fitted needs the transient fit, which failed; use i0=ohmic")
        return {"I0": "t = 0 value of the fitted transient"}, Measured(fit.I0_A, fit.I0_stderr_A)
    initial = initial_current(t, current, convention=p.i0, t_step=0.0)
    noise = fit.residual_rms_A if fit is not None else math.inf
    se = float(initial.details.get("I0_stderr_A", noise))
    if p.i0 == "first_sample":
        # the first sample has already lost part of the decay: that bias is part of its error
        bias = abs(fit.I0_A - initial.I0_A) if fit is not None else math.inf
        se = float(np.hypot(se, bias))
        if fit is not None and bias > 0.01 * abs(fit.I0_A):
            warnings.append(
                f"I0 = first sample is {100 * bias / abs(fit.I0_A):.2g} % below the fitted t = 0 current: "
                "t+ is biased high (the difference is counted in its standard error)"
            )
    return dict(initial.details), Measured(initial.I0_A, se)


def _drift_check(
    p: TransferenceValues,
    after: StepResult,
    again: StepResult | None,
    rss: Measured,
    hold_s: float,
    warnings: list[str],
) -> tuple[Measured, dict[str, Any]]:
    """Rss from the spectrum after the hold, widened when a second spectrum shows it still moving.

    Bruce–Vincent–Evans assume the interface has stopped changing. Two spectra under the
    same bias, one sweep apart, tell: a change beyond 3σ (and 0.2 %) means it has not, so
    the result is invalid, and the further change Rss may still make, bounded by
    |rate| × hold duration (an exponential approach slower than the hold would have
    shown a larger rate), is added to its standard error.
    """
    if again is None:
        return rss, {}
    if again.spectrum is None or len(again.spectrum) < 5:
        warnings.append("drift check not measured (the second spectrum is missing): interface stability unknown")
        return rss, {}
    try:
        split2 = split_symmetric_spectrum(again.spectrum, r_leads_ohm=p.r_leads)
    except ValueError as exc:
        warnings.append(f"drift check spectrum could not be split ({exc}): interface stability unknown")
        return rss, {}
    r2 = _interface(split2, "of the drift check", [])
    change = r2.value - rss.value
    sigma = float(np.hypot(rss.stderr, r2.stderr))
    dt = float(again.t_start - after.t_start)
    details = {
        "Rss_again_ohm": r2.value,
        "Rss_again_stderr_ohm": r2.stderr,
        "interval_s": dt,
        "change_ohm": change,
        "threshold": "|change| > 3 stderr and > 0.2 % of Rss",
    }
    if not (abs(change) > 3.0 * sigma and abs(change) > 0.002 * abs(rss.value)) or dt <= 0:
        return rss, {"details": details}
    remaining = abs(change) / dt * hold_s
    details["rate_ohm_per_s"] = change / dt
    details["possible_further_change_ohm"] = remaining
    reason = (
        f"interface still changing under bias: Rss {rss.value:.4g} -> {r2.value:.4g} ohm in {dt:.3g} s, so the "
        f"steady state the formula assumes was not reached (a further {remaining:.3g} ohm is counted in the "
        "standard error)"
    )
    return Measured(rss.value, float(np.hypot(rss.stderr, remaining))), {"details": details, "reason": reason}


def _widened(stderr: float | None) -> float | None:
    return None if stderr is None else EIS_STDERR_FACTOR * stderr


def _interface(split: SymmetricSplit, when: str, warnings: list[str]) -> Measured:
    se = _widened(split.stderr["R_interface_ohm"])
    if se is None and not split.interface_detected:
        warnings.append(
            f"no interfacial arc resolved in the spectrum {when} the hold: R_interface = series resistance, "
            "its error taken as 0"
        )
        se = 0.0
    return as_measured(split.R_interface_ohm, se)


def demands(p: TransferenceValues, cell: Cell) -> list[Demand]:
    return [Demand("voltage", mv_to_v(p.dv), "dv", "relative to OCV")]


PROTOCOL = Protocol(
    name="transference",
    version="1.1",
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
