"""Bulk / interface / diffusion split of a symmetric Li|SE|Li impedance spectrum.

The Bruce–Vincent–Evans transference number (Evans, Vincent & Bruce, Polymer 28 (1987)
2324; :mod:`labctl.analysis.transference`) needs R0 and Rss, the *interfacial* resistances
before and after the DC polarisation: everything in series with the electrolyte bulk that
also carries the DC current, but not the concentration-polarisation (diffusion) resistance,
which is what the polarisation itself measures. A Li|SE|Li spectrum is

    Z = jωL + R_s + R_b‖CPE_b + R_int‖CPE_int + R_D·tanh(√(jωτ_D))/√(jωτ_D)

(DESIGN §5; finite-length transmissive Warburg: Barsoukov & Macdonald, Impedance
Spectroscopy, 2nd ed., Wiley 2005; its origin in a cell with reversible electrodes and no
supporting salt: Franceschetti, Macdonald & Buck, J. Electrochem. Soc. 138 (1991) 1368).
It is fitted with :func:`labctl.analysis.impedance.fit_spectrum` (``circuit="li_li"``: the
circuit with and without the bulk arc, and without the Warburg when R_D is not determined,
chosen by BIC) and split here:

- ``R_bulk_ohm``: the electrolyte. With the bulk arc resolved, its diameter R1; otherwise
  (arc above the band, the usual case at 100 kHz) the high-frequency intercept R0 (+ R1)
  minus the lead resistance measured on a shorted cell (``r_leads_ohm``).
- ``R_interface_ohm``: R_int plus the series resistance that is not electrolyte: R0 when the
  bulk arc is resolved (R0 is then leads + contacts), ``r_leads_ohm`` otherwise. This is
  Bruce–Vincent–Evans' R0 / Rss: with I0 = ΔV/(R_bulk + R_interface) and
  Iss = ΔV/(R_bulk/t+ + R_interface) their formula returns t+ exactly.
- ``R_diffusion_ohm`` and ``tau_D_s``: the Warburg's R_D and τ_D when its low-frequency
  turnover is inside the band (R_D known to 5 %), None otherwise (a semi-infinite 45° line
  fixes only R_D/√τ_D).
- ``R_dc_ohm``: R_bulk + R_interface + R_D as fitted when the diffusion is resolved, else the
  real part of Z at the lowest measured frequency (a lower bound). Only for estimating the
  steady-state current of a polarisation, never for t+.

Arcs are told apart by effective capacitance (Brug et al., J. Electroanal. Chem. 176 (1984)
275): geometric (bulk, also a grain-boundary arc: both are electrolyte resistance) below
``bulk_capacitance_max_F``, interfacial above (Irvine, Sinclair & West, Adv. Mater. 2 (1990)
132), so that a resistive electrolyte whose bulk arc sits in the band next to a small
interface is not mistaken for it. An arc peaking above the highest measured frequency
counts as electrolyte whatever its fitted capacitance, which only its foot determines.

Pure numpy: no file or instrument access (DESIGN §1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labctl.analysis.impedance import (
    GEOMETRIC_CAPACITANCE_MAX_F,
    EisFit,
    arc_apex_frequency,
    effective_capacitance,
    fit_spectrum,
)
from labctl.jsonable import to_jsonable

__all__ = ["SymmetricSplit", "split_fit", "split_symmetric", "split_symmetric_spectrum"]


@dataclass(frozen=True)
class SymmetricSplit:
    """Resistances of a symmetric Li|SE|Li cell from one impedance spectrum (Ω, s).

    ``stderr`` holds the standard errors (correlations included) of ``R_bulk_ohm``,
    ``R_interface_ohm``, their sum and ``R_diffusion_ohm``; ``r_leads_ohm`` is assumed
    exact. ``interface_detected`` is False when the circuit BIC chose has no interfacial arc
    (it is below the noise next to a large bulk resistance): ``R_interface_ohm`` is then the
    series resistance alone and its standard error None; for t+ such an interface matters
    little, its share of the cell resistance being below the noise too.

    ``t_plus_from_impedance`` = R_bulk/(R_bulk + R_D) is the impedance-only estimate that
    follows from R_D = R_b(1 − t+)/t+ (ideal binary electrolyte; None unless the diffusion
    is resolved); it is a cross-check, not a replacement for the polarisation.
    """

    R_bulk_ohm: float
    R_interface_ohm: float
    R_diffusion_ohm: float | None
    R_dc_ohm: float
    tau_D_s: float | None
    bulk_arc_resolved: bool
    interface_detected: bool
    diffusion_resolved: bool
    r_leads_ohm: float
    t_plus_from_impedance: float | None
    stderr: dict[str, float | None]
    fit: dict[str, Any]
    conventions: dict[str, Any] = field(default_factory=dict)

    @property
    def R_bulk_plus_interface_ohm(self) -> float:
        """R_bulk + R_interface: the resistance a DC step sees before any concentration
        gradient builds up (ΔV/I0 in Bruce–Vincent–Evans)."""
        return self.R_bulk_ohm + self.R_interface_ohm

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def split_symmetric_spectrum(
    spectrum: np.ndarray,
    r_leads_ohm: float = 0.0,
    *,
    inductance: bool | Literal["auto"] = "auto",
    freq_range: tuple[float, float] | None = None,
    bulk_capacitance_max_F: float = GEOMETRIC_CAPACITANCE_MAX_F,
) -> SymmetricSplit:
    """:func:`split_symmetric` of a structured spectrum with fields ``freq``, ``z_re``, ``z_im``
    (:data:`labctl.steps.SPECTRUM_DTYPE`, as an Impedance step returns it)."""
    names = spectrum.dtype.names or ()
    missing = [k for k in ("freq", "z_re", "z_im") if k not in names]
    if missing:
        raise ValueError(f"spectrum lacks the field(s) {missing}; it has {list(names)}")
    z = np.asarray(spectrum["z_re"], dtype=float) + 1j * np.asarray(spectrum["z_im"], dtype=float)
    return split_symmetric(
        spectrum["freq"],
        z,
        r_leads_ohm,
        inductance=inductance,
        freq_range=freq_range,
        bulk_capacitance_max_F=bulk_capacitance_max_F,
    )


def split_symmetric(
    freq: np.ndarray,
    z: np.ndarray,
    r_leads_ohm: float = 0.0,
    *,
    inductance: bool | Literal["auto"] = "auto",
    freq_range: tuple[float, float] | None = None,
    bulk_capacitance_max_F: float = GEOMETRIC_CAPACITANCE_MAX_F,
) -> SymmetricSplit:
    """Fit a Li|SE|Li spectrum (``freq`` Hz, complex ``z`` Ω, Z'' < 0 capacitive) and split it
    into bulk, interface and diffusion resistances.

    ``r_leads_ohm``: resistance of leads and fixture (measure it on a shorted cell); it is
    moved from the high-frequency intercept to the interface side when the bulk arc is not
    resolved. Raises ValueError when it exceeds that intercept.
    """
    if not (math.isfinite(r_leads_ohm) and r_leads_ohm >= 0):
        raise ValueError(f"r_leads_ohm must be finite and >= 0, got {r_leads_ohm!r}")
    fit = fit_spectrum(freq, z, circuit="li_li", inductance=inductance, freq_range=freq_range)
    return split_fit(fit, freq, z, r_leads_ohm, bulk_capacitance_max_F=bulk_capacitance_max_F)


def split_fit(
    fit: EisFit,
    freq: np.ndarray,
    z: np.ndarray,
    r_leads_ohm: float = 0.0,
    *,
    bulk_capacitance_max_F: float = GEOMETRIC_CAPACITANCE_MAX_F,
) -> SymmetricSplit:
    """The split of an existing ``li_li`` fit (``freq``/``z``: the spectrum it was fitted
    to, for the low-frequency real part when the diffusion is not resolved)."""
    if fit.spec.spike:
        raise ValueError(f"not a Li|Li fit (circuit {fit.model}); use fit_spectrum(..., circuit='li_li')")
    p = fit.params
    bulk, interface, c_eff = _classify_arcs(fit, bulk_capacitance_max_F)

    # R1 is the only arc arc_resolved speaks about; it must also be geometric
    resolved = bool(fit.arc_resolved and bulk == ["R1"])
    if resolved:
        r_bulk = p["R1"]
        bulk_terms, iface_terms = ["R1"], ["R0", *interface]
        r_iface = p["R0"] + sum(p[k] for k in interface)
    else:
        r_bulk = p["R0"] + sum(p[k] for k in bulk) - r_leads_ohm
        bulk_terms, iface_terms = ["R0", *bulk], list(interface)
        r_iface = sum(p[k] for k in interface) + r_leads_ohm
        if r_bulk <= 0:
            raise ValueError(
                f"r_leads_ohm ({r_leads_ohm:.4g} ohm) is not below the high-frequency intercept "
                f"({r_bulk + r_leads_ohm:.4g} ohm): the bulk resistance would be <= 0"
            )

    diffusion = bool(fit.diffusion_resolved)
    r_d = p["RD"] if diffusion else None
    r_dc = r_bulk + r_iface + p["RD"] if diffusion else _lowest_frequency_resistance(freq, z)

    def se(terms: list[str]) -> float | None:
        v = fit.stderr_of_sum(terms) if terms else 0.0
        return v if math.isfinite(v) else None

    stderr = {
        "R_bulk_ohm": se(bulk_terms),
        # without an interfacial arc in the circuit its size is below the noise, not known
        "R_interface_ohm": se(iface_terms) if interface else None,
        "R_bulk_plus_interface_ohm": se(sorted({*bulk_terms, *iface_terms})),
        "R_diffusion_ohm": se(["RD"]) if diffusion else None,
    }
    conventions = _split_conventions(resolved, diffusion, bulk_capacitance_max_F, c_eff)
    t_imp = r_bulk / (r_bulk + p["RD"]) if diffusion else None
    return SymmetricSplit(
        R_bulk_ohm=float(r_bulk),
        R_interface_ohm=float(r_iface),
        R_diffusion_ohm=None if r_d is None else float(r_d),
        R_dc_ohm=float(r_dc),
        tau_D_s=float(p["tauD"]) if diffusion else None,
        bulk_arc_resolved=resolved,
        interface_detected=bool(interface),
        diffusion_resolved=diffusion,
        r_leads_ohm=float(r_leads_ohm),
        t_plus_from_impedance=None if t_imp is None else float(t_imp),
        stderr=stderr,
        fit=fit.as_dict(),
        conventions=conventions,
    )


def _classify_arcs(fit: EisFit, bulk_capacitance_max_F: float) -> tuple[list[str], list[str], dict[str, float]]:
    """The arcs' resistances named as electrolyte (bulk) or interface, and their capacitances.

    An arc peaking above f_max is electrolyte whatever its fitted capacitance: only its
    low-frequency foot is measured, and that fixes R·C poorly (a bulk arc cut off by f_max
    comes out with C ten times too large); interfacial arcs are the slow ones.
    """
    p = fit.params
    bulk: list[str] = []
    interface: list[str] = []
    c_eff: dict[str, float] = {}
    for a in fit.spec.arc_labels:
        c_eff[a] = effective_capacitance(p[f"R{a}"], p[f"Q{a}"], p[f"n{a}"])
        above_band = arc_apex_frequency(p[f"R{a}"], p[f"Q{a}"], p[f"n{a}"]) > fit.f_max
        geometric = c_eff[a] < bulk_capacitance_max_F or above_band
        (bulk if geometric else interface).append(f"R{a}")
    return bulk, interface, c_eff


def _lowest_frequency_resistance(freq: np.ndarray, z: np.ndarray) -> float:
    """Re Z at the lowest measured frequency: R_dc's lower bound when the diffusion is not resolved."""
    freq_arr = np.asarray(freq, dtype=float).ravel()
    z_arr = np.asarray(z, dtype=complex).ravel()
    ok = np.isfinite(freq_arr) & np.isfinite(z_arr) & (freq_arr > 0)
    return float(z_arr[ok][np.argmin(freq_arr[ok])].real)


def _split_conventions(
    resolved: bool, diffusion: bool, bulk_capacitance_max_F: float, c_eff: dict[str, float]
) -> dict[str, Any]:
    """How each number of a :class:`SymmetricSplit` was obtained (stored with the result)."""
    return {
        "circuit": "[L]-R0-[p(R1,CPE1)]-p(Rint,CPEint)-Ws, fitted with impedance.fit_spectrum(circuit='li_li')",
        "warburg": "finite-length transmissive: R_D*tanh(sqrt(j*omega*tau_D))/sqrt(j*omega*tau_D) "
        "[Barsoukov & Macdonald, Impedance Spectroscopy, 2nd ed., 2005]",
        "R_bulk": "R1 (bulk arc resolved)"
        if resolved
        else "high-frequency intercept R0 (+ unresolved bulk arc) - r_leads",
        "R_interface": "R0 + interfacial arc(s) (bulk arc resolved)" if resolved else "interfacial arc(s) + r_leads",
        "R_interface_use": "Bruce-Vincent-Evans R0 (before) / Rss (after polarisation) "
        "[Evans, Vincent & Bruce, Polymer 28 (1987) 2324]",
        "arc_classification": "electrolyte (bulk, grain boundary) if the effective capacitance "
        f"Q^(1/n)*R^(1/n-1) is < {bulk_capacitance_max_F:g} F [Irvine, Sinclair & West, Adv. Mater. 2 (1990) 132] "
        "or the arc peaks above f_max; interfacial otherwise",
        "effective_capacitance_F": c_eff,
        "R_dc": "R_bulk + R_interface + R_D (fit)"
        if diffusion
        else "Re Z at the lowest measured frequency (diffusion not resolved: a lower bound)",
        "diffusion_resolved": "stderr(R_D) < 5 % of R_D (the Warburg's turnover to the real axis is in band)",
        "tau_D": "the Warburg's tau_D; for a symmetric cell of thickness L the salt profile is antisymmetric, "
        "so tau_D = (L/2)^2/D = L^2/(4D), and the DC-polarisation decay time L^2/(pi^2 D) = 4 tau_D/pi^2",
        "t_plus_from_impedance": "R_bulk/(R_bulk + R_D), from R_D = R_b(1 - t+)/t+ (ideal binary electrolyte)",
    }
