"""Temperature dependence of ionic conductivity: Arrhenius and VTF fits.

Three forms, because labs report all three and the numbers are not interchangeable:

- ``"sigma"``:  ln σ  = ln σ0 − Ea/(kT)            (plain Arrhenius)
- ``"sigmaT"``: ln σT = ln A  − Ea/(kT)            (Nernst–Einstein form, hopping theory)
- ``"vtf"``:    σ = A·T^(−1/2)·exp(−B/(k(T − T0)))  (Vogel–Tammann–Fulcher, polymers)

Fitting the *same* data with the ``sigma`` and the ``sigmaT`` form gives activation energies
that differ by about k·T̄ (≈ 0.027 eV near room temperature), because ln σT = ln σ + ln T and
d(ln T)/d(1/kT) = −kT. That is larger than many of the differences people argue about, so the
form is recorded in every result together with k·T̄ over the fitted range.

Inputs are temperatures in °C and conductivities in S/cm (the units labs tabulate); k is
Boltzmann's constant in eV/K from ``scipy.constants`` (CODATA). Linear forms are fitted by
unweighted least squares on the log scale, i.e. assuming a constant *relative* error on σ,
which is what EIS-derived conductivities have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import constants, optimize

from labctl.jsonable import to_jsonable

#: Boltzmann constant in eV/K (CODATA, via scipy.constants).
K_B_EV: float = constants.physical_constants["Boltzmann constant in eV/K"][0]
ZERO_CELSIUS_K: float = constants.zero_Celsius

ArrheniusForm = Literal["sigma", "sigmaT", "vtf"]
_FORMS: tuple[str, ...] = ("sigma", "sigmaT", "vtf")

_FORMULAS = {
    "sigma": "ln(sigma) = ln(sigma0) - Ea/(k*T)",
    "sigmaT": "ln(sigma*T) = ln(A) - Ea/(k*T)",
    "vtf": "sigma = A * T**-0.5 * exp(-B/(k*(T - T0)))",
}
_PREFACTOR_UNITS = {"sigma": "S/cm", "sigmaT": "S*K/cm", "vtf": "S*K^0.5/cm"}


@dataclass(frozen=True)
class ArrheniusFit:
    """Result of :func:`fit_arrhenius`.

    ``Ea_eV`` is the activation energy for the linear forms and the VTF pseudo-activation
    energy B for ``"vtf"``. ``residuals`` are ln(σ_measured) − ln(σ_fit) per point, in the
    input order (identical for every form: they are relative errors of σ).
    """

    form: str
    Ea_eV: float
    Ea_stderr_eV: float
    prefactor: float
    prefactor_unit: str
    ln_prefactor: float
    ln_prefactor_stderr: float
    r_squared: float
    T0_K: float | None
    T0_stderr_K: float | None
    kT_mean_eV: float
    temperatures_C: tuple[float, ...]
    sigma_S_cm: tuple[float, ...]
    residuals: tuple[float, ...]
    conventions: dict[str, Any] = field(default_factory=dict)

    def sigma_at(self, temperature_C: float | np.ndarray) -> np.ndarray:
        """The fitted σ (S/cm) at the given temperature(s) in °C."""
        T = np.asarray(temperature_C, dtype=float) + ZERO_CELSIUS_K
        return np.exp(_model_ln_sigma(self.form, T, self.ln_prefactor, self.Ea_eV, self.T0_K or 0.0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf become None)."""
        return to_jsonable(self)


def fit_arrhenius(
    temperatures_C: np.ndarray | list[float],
    sigma_S_cm: np.ndarray | list[float],
    form: ArrheniusForm = "sigma",
    *,
    T0_bounds_K: tuple[float, float] | None = None,
    sigma_stderr_S_cm: np.ndarray | list[float] | None = None,
) -> ArrheniusFit:
    """Fit σ(T) with one of the forms ``"sigma"``, ``"sigmaT"`` or ``"vtf"``.

    ``T0_bounds_K`` (VTF only) bounds the Vogel temperature; by default 0 K to 5 K below the
    lowest measured temperature (T0 must lie below every data point or the model diverges).
    Raises ValueError naming the bad input (mismatched lengths, non-positive σ, temperatures
    below absolute zero, too few distinct temperatures for the form).

    ``sigma_stderr_S_cm`` (linear forms): per-point standard errors of σ (from the EIS fits).
    The line is then fitted by weighted least squares on ln y with weights (σ/SE)², and
    Ea's standard error is the larger of the one the stated errors imply and the one the
    scatter implies (√χ²_red times it), so neither optimistic errors nor a bad point hide.
    """
    t_c, sigma, T = _checked_data(temperatures_C, sigma_S_cm, form)
    rel_se = None
    if sigma_stderr_S_cm is not None and form != "vtf":
        se = _as_1d(sigma_stderr_S_cm, "sigma_stderr_S_cm")
        if se.size != sigma.size or np.any(se <= 0):
            raise ValueError("sigma_stderr_S_cm must have one value > 0 per point")
        rel_se = se / sigma

    if form == "vtf":
        ln_a, ea, t0, se_ln_a, se_ea, se_t0 = _fit_vtf(T, sigma, T0_bounds_K)
    else:
        ln_a, ea, se_ln_a, se_ea = _fit_linear(form, T, sigma, rel_se)
        t0, se_t0 = None, None

    ln_fit = _model_ln_sigma(form, T, ln_a, ea, t0 or 0.0)
    resid = np.log(sigma) - ln_fit
    # R² of the linearised quantity that was fitted (ln σ, or ln σT for "sigmaT").
    y = np.log(sigma * T) if form == "sigmaT" else np.log(sigma)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum(resid**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    kT_mean = K_B_EV * float(T.mean())

    conventions = _fit_conventions(form, kT_mean, T, T0_bounds_K)
    if rel_se is not None:
        conventions["fit"] = (
            "weighted linear least squares of ln(y) vs 1/(kT), weights (sigma/SE)^2 from the per-point "
            "standard errors; SE(Ea) = max(stated-error SE, sqrt(chi2_red) x it)"
        )

    return ArrheniusFit(
        form=form,
        Ea_eV=float(ea),
        Ea_stderr_eV=float(se_ea),
        prefactor=float(math.exp(ln_a)),
        prefactor_unit=_PREFACTOR_UNITS[form],
        ln_prefactor=float(ln_a),
        ln_prefactor_stderr=float(se_ln_a),
        r_squared=float(r2),
        T0_K=None if t0 is None else float(t0),
        T0_stderr_K=None if se_t0 is None else float(se_t0),
        kT_mean_eV=kT_mean,
        temperatures_C=tuple(float(v) for v in t_c),
        sigma_S_cm=tuple(float(v) for v in sigma),
        residuals=tuple(float(v) for v in resid),
        conventions=conventions,
    )


# --------------------------------------------------------------------------- internals


def _model_ln_sigma(form: str, T: np.ndarray, ln_a: float, ea: float, t0: float) -> np.ndarray:
    if form == "sigma":
        return ln_a - ea / (K_B_EV * T)
    if form == "sigmaT":
        return ln_a - ea / (K_B_EV * T) - np.log(T)
    return ln_a - 0.5 * np.log(T) - ea / (K_B_EV * (T - t0))


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """Straight line y = a + b·x; returns a, b, se(a), se(b), SSR (se NaN with 2 points)."""
    n = x.size
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    b = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    a = float(y.mean() - b * xm)
    ssr = float(np.sum((y - a - b * x) ** 2))
    if n > 2:
        s2 = ssr / (n - 2)
        se_b = math.sqrt(s2 / sxx)
        se_a = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    else:
        se_a = se_b = float("nan")
    return a, b, se_a, se_b, ssr


def _checked_data(
    temperatures_C: np.ndarray | list[float], sigma_S_cm: np.ndarray | list[float], form: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """°C, σ and T (K) as arrays, or a ValueError naming the bad input."""
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    t_c = _as_1d(temperatures_C, "temperatures_C")
    sigma = _as_1d(sigma_S_cm, "sigma_S_cm")
    if t_c.size != sigma.size:
        raise ValueError(f"temperatures_C and sigma_S_cm must have the same length, got {t_c.size} and {sigma.size}")
    if np.any(sigma <= 0):
        raise ValueError(f"sigma_S_cm must be > 0 everywhere, got min {sigma.min()!r}")
    T = t_c + ZERO_CELSIUS_K
    if np.any(T <= 0):
        raise ValueError(f"temperatures_C must be above -273.15 °C, got min {t_c.min()!r}")
    n_distinct = np.unique(T).size
    n_needed = 4 if form == "vtf" else 2
    if n_distinct < n_needed:
        raise ValueError(
            f"temperatures_C needs at least {n_needed} distinct temperatures for form {form!r}, got {n_distinct}"
        )
    return t_c, sigma, T


def _fit_conventions(
    form: str, kT_mean: float, T: np.ndarray, T0_bounds_K: tuple[float, float] | None
) -> dict[str, Any]:
    """How the fit was made (stored with the result: Ea depends on the form by about kT)."""
    conventions: dict[str, Any] = {
        "form": form,
        "formula": _FORMULAS[form],
        "k_B_eV_per_K": K_B_EV,
        "temperature_input": "degC, converted with T[K] = T[degC] + 273.15",
        "sigma_unit": "S/cm",
        "fit": (
            "nonlinear least squares on ln(sigma) over (ln A, B, T0), T0 profiled then refined "
            "(scipy.optimize.curve_fit)"
            if form == "vtf"
            else "unweighted linear least squares of ln(y) vs 1/(kT) (constant relative error on sigma)"
        ),
        "residuals": "ln(sigma_measured) - ln(sigma_fit)",
        "r_squared_of": "ln(sigma*T)" if form == "sigmaT" else "ln(sigma)",
        "note": (f"Ea(sigma form) ~= Ea(sigmaT form) - k*T_mean on the same data; k*T_mean here = {kT_mean:.4f} eV"),
    }
    if form == "vtf":
        conventions["Ea_eV_meaning"] = "VTF pseudo-activation energy B"
        conventions["T0_bounds_K"] = list(_vtf_bounds(T, T0_bounds_K))
    return conventions


def _fit_linear(
    form: str, T: np.ndarray, sigma: np.ndarray, rel_se: np.ndarray | None = None
) -> tuple[float, float, float, float]:
    x = 1.0 / (K_B_EV * T)
    y = np.log(sigma * T) if form == "sigmaT" else np.log(sigma)
    if rel_se is None:
        a, b, se_a, se_b, _ = _ols(x, y)
        return a, -b, se_a, se_b
    a, b, se_a, se_b = _wls(x, y, 1.0 / rel_se**2)
    return a, -b, se_a, se_b


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted straight line y = a + b·x (w = 1/var(y)); SEs from the weights, scaled up by
    √χ²_red when the scatter exceeds what the weights claim."""
    design = np.column_stack([np.ones_like(x), x])
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    a, b = cov @ (design.T @ (w * y))
    chi2 = float(np.sum(w * (y - a - b * x) ** 2))
    scale = max(1.0, math.sqrt(chi2 / (x.size - 2))) if x.size > 2 else 1.0
    return float(a), float(b), scale * math.sqrt(cov[0, 0]), scale * math.sqrt(cov[1, 1])


def _vtf_bounds(T: np.ndarray, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return 0.0, float(T.min()) - 5.0
    lo, hi = float(bounds[0]), float(bounds[1])
    if not (0.0 <= lo < hi < T.min()):
        raise ValueError(
            f"T0_bounds_K must satisfy 0 <= low < high < lowest temperature ({T.min():.2f} K), got {bounds!r}"
        )
    return lo, hi


def _fit_vtf(
    T: np.ndarray, sigma: np.ndarray, bounds: tuple[float, float] | None
) -> tuple[float, float, float, float, float, float]:
    """VTF fit: profile over T0 (linear in ln A and B for fixed T0), then curve_fit for errors."""
    lo, hi = _vtf_bounds(T, bounds)
    y = np.log(sigma) + 0.5 * np.log(T)

    def profile(t0: float) -> float:
        _, _, _, _, ssr = _ols(1.0 / (K_B_EV * (T - t0)), y)
        return ssr

    grid = np.linspace(lo, hi, 200)
    ssr = np.array([profile(g) for g in grid])
    i = int(np.argmin(ssr))
    a_lo, a_hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    t0 = float(optimize.minimize_scalar(profile, bounds=(a_lo, a_hi), method="bounded").x)
    a, b, _, _, _ = _ols(1.0 / (K_B_EV * (T - t0)), y)

    def model(temp: np.ndarray, ln_a: float, big_b: float, t0_: float) -> np.ndarray:
        return ln_a - 0.5 * np.log(temp) - big_b / (K_B_EV * (temp - t0_))

    p0 = (a, -b, min(max(t0, lo + 1e-9), hi - 1e-9))
    try:
        popt, pcov = optimize.curve_fit(
            model,
            T,
            np.log(sigma),
            p0=p0,
            bounds=([-np.inf, 0.0, lo], [np.inf, np.inf, hi]),
            maxfev=20000,
        )
        perr = np.sqrt(np.clip(np.diag(pcov), 0, None)) if np.all(np.isfinite(pcov)) else [np.nan] * 3
    except (RuntimeError, ValueError):  # refinement failed: keep the profile optimum
        popt, perr = np.array(p0), [np.nan] * 3
    return float(popt[0]), float(popt[1]), float(popt[2]), float(perr[0]), float(perr[1]), float(perr[2])


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr
