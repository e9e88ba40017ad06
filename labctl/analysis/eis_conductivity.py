"""Ionic conductivity from one impedance spectrum of a blocking cell.

The fit's robust quantity is R_total: the real-axis resistance where the
electrolyte arcs end and the blocking spike begins. When the bulk arc lies
above the highest measured frequency (thin, conductive membranes) only that
intercept is visible, so the bulk resistance is R_total − R_leads with R_leads
measured separately on a shorted cell; when the arc is resolved, the fitted
series resistance is reported beside it as a check on R_leads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from labctl.analysis.conductivity import bulk_resistance, conductivity
from labctl.analysis.impedance import EisFit, fit_spectrum

#: Protocol circuit names -> fitter circuit names.
_CIRCUITS = {"auto": "auto", "blocking": "blocking", "blocking_gb": "pellet"}


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sigma_from_resistance(resistance_ohm: float, thickness_um: float, area_cm2: float) -> float:
    """σ = L/(R·A) in S/cm with L in µm and A in cm² (the protocols' units)."""
    return float(conductivity(resistance_ohm, thickness_um, area_cm2, thickness_unit="um"))


def conductivity_from_spectrum(
    freq: np.ndarray,
    z: np.ndarray,
    *,
    thickness_um: float,
    area_cm2: float,
    r_leads_ohm: float = 0.0,
    circuit: str = "auto",
) -> ConductivityResult:
    """Fit the spectrum and turn it into σ, recording how."""
    if circuit not in _CIRCUITS:
        raise ValueError(f"circuit must be one of {', '.join(_CIRCUITS)}, got {circuit!r}")
    # "auto" also weighs a second (grain-boundary) arc: R_total includes every
    # electrolyte arc either way, and pellets get their bulk/gb split.
    fit: EisFit = fit_spectrum(
        np.asarray(freq), np.asarray(z), circuit=_CIRCUITS[circuit], n_arcs="auto" if circuit == "auto" else 1
    )
    r_bulk = bulk_resistance(fit.R_total, r_leads_ohm)
    return ConductivityResult(
        R_bulk_ohm=r_bulk,
        sigma_S_cm=sigma_from_resistance(r_bulk, thickness_um, area_cm2),
        R_total_ohm=fit.R_total,
        r_leads_ohm=r_leads_ohm,
        R_series_fit_ohm=fit.R_series,
        R_bulk_fit_ohm=fit.R_bulk_fit,
        R_gb_ohm=fit.R_gb_fit,
        R_bulk_arc_ohm=fit.params.get("R1"),
        R_bulk_arc_rel_err=(fit.stderr.get("R1", float("nan")) / fit.params["R1"]) if "R1" in fit.params else None,
        arc_resolved=fit.arc_resolved,
        apex_frequency_Hz=fit.apex_frequency,
        fit_rel_rms=fit.rel_rms,
        circuit=fit.model,
        thickness_um=thickness_um,
        area_cm2=area_cm2,
        fit_params=dict(fit.params),
        conventions={
            **fit.conventions,
            "sigma": "L/(R_b*A), R_b = R_total - r_leads",
            "R_total": "series + all electrolyte arcs (low-frequency end of the arcs)",
        },
    )
