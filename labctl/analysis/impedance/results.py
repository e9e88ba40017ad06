"""The fit result (:class:`EisFit`) and how it is summarised from the chosen candidate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.analysis.impedance.circuits import CircuitSpec, _unit, circuit_impedance
from labctl.analysis.impedance.constants import (
    _DIFFUSION_REL_SE,
    _RESOLVED_REL_SE,
    _TAU_D_MIN_RATIO,
    _TAU_D_MIN_S,
    GEOMETRIC_CAPACITANCE_MAX_F,
)
from labctl.analysis.impedance.fitting import _apex, _ceff, _Result, _si_covariance, _stderr, _sum_stderr
from labctl.analysis.impedance.parameterisation import _Data, _from_theta


@dataclass
class EisFit:
    """Result of :func:`fit_spectrum`. All values SI (Ω, H, F·s^(n−1), Hz).

    ``R_total`` = R0 + Σ R_arcs is the resistance at the low-frequency end of the arc(s),
    where the blocking spike starts (or the DC limit of an R-RC cell). It is determined even
    when the bulk arc lies above the measured band; ``R_bulk_fit`` (= R1) only when
    ``arc_resolved``. The electrolyte's bulk resistance is usually ``R_total − R_leads``, with
    R_leads measured on a shorted cell. ``stderr`` are standard errors from the Jacobian at
    the optimum scaled by the residual variance (NaN where not identifiable).
    ``R_total_stderr`` and ``arc_resolved`` are judged in the same circuit with a free series
    inductance (unless ``inductance=False``), because an unknown L trades off against the
    R0/R1 split of an arc near the top of the band.

    Li|Li circuits (``spec.interface`` / ``spec.diffusion``): ``R_total`` = R0 + R1 + Rint is
    the end of the arcs where the diffusion feature starts, ``R_interface_fit`` = Rint,
    ``R_diffusion_fit`` = RD and ``tau_diffusion`` = τD as fitted (meaningful only when
    ``diffusion_resolved``: RD known to 5 % at 1 sigma, i.e. the Warburg's turnover to the
    real axis is inside the band). ``derived`` holds sums with their correlated standard
    errors: ``R_high_freq`` = R0 + R1 (the high-frequency intercept), ``R_dc`` = R_total + RD,
    the effective capacitances and the interfacial apex frequency.

    ``covariance`` is the parameters' covariance in SI units (order ``spec.param_names``),
    kept so that callers can get the standard error of any sum of parameters
    (:meth:`stderr_of_sum`) with its correlations, e.g. R0 + Rint, which is far better
    determined than R0 and Rint separately when the bulk arc is above the band.
    """

    model: str
    spec: CircuitSpec
    params: dict[str, float]
    stderr: dict[str, float]
    units: dict[str, str]
    R_total: float
    R_total_stderr: float
    R_series: float
    R_bulk_fit: float | None
    R_gb_fit: float | None
    arc_resolved: bool
    apex_frequency: float | None
    chi_square: float
    rel_rms: float
    n_points: int
    bic: float
    f_min: float
    f_max: float
    candidates: dict[str, float] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    R_interface_fit: float | None = None
    R_diffusion_fit: float | None = None
    tau_diffusion: float | None = None
    diffusion_resolved: bool | None = None
    derived: dict[str, float] = field(default_factory=dict)
    covariance: np.ndarray | None = field(default=None, repr=False)

    def stderr_of_sum(self, names: list[str] | tuple[str, ...]) -> float:
        """Standard error of the sum of the parameters ``names``, correlations included."""
        if self.covariance is None:
            return math.nan
        idx = [self.spec.param_names.index(k) for k in names]
        var = float(np.sum(self.covariance[np.ix_(idx, idx)]))
        return math.sqrt(var) if var >= 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (NaN becomes None) for a run file's results."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {
            k: clean(getattr(self, k))
            for k in (
                "model",
                "params",
                "stderr",
                "units",
                "R_total",
                "R_total_stderr",
                "R_series",
                "R_bulk_fit",
                "R_gb_fit",
                "arc_resolved",
                "apex_frequency",
                "chi_square",
                "rel_rms",
                "n_points",
                "bic",
                "f_min",
                "f_max",
                "candidates",
                "conventions",
                "R_interface_fit",
                "R_diffusion_fit",
                "tau_diffusion",
                "diffusion_resolved",
                "derived",
            )
        }


def model_impedance(fit: EisFit, freq: np.ndarray) -> np.ndarray:
    """Evaluate a fitted circuit at ``freq`` (Hz)."""
    return circuit_impedance(fit.spec, fit.params, freq)


#: How a fit was made and what its numbers mean, stored with every result.
_BLOCKING_CONVENTIONS: dict[str, str] = {
    "cpe": "Z = 1/(Q*(j*omega)^n)",
    "weighting": "modulus: residual = (Z_model - Z_data)/|Z_data|, real and imaginary stacked",
    "parameterisation": "ln R, ln Q; n linear, bounded 0.4..1; L linear, >= 0",
    "optimizer": "scipy.optimize.least_squares (trf, analytic Jacobian), seeded by a variable-projection grid",
    "model_selection": "BIC = 2N ln(chi2/2N) + p ln(2N); arcs must peak inside or above the band",
    "R_total": "R0 + sum of arc resistances (low-frequency end of the arcs)",
    "arc_resolved": "with L free: stderr(R1) < 2.5 % of R1, stderr(R0) < 2.5 % of R_total, apex frequency <= 3 f_max",
    "sign": "Z = Z' + jZ'', Z'' < 0 for capacitive behaviour",
}


def _summarise(best: _Result, general: _Result, data: _Data, results: list[_Result]) -> EisFit:
    spec = best.spec
    params = _from_theta(spec, best.theta, data)
    stderr, r_total_se = _stderr(best, data)
    g_params = _from_theta(general.spec, general.theta, data)
    g_stderr, g_total_se = _stderr(general, data)
    r_total = params["R0"] + sum(params[f"R{a}"] for a in spec.arc_labels)
    # the high-frequency intercept R0 + electrolyte arcs (= r_total without an interface arc)
    r_hf = params["R0"] + sum(params[f"R{i}"] for i in range(1, spec.n_arcs + 1))

    apex = r_bulk = r_gb = None
    resolved = False
    if spec.n_arcs >= 1:
        apex = _apex(params, 1)
        if "R1" not in g_params:  # a Li|Li refit without L whose single arc turned out geometric
            g_params, g_stderr = params, stderr
        resolved = bool(
            g_stderr["R1"] < _RESOLVED_REL_SE * g_params["R1"]
            and g_stderr["R0"] < _RESOLVED_REL_SE * r_hf
            and apex <= 3.0 * data.freq[0]
        )
        r_bulk = params["R1"] if resolved else None
        r_gb = params["R2"] if spec.n_arcs == 2 else None

    conventions = {"circuit": spec.name, **_BLOCKING_CONVENTIONS}
    extra: dict[str, Any] = {}
    if spec.interface or spec.diffusion:
        extra, li_conventions = _li_li_summary(best, data, params, stderr)
        conventions.update(li_conventions)

    m = 2 * data.n
    return EisFit(
        model=spec.name,
        spec=spec,
        params=params,
        stderr=stderr,
        units={k: _unit(k) for k in spec.param_names},
        R_total=r_total,
        R_total_stderr=max(r_total_se, g_total_se),
        R_series=params["R0"],
        R_bulk_fit=r_bulk,
        R_gb_fit=r_gb,
        arc_resolved=resolved,
        apex_frequency=apex,
        chi_square=best.chi2,
        rel_rms=math.sqrt(best.chi2 / m),
        n_points=data.n,
        bic=best.bic,
        f_min=float(data.freq[-1]),
        f_max=float(data.freq[0]),
        candidates={r.spec.name: r.bic for r in results},
        conventions=conventions,
        covariance=_si_covariance(best, data),
        **extra,
    )


def _li_li_summary(
    res: _Result, data: _Data, params: dict[str, float], stderr: dict[str, float]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The interface/diffusion fields of :class:`EisFit` and the conventions they follow."""
    spec = res.spec
    cov = _si_covariance(res, data)
    bulk = [f"R{i}" for i in range(1, spec.n_arcs + 1)]
    arcs = bulk + (["Rint"] if spec.interface else [])
    derived: dict[str, float] = {
        "R_high_freq": params["R0"] + sum(params[k] for k in bulk),
        "R_high_freq_stderr": _sum_stderr(res, data, ["R0", *bulk], cov),
    }
    if spec.n_arcs >= 1:
        derived["C_eff_bulk"] = _ceff(params, 1)
    out: dict[str, Any] = {"derived": derived}
    if spec.interface:
        out["R_interface_fit"] = params["Rint"]
        derived["C_eff_int"] = _ceff(params, "int")
        derived["apex_frequency_int"] = _apex(params, "int")
    if spec.diffusion:
        r_d, se_d = params["RD"], stderr["RD"]
        out["R_diffusion_fit"] = r_d
        out["tau_diffusion"] = params["tauD"]
        out["diffusion_resolved"] = bool(math.isfinite(se_d) and se_d < _DIFFUSION_REL_SE * r_d)
        derived["R_dc"] = params["R0"] + sum(params[k] for k in arcs) + r_d
        derived["R_dc_stderr"] = _sum_stderr(res, data, ["R0", *arcs, "RD"], cov)
    conventions = {
        "R_total": "R0 + R1 + Rint: the low-frequency end of the arcs, where the diffusion feature starts",
        "parameterisation": "ln R, ln Q, ln RD, ln(tauD/tau_ref); n linear, bounded 0.4..1 (nint 0.6..1); "
        "R0 and L linear, >= 0",
        "warburg": "finite-length, transmissive: Z_D = RD*tanh(sqrt(j*omega*tauD))/sqrt(j*omega*tauD) "
        "[Barsoukov & Macdonald, Impedance Spectroscopy, 2nd ed., 2005]",
        "arc_order": "bulk arc (R1) = the arc with the smaller effective capacitance Q^(1/n)*R^(1/n-1); "
        f"a single arc is the bulk arc (R1) when that capacitance is < {GEOMETRIC_CAPACITANCE_MAX_F:g} F, "
        "else the interfacial arc (Rint)",
        "diffusion_resolved": f"stderr(RD) < {_DIFFUSION_REL_SE:.0%} of RD",
        "arc_resolved": "with L free: stderr(R1) < 2.5 % of R1, stderr(R0) < 2.5 % of R0 + R1, "
        "apex frequency <= 3 f_max",
        "tauD_constraint": f"tauD >= {_TAU_D_MIN_RATIO:g} x the slowest arc's (RQ)^(1/n) and >= "
        f"{_TAU_D_MIN_S:g} s (smooth maximum): the diffusion is the slowest process of the cell",
        "model_selection": "BIC among [L]-R0-[p(R1,CPE1)]-p(Rint,CPEint)-[Ws] (the Warburg-free circuits "
        "refitted only when RD is not determined); arcs must peak inside or above the band",
    }
    return out, conventions
