"""Ionic conductivity from one impedance spectrum of a blocking cell, with what it cannot know.

The fit's robust quantity is R_total: the real-axis resistance where the electrolyte arcs end
and the electrode features begin. Which arcs are electrolyte is decided by their effective
capacitance normalised by the geometry (:mod:`labctl.analysis.impedance.labels`): a µF arc
is an electrode process and never counted. With electronic leakage (a resistor R_e across the
blocking branch) the ionic resistance is taken from the arcs and σ_e = L/(R_e·A) is reported
beside it. When the bulk arc lies above the highest measured frequency (thin, conductive
membranes) only the intercept is visible, so R_b = R_total − R_leads needs R_leads measured
on a shorted cell; without it the result says so and its uncertainty covers typical leads.

Every result carries σ's standard error (fit covariance, plus geometry and leads when
known/unknown), the circuit with each element's physical label, ``warnings`` and ``valid``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from labctl.analysis.conductivity import conductivity
from labctl.analysis.impedance import EisFit, arc_apex_frequency, fit_spectrum
from labctl.analysis.impedance.labels import BULK, ELECTRODE, GRAIN_BOUNDARY, ArcLabel, label_arc

#: Protocol circuit names -> fitter circuit names.
_CIRCUITS = {"auto": "auto", "blocking": "blocking", "blocking_gb": "pellet"}

#: Standard uncertainty assumed for unmeasured leads + contacts when the bulk arc is above the
#: band: cables, clips and cell-holder contacts of a conductivity cell are 0.1–1 Ω, so an
#: assumed 0 is off by up to ~1 Ω (2 sigma).
R_LEADS_UNKNOWN_SE_OHM = 0.5
#: σ counts as undetermined when its relative standard error exceeds this.
SIGMA_MAX_REL_SE = 0.5
#: A fit whose rms relative residual exceeds this does not describe the spectrum.
POOR_FIT_REL_RMS = 0.05


@dataclass(frozen=True)
class ConductivityResult:
    R_bulk_ohm: float
    sigma_S_cm: float
    R_total_ohm: float
    r_leads_ohm: float
    R_series_fit_ohm: float
    R_bulk_fit_ohm: float | None
    R_gb_ohm: float | None
    #: The fitted bulk-arc resistance R1 even when the arc is only partly in
    #: band (pellets), with its relative standard error; None without an arc.
    R_bulk_arc_ohm: float | None
    R_bulk_arc_rel_err: float | None
    arc_resolved: bool
    apex_frequency_Hz: float | None
    fit_rel_rms: float
    circuit: str
    thickness_um: float
    area_cm2: float
    fit_params: dict[str, float] = field(default_factory=dict)
    conventions: dict[str, Any] = field(default_factory=dict)
    #: Standard errors of R_b and σ (fit covariance, geometry, unmeasured leads).
    R_bulk_stderr_ohm: float = math.nan
    sigma_stderr_S_cm: float = math.nan
    #: σ of the bulk arc alone (pellets whose grain-boundary arc is resolved), with its SE.
    sigma_bulk_S_cm: float | None = None
    sigma_bulk_stderr_S_cm: float | None = None
    #: Electronic conductivity from a leakage resistor across the blocking branch (fitted, or
    #: the leakage reading of a spectrum that closes after a µF arc, with σ_ion under it).
    sigma_e_S_cm: float | None = None
    sigma_if_leakage_S_cm: float | None = None
    #: The circuit with each element's physical label, e.g. R0[series]-p(R1,CPE1)[bulk]-CPEdl[electrode].
    circuit_labelled: str = ""
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    valid: bool = True
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return {k: clean(v) for k, v in asdict(self).items()}


def sigma_from_resistance(resistance_ohm: float, thickness_um: float, area_cm2: float) -> float:
    """σ = L/(R·A) in S/cm with L in µm and A in cm² (the protocols' units)."""
    return float(conductivity(resistance_ohm, thickness_um, area_cm2, thickness_unit="um"))


def _rel(se: float | None, value: float) -> float:
    return 0.0 if not se else se / value


def conductivity_from_spectrum(
    freq: np.ndarray,
    z: np.ndarray,
    *,
    thickness_um: float,
    area_cm2: float,
    r_leads_ohm: float = 0.0,
    circuit: str = "auto",
    thickness_stderr_um: float = 0.0,
    area_stderr_cm2: float = 0.0,
) -> ConductivityResult:
    """Fit the spectrum and turn it into σ with its standard error, labels and warnings."""
    if circuit not in _CIRCUITS:
        raise ValueError(f"circuit must be one of {', '.join(_CIRCUITS)}, got {circuit!r}")
    fit: EisFit = fit_spectrum(
        np.asarray(freq), np.asarray(z), circuit=_CIRCUITS[circuit], n_arcs="auto" if circuit == "auto" else 1
    )
    model_se, note = _closure_spread(fit, np.asarray(freq), np.asarray(z))
    res = assemble(fit, thickness_um, area_cm2, r_leads_ohm, thickness_stderr_um, area_stderr_cm2, model_se)
    return replace(res, warnings=(*res.warnings, note)) if note else res


#: The spike counts as barely in band when its impedance at f_min is below this fraction of
#: R_total: then where the last arc closes and where the spike starts are hard to separate.
WEAK_SPIKE_FRACTION = 0.1


def _closure_spread(fit: EisFit, freq: np.ndarray, z: np.ndarray) -> tuple[float, str | None]:
    """A model term for R_total when the blocking spike is barely inside the band.

    Then the last arc's low-frequency closure and the spike trade off non-linearly (seen:
    n_dl 0.73 for a true 0.9, R_total 2.8 % low at 2.6 linearised SEs). The same arcs fitted
    without the spike describe such a spectrum about as well; half the difference of the two
    R_total is added (in quadrature) to R_total's standard error."""
    spec, p = fit.spec, fit.params
    if not spec.spike or spec.n_arcs == 0 or spec.leakage:
        return 0.0, None
    z_dl = 1.0 / (p["Qdl"] * (2 * math.pi * fit.f_min) ** p["ndl"])
    if z_dl >= WEAK_SPIKE_FRACTION * fit.R_total:
        return 0.0, None
    alt = fit_spectrum(freq, z, circuit="pellet-rc" if spec.n_arcs == 2 else "rc", inductance=spec.inductance)
    if alt.rel_rms > 1.5 * fit.rel_rms:
        return 0.0, None
    spread = abs(alt.R_total - fit.R_total) / 2.0
    if spread <= fit.R_total_stderr:
        return spread, None
    return spread, (
        f"the blocking spike is barely inside the band: R_total depends on how the last arc closes "
        f"(+- {spread / fit.R_total:.1%}, included in the uncertainty); extend the sweep to lower frequency"
    )


def assemble(
    fit: EisFit,
    thickness_um: float,
    area_cm2: float,
    r_leads_ohm: float = 0.0,
    thickness_stderr_um: float = 0.0,
    area_stderr_cm2: float = 0.0,
    model_se_ohm: float = 0.0,
) -> ConductivityResult:
    """σ, its uncertainty, labels and warnings from a fitted spectrum (``model_se_ohm``: a
    model term for R_total, see :func:`_closure_spread`)."""
    p, spec = fit.params, fit.spec
    warnings: list[str] = []
    arcs = [str(i) for i in range(1, spec.n_arcs + 1)]
    labels = {a: label_arc(a, p[f"R{a}"], p[f"Q{a}"], p[f"n{a}"], thickness_um, area_cm2) for a in arcs}
    if (
        spec.n_arcs == 2
        and labels["1"].label == BULK
        and labels["2"].electrolyte
        and labels["2"].c_eff_F > labels["1"].c_eff_F
    ):
        # brick layer: the slower electrolyte arc with the larger capacitance is the grain
        # boundary (C_gb/C_b ~ grain size / boundary thickness > 1) even when its εr would pass for bulk
        labels["2"] = replace(labels["2"], label=GRAIN_BOUNDARY)
    electrolyte = [a for a in arcs if labels[a].electrolyte]
    if spec.randles:
        labels["ct"] = label_arc("ct", p["Rct"], p["Qct"], p["nct"], thickness_um, area_cm2)
        warnings.append(
            f"faradaic electrode (Randles): R_ct = {p['Rct']:.4g} ohm with its diffusion, "
            f"C_dl {labels['ct'].c_eff_F:.3g} F; the electrolyte is R0 alone"
        )
    for a in arcs:
        if not labels[a].electrolyte:
            warnings.append(
                f"arc R{a} ({p[f'R{a}']:.4g} ohm, C_eff {labels[a].c_eff_F:.3g} F = "
                f"{labels[a].c_per_area_F_cm2:.3g} F/cm2) is an electrode process: not counted as electrolyte"
            )
    leak = "Re" in p
    names = ["R0", *[f"R{a}" for a in electrolyte]]
    r_total = sum(p[k] for k in names)
    r_total_se = fit.stderr_of_sum(names) if electrolyte else fit.stderr.get("R0", math.nan)
    if not math.isfinite(r_total_se) and not electrolyte:
        r_total_se = fit.R_total_stderr
    if electrolyte == arcs:
        r_total_se = max(r_total_se, fit.R_total_stderr) if math.isfinite(fit.R_total_stderr) else r_total_se

    bulk_in_band = bool(electrolyte) and electrolyte[0] == "1" and _in_band(fit, "1")
    lead_se = 0.0
    if r_leads_ohm == 0.0 and not bulk_in_band:
        lead_se = R_LEADS_UNKNOWN_SE_OHM
        warnings.append(
            "bulk arc above the band: sigma includes the leads; measure them (labctl run leads) or "
            f"pass -p r_leads (uncertainty includes {R_LEADS_UNKNOWN_SE_OHM:g} ohm for unmeasured leads)"
        )
    elif r_leads_ohm == 0.0 and p["R0"] > 0.02 * r_total and p["R0"] > 3 * fit.stderr.get("R0", 0.0):
        warnings.append(
            f"R_total includes the fitted series resistance R0 = {p['R0']:.4g} ohm; if that is leads and "
            f"contacts pass -p r_leads (sigma of the arcs alone: "
            f"{sigma_from_resistance(r_total - p['R0'], thickness_um, area_cm2):.4g} S/cm)"
        )
    r_total_se = math.hypot(r_total_se, model_se_ohm)
    r_b = r_total - r_leads_ohm
    fit_rel = (r_total_se / r_b) if math.isfinite(r_total_se) and r_b > 0 else math.inf
    # unmeasured leads only ever make R_total too large; an error of up to 2·lead_se in R
    # is an error of σ·2·lead_se/(R − 2·lead_se) in σ, so that relative SE makes 2 sigma cover it
    lead_rel = 0.0
    if lead_se:
        lead_rel = lead_se / (r_b - 2 * lead_se) if r_b > 2 * lead_se else math.inf
    valid, reason = True, None
    if r_b <= 0:
        valid, reason = (
            False,
            (
                f"R_total ({r_total:.4g} ohm) does not exceed the lead resistance ({r_leads_ohm:.4g} ohm): "
                "the electrolyte resistance is not resolved"
            ),
        )
        r_b = math.nan
    geom_rel = math.hypot(_rel(thickness_stderr_um, thickness_um), _rel(area_stderr_cm2, area_cm2))
    rel = math.hypot(fit_rel, lead_rel, geom_rel)
    r_b_se = r_b * math.hypot(fit_rel, lead_rel) if valid else math.nan
    sigma = sigma_from_resistance(r_b, thickness_um, area_cm2) if valid else math.nan
    sigma_se = sigma * rel if valid else math.nan
    if valid and not rel < SIGMA_MAX_REL_SE:
        valid, reason = (
            False,
            (
                f"sigma not determined: relative standard error {rel:.0%} (R_b = {r_b:.4g} ohm)"
                + ("; R_b is comparable with unmeasured leads: measure them (labctl run leads)" if lead_se else "")
            ),
        )
    electrode_arcs = [a for a in arcs if not labels[a].electrolyte]
    sigma_leak = sigma_e = None
    spike_seen = spec.spike and fit.stderr.get("Qdl", math.inf) < 0.5 * p["Qdl"]
    if valid and electrode_arcs and not spike_seen:
        # the spectrum closes to the real axis after a µF arc: a faradaic electrode process
        # (the reading above) or electronic leakage R_e across the blocking double layer. For
        # ideal elements both circuits give the same Z(f), so the spectrum cannot decide:
        # under leakage Re = R_b + electrode arcs and the ionic R_b' = 1/(1/R_b − 1/Re).
        r_e = r_b + sum(p[f"R{a}"] for a in electrode_arcs)
        r_ion = 1.0 / (1.0 / r_b - 1.0 / r_e)
        sigma_leak = sigma_from_resistance(r_ion, thickness_um, area_cm2)
        sigma_e = sigma_from_resistance(r_e, thickness_um, area_cm2)
        sigma_se = math.hypot(sigma_se, sigma - sigma_leak)
        warnings.append(
            "the low-frequency arc closes to the real axis: a faradaic electrode process (sigma as reported) or "
            f"electronic leakage across blocking electrodes (then sigma_ion = {sigma_leak:.4g} S/cm and "
            f"sigma_e = {sigma_e:.3g} S/cm); the spectrum cannot tell them apart (a DC polarisation can). "
            "The uncertainty covers both"
        )
    if fit.rel_rms > POOR_FIT_REL_RMS:
        warnings.append(
            f"poor fit: rms relative residual {fit.rel_rms:.1%}; the circuit does not describe the spectrum"
        )

    sigma_bulk = sigma_bulk_se = None
    r_gb = None
    if len(electrolyte) == 2 and labels["1"].label == BULK and labels["2"].label == GRAIN_BOUNDARY:
        r_gb = p["R2"]
        r1, r1_se = p["R1"], fit.stderr.get("R1", math.nan)
        sigma_bulk = sigma_from_resistance(r1, thickness_um, area_cm2)
        sigma_bulk_se = sigma_bulk * math.hypot(r1_se / r1, geom_rel)
    elif len(electrolyte) == 2:
        r_gb = p["R2"]
        warnings.append(
            "two electrolyte arcs whose capacitances do not read as bulk + grain boundary "
            f"(eps_r {labels['1'].eps_r:.3g} and {labels['2'].eps_r:.3g}): only the total is reported"
        )
    elif spec.n_arcs == 1 and electrolyte and labels["1"].label != BULK and bulk_in_band:
        warnings.append(
            f"the electrolyte arc's capacitance implies eps_r = {labels['1'].eps_r:.3g} for this geometry "
            "(a bulk arc has 1-1000): check thickness and area, or this is not a bulk arc"
        )
    if leak:
        sigma_e = sigma_from_resistance(p["Re"], thickness_um, area_cm2)
        warnings.append(
            f"electronic leakage: R_e = {p['Re']:.4g} ohm (sigma_e = {sigma_e:.3g} S/cm) in parallel with the "
            "blocking branch; sigma is the ionic conductivity"
        )

    return ConductivityResult(
        R_bulk_ohm=r_b,
        sigma_S_cm=sigma,
        R_total_ohm=r_total,
        r_leads_ohm=r_leads_ohm,
        R_series_fit_ohm=fit.R_series,
        R_bulk_fit_ohm=fit.R_bulk_fit,
        R_gb_ohm=r_gb,
        R_bulk_arc_ohm=p.get("R1") if "1" in electrolyte else None,
        R_bulk_arc_rel_err=(fit.stderr.get("R1", math.nan) / p["R1"]) if "1" in electrolyte else None,
        arc_resolved=fit.arc_resolved,
        apex_frequency_Hz=fit.apex_frequency,
        fit_rel_rms=fit.rel_rms,
        circuit=fit.model,
        thickness_um=thickness_um,
        area_cm2=area_cm2,
        fit_params=dict(p),
        conventions={
            **fit.conventions,
            "sigma": "L/(R_b*A), R_b = R0 + electrolyte arcs - r_leads (total ionic conductivity)",
            "sigma_bulk": "L/(R1*A) when the arcs read as bulk + grain boundary",
            "R_total": "series + electrolyte arcs (arcs labelled electrode excluded)",
            "labels": "by C_eff = Q^(1/n) R^(1/n-1) (Brug): electrode if C_eff/A >= 1e-6 F/cm2, bulk if "
            "eps_r = C_eff*L/(eps0*A) in 1..1000, grain boundary if larger",
            "stderr": "1 sigma: fit covariance (s^2 (J^T J)^-1), geometry SEs if given, "
            f"{R_LEADS_UNKNOWN_SE_OHM:g} ohm for unmeasured leads when the bulk arc is above the band",
        },
        R_bulk_stderr_ohm=r_b_se,
        sigma_stderr_S_cm=sigma_se,
        sigma_bulk_S_cm=sigma_bulk,
        sigma_bulk_stderr_S_cm=sigma_bulk_se,
        sigma_e_S_cm=sigma_e,
        sigma_if_leakage_S_cm=sigma_leak,
        circuit_labelled=_labelled(fit, labels),
        labels={a: {"label": lab.label, "C_eff_F": lab.c_eff_F, "eps_r": lab.eps_r} for a, lab in labels.items()},
        warnings=tuple(warnings),
        valid=valid,
        reason=reason,
    )


def _in_band(fit: EisFit, arc: str) -> bool:
    """The arc peaks inside the band (to 3 f_max) and its R is known to 50 %: then the fitted
    R0 in front of it is the series (lead) resistance, not part of the electrolyte."""
    p, se = fit.params, fit.stderr.get(f"R{arc}", math.nan)
    apex = arc_apex_frequency(p[f"R{arc}"], p[f"Q{arc}"], p[f"n{arc}"])
    return bool(fit.f_min <= apex <= 3.0 * fit.f_max and math.isfinite(se) and se < 0.5 * p[f"R{arc}"])


def _labelled(fit: EisFit, labels: dict[str, ArcLabel]) -> str:
    parts = ["L[leads]"] if fit.spec.inductance else []
    parts.append("R0[series]")
    inner = [f"p(R{a},CPE{a})[{labels[a].label}]" for a in labels if a != "ct"]
    if fit.spec.randles:
        inner.append(f"p(CPEct,Rct-CPEw)[{ELECTRODE}]")
    if fit.spec.spike:
        inner.append(f"CPEdl[{ELECTRODE}]")
    if "Re" in fit.params:
        return "-".join(parts) + f"-p(Re[electronic],{'-'.join(inner)})"
    return "-".join(parts + inner)
