"""Arrhenius / VTF fits recover known parameters from seeded synthetic σ(T)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.analysis.arrhenius import K_B_EV, fit_arrhenius

TEMPS_C = np.linspace(-20.0, 90.0, 12)
T_K = TEMPS_C + 273.15


def _noisy(sigma: np.ndarray, seed: int, rel: float = 0.01) -> np.ndarray:
    return sigma * (1.0 + rel * np.random.default_rng(seed).standard_normal(sigma.size))


def test_boltzmann_constant_is_codata_in_ev() -> None:
    assert abs(K_B_EV / 8.617333262e-5 - 1.0) < 1e-9


@pytest.mark.parametrize("ea", [0.05, 0.1, 0.2, 0.3, 0.45, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigma_form_recovers_ea(ea: float, seed: int) -> None:
    sigma0 = 50.0
    sigma = _noisy(sigma0 * np.exp(-ea / (K_B_EV * T_K)), seed)
    fit = fit_arrhenius(TEMPS_C, sigma, "sigma")
    assert abs(fit.Ea_eV - ea) < 0.01
    assert fit.Ea_stderr_eV < 0.005
    assert fit.prefactor == pytest.approx(sigma0, rel=0.15)
    assert fit.r_squared > 0.99
    assert len(fit.residuals) == 12
    assert np.max(np.abs(fit.residuals)) < 0.05  # 1 % noise -> ln residuals ~0.01


@pytest.mark.parametrize("ea", [0.05, 0.3, 0.6])
def test_sigmaT_form_recovers_ea(ea: float) -> None:
    a = 3e4
    sigma = _noisy(a / T_K * np.exp(-ea / (K_B_EV * T_K)), seed=7)
    fit = fit_arrhenius(TEMPS_C, sigma, "sigmaT")
    assert fit.form == "sigmaT"
    assert abs(fit.Ea_eV - ea) < 0.01
    assert fit.prefactor_unit == "S*K/cm"
    assert fit.prefactor == pytest.approx(a, rel=0.15)
    assert np.max(np.abs(fit.residuals)) < 0.05
    assert np.allclose(fit.sigma_at(TEMPS_C), sigma, rtol=0.05)  # the model is sigma = A/T exp(-Ea/kT)


def test_wrong_form_differs_by_about_kT_and_is_recorded() -> None:
    """sigmaT-law data fitted with the sigma form: Ea low by ~k*T_mean, and the result says which form."""
    ea = 0.35
    sigma = 2e4 / T_K * np.exp(-ea / (K_B_EV * T_K))  # noise-free sigmaT law
    right = fit_arrhenius(TEMPS_C, sigma, "sigmaT")
    wrong = fit_arrhenius(TEMPS_C, sigma, "sigma")
    assert right.Ea_eV == pytest.approx(ea, abs=1e-9)
    kT_mean = K_B_EV * T_K.mean()
    assert wrong.kT_mean_eV == pytest.approx(kT_mean)
    assert right.Ea_eV - wrong.Ea_eV == pytest.approx(kT_mean, abs=0.001)
    assert right.Ea_eV - wrong.Ea_eV > 0.02  # big enough to matter, so it must be recorded
    assert wrong.form == "sigma" and right.form == "sigmaT"
    assert wrong.conventions["form"] == "sigma"
    assert "ln(sigma)" in wrong.conventions["formula"]
    assert "ln(sigma*T)" in right.conventions["formula"]
    d = json.loads(json.dumps(wrong.as_dict()))
    assert d["form"] == "sigma" and d["conventions"]["form"] == "sigma"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vtf_recovers_pseudo_activation_energy_and_T0(seed: int) -> None:
    b, t0, a = 0.08, 200.0, 50.0
    sigma = _noisy(a * T_K**-0.5 * np.exp(-b / (K_B_EV * (T_K - t0))), seed)
    fit = fit_arrhenius(TEMPS_C, sigma, "vtf")
    assert fit.form == "vtf"
    assert abs(fit.Ea_eV - b) < 0.01
    assert fit.T0_K is not None and abs(fit.T0_K - t0) < 10.0
    assert fit.T0_stderr_K is not None and np.isfinite(fit.T0_stderr_K)
    assert fit.conventions["Ea_eV_meaning"] == "VTF pseudo-activation energy B"
    assert np.allclose(fit.sigma_at(TEMPS_C), sigma, rtol=0.05)


def test_residuals_are_ln_measured_minus_ln_fit() -> None:
    sigma = 10 * np.exp(-0.3 / (K_B_EV * T_K))
    sigma[3] *= 1.5  # one outlier
    fit = fit_arrhenius(TEMPS_C, sigma)
    expected = np.log(sigma) - np.log(fit.sigma_at(TEMPS_C))
    assert np.allclose(fit.residuals, expected)
    assert int(np.argmax(fit.residuals)) == 3


def test_as_dict_is_json_serialisable() -> None:
    fit = fit_arrhenius(TEMPS_C[:2], [1e-4, 1e-3])  # 2 points: stderr undefined -> None in JSON
    d = json.loads(json.dumps(fit.as_dict(), allow_nan=False))
    assert d["Ea_stderr_eV"] is None
    assert d["T0_K"] is None


@pytest.mark.parametrize(
    ("temps", "sigma", "form", "match"),
    [
        ([20, 30, 40], [1e-4, 2e-4], "sigma", "same length"),
        ([20, 30, 40], [1e-4, -2e-4, 3e-4], "sigma", "sigma_S_cm must be > 0"),
        ([20, -300, 40], [1e-4, 2e-4, 3e-4], "sigma", "above -273.15"),
        ([20, 20, 20], [1e-4, 2e-4, 3e-4], "sigma", "distinct temperatures"),
        ([20, 30, 40], [1e-4, 2e-4, 3e-4], "vtf", "at least 4 distinct"),
        ([20, 30, 40], [1e-4, 2e-4, 3e-4], "arrhenius", "form must be one of"),
        ([20, np.nan, 40], [1e-4, 2e-4, 3e-4], "sigma", "temperatures_C contains NaN"),
        ([], [], "sigma", "temperatures_C is empty"),
    ],
)
def test_bad_inputs_raise_named_errors(temps, sigma, form, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_arrhenius(temps, sigma, form)


def test_vtf_T0_bounds_must_lie_below_data() -> None:
    with pytest.raises(ValueError, match="T0_bounds_K"):
        fit_arrhenius(TEMPS_C, np.exp(-0.3 / (K_B_EV * T_K)), "vtf", T0_bounds_K=(100.0, 400.0))
