"""EIS results a scientist can trust: right within their uncertainty, or flagged, or invalid.

The simulated spectra come from the simulator's own cell model (drivers.sim, the truth is
known), drawn over random parameters by a seeded RNG; the real ones are published
measurements with published fits (see tests/data/reference/README.md and
/work/shared/reference-data/README.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams, transport
from drivers.sim import impedance as zel
from labctl.analysis.conductivity import disc_area_cm2
from labctl.analysis.eis_conductivity import ConductivityResult, conductivity_from_spectrum
from labctl.analysis.impedance import CircuitSpec, circuit_impedance, fit_spectrum
from labctl.analysis.impedance.fitting import _fit_one
from labctl.analysis.impedance.parameterisation import _prepare, _to_theta
from labctl.clock import VirtualClock
from labctl.importers import load_spectrum

HERE = Path(__file__).parent / "data" / "reference"
N_DRAWS = 5


def sim_spectrum(seed: int, **truth: float) -> tuple[SimParams, np.ndarray, np.ndarray]:
    """The simulated SS|SE|SS cell's impedance at the eis protocol's default sweep
    (100 kHz → 0.1 Hz, 10 points per decade) with the simulator's noise."""
    ch = SimChannel(SimParams(seed=seed, **truth), "ss", VirtualClock())
    freq = np.logspace(5, -1, 61)
    z = ch.bench.cell.impedance(ch.bench.state, freq, 25.0)
    return ch.params, freq, zel.with_noise(z, ch.params.noise, np.random.default_rng(seed))


def r_bulk(p: SimParams) -> float:
    return float(transport.bulk_resistance(p, 25.0))


def covered(value: float, se: float, truth: float, rel: float = 0.02) -> bool:
    """Right to ``rel``, or the (2 sigma) uncertainty covers the error."""
    return abs(value - truth) <= max(rel * truth, 2.0 * se)


def draws(seed: int) -> np.random.Generator:
    return np.random.default_rng(1000 + seed)


# --------------------------------------------------------------------------- 1. dummy cells

# impedance.py's own R0-p(R1,C1) fits (docs/source/examples/looping_files_example.ipynb)
DUMMY = {1: (29.1, 46.7), 2: (150.0, 502.0), 3: (1510.0, 4630.0)}


@pytest.mark.parametrize("circuit", sorted(DUMMY))
def test_dummy_cells_are_one_resistor_and_one_arc(reference_data: Path, circuit: int) -> None:
    r0, r1 = DUMMY[circuit]
    for replicate in (1, 2):
        s = load_spectrum(reference_data / "impedance_py" / f"Circuit{circuit}_EIS_{replicate}.z")
        res = conductivity_from_spectrum(s.freq, s.z, thickness_um=1000.0, area_cm2=1.0)
        assert res.R_gb_ohm is None and "p(R2" not in res.circuit
        assert res.circuit.endswith("R0-p(R1,CPE1)")
        assert res.R_series_fit_ohm == pytest.approx(r0, rel=0.02)
        assert res.fit_params["R1"] == pytest.approx(r1, rel=0.02)
        assert res.circuit_labelled and res.valid


# --------------------------------------------------------------------------- 2. grain boundary in band


def gb_draw(seed: int) -> dict[str, float]:
    rng = draws(seed)
    return {
        "sigma": 10 ** rng.uniform(-7, -6.5),
        "r_gb_ratio": rng.uniform(3, 12),
        "gb_cap_ratio": 10 ** rng.uniform(3, 3.8),
        "thickness": rng.uniform(500, 2000),
        "area": rng.uniform(0.3, 1.0),
    }


@pytest.mark.parametrize("seed", range(N_DRAWS))
def test_grain_boundary_arc_in_band_is_found(seed: int) -> None:
    truth = gb_draw(seed)
    p, freq, z = sim_spectrum(seed, **truth)
    res = conductivity_from_spectrum(freq, z, thickness_um=p.thickness, area_cm2=p.area, r_leads_ohm=p.r_series)
    rb = r_bulk(p)
    sigma_total = p.length_cm / ((rb * (1 + p.r_gb_ratio)) * p.area)
    assert "[bulk]" in res.circuit_labelled and "[grain boundary]" in res.circuit_labelled
    assert covered(res.sigma_S_cm, res.sigma_stderr_S_cm, sigma_total)
    assert res.sigma_bulk_S_cm is not None
    assert covered(res.sigma_bulk_S_cm, res.sigma_bulk_stderr_S_cm, p.sigma)
    assert res.R_gb_ohm == pytest.approx(rb * p.r_gb_ratio, rel=0.03)


@pytest.mark.parametrize("seed", range(3))
def test_search_is_not_beaten_by_a_start_at_the_truth(seed: int) -> None:
    """Seeding test: the optimiser started from the true parameters must not reach a lower
    objective than the global search does (for the circuit the search chose)."""
    truth = gb_draw(seed + 10)
    p, freq, z = sim_spectrum(seed + 10, **truth)
    fit = fit_spectrum(freq, z, n_arcs="auto")
    assert fit.spec.n_arcs == 2
    rb = r_bulk(p)
    cb = transport.geometric_capacitance(p)
    rgb, cgb = rb * p.r_gb_ratio, cb * p.gb_cap_ratio
    params = {
        "R0": p.r_series, "L": p.inductance,
        "R1": rb, "Q1": zel.q_for_capacitance(cb, rb, p.n_bulk), "n1": p.n_bulk,
        "R2": rgb, "Q2": zel.q_for_capacitance(cgb, rgb, p.n_bulk), "n2": p.n_bulk,
        "Qdl": p.q_dl * p.area / 2, "ndl": p.n_dl,
    }  # fmt: skip
    data = _prepare(freq, z, None)
    from_truth = _fit_one(fit.spec, data, [_to_theta(fit.spec, {k: params[k] for k in fit.spec.param_names}, data)])
    assert from_truth is not None
    assert fit.chi_square <= from_truth.chi2 * (1 + 1e-6)


# --------------------------------------------------------------------------- 3. electronic leakage


@pytest.mark.parametrize("seed", range(N_DRAWS))
def test_leakage_is_not_reported_as_the_ionic_conductivity(seed: int) -> None:
    rng = draws(seed + 20)
    sigma_e = 10 ** rng.uniform(-6.5, -6)  # the simulator's range ends at 1e-6 S/cm
    truth = {"sigma": sigma_e * rng.uniform(5, 20), "sigma_e": sigma_e, "thickness": rng.uniform(50, 300)}
    p, freq, z = sim_spectrum(seed, **truth)
    res = conductivity_from_spectrum(freq, z, thickness_um=p.thickness, area_cm2=p.area)
    # the old failure: σ came out as σ_e (and the double layer as a grain boundary)
    assert "grain boundary" not in res.circuit_labelled
    assert "[electrode]" in res.circuit_labelled
    assert covered(res.sigma_S_cm, res.sigma_stderr_S_cm, p.sigma)
    assert any("leakage" in w for w in res.warnings)
    assert res.sigma_if_leakage_S_cm == pytest.approx(p.sigma, rel=0.02)
    assert res.sigma_e_S_cm == pytest.approx(p.sigma_e, rel=0.05)


# --------------------------------------------------------------------------- 4. electrode processes


@pytest.mark.parametrize("seed", range(N_DRAWS))
@pytest.mark.parametrize("spike", [False, True])
def test_electrode_arcs_are_not_electrolyte(seed: int, spike: bool) -> None:
    """Liquid / quasi-solid electrolyte in a conductivity cell: the bulk arc above the band
    (only R_s + R_b seen), then a faradaic electrode arc (µF/cm²), with or without a
    diffusion tail (CPE, n ~ 0.5) after it."""
    rng = draws(seed + 30)
    area, thickness = rng.uniform(0.2, 2), rng.uniform(50, 500)
    sigma = 10 ** rng.uniform(-3.5, -2.5)
    r_b = thickness * 1e-4 / (sigma * area)
    r_s = 0.3
    spec = CircuitSpec(n_arcs=2, spike=spike)
    c_b = 8.854e-14 * 30 * area / (thickness * 1e-4)
    r_ct = r_b * rng.uniform(3, 30)
    c_dl = rng.uniform(2e-6, 3e-5) * area
    params = {
        "R0": r_s, "R1": r_b, "Q1": c_b, "n1": 1.0,
        "R2": r_ct, "Q2": zel.q_for_capacitance(c_dl, r_ct, 0.85), "n2": 0.85,
        "Qdl": 1e-3 * area, "ndl": rng.uniform(0.45, 0.6),
    }  # fmt: skip
    freq = np.logspace(5, -1, 61)
    z = zel.with_noise(circuit_impedance(spec, params, freq), 0.003, np.random.default_rng(seed))
    res = conductivity_from_spectrum(freq, z, thickness_um=thickness, area_cm2=area, r_leads_ohm=r_s)
    assert res.valid
    assert covered(res.sigma_S_cm, res.sigma_stderr_S_cm, sigma)
    assert "[electrode]" in res.circuit_labelled
    assert res.R_gb_ohm is None


@pytest.mark.parametrize("seed", range(3))
def test_two_electrode_arcs_are_not_electrolyte(seed: int) -> None:
    """R – (SEI/film arc) – (charge-transfer arc), the bulk arc above the band: both µF arcs
    are electrode processes; σ is from R0 alone (its SE also covers the leakage reading)."""
    rng = draws(seed + 50)
    area, thickness = rng.uniform(0.2, 2), rng.uniform(50, 500)
    sigma = 10 ** rng.uniform(-3.5, -2.5)
    r_b, r_s = thickness * 1e-4 / (sigma * area), 0.3
    r1, r2 = r_b * rng.uniform(2, 10), r_b * rng.uniform(10, 50)
    c1, c2 = rng.uniform(1.5e-6, 5e-6) * area, rng.uniform(2e-5, 1e-4) * area
    params = {
        "R0": r_s + r_b, "R1": r1, "Q1": zel.q_for_capacitance(c1, r1, 0.9), "n1": 0.9,
        "R2": r2, "Q2": zel.q_for_capacitance(c2, r2, 0.8), "n2": 0.8,
    }  # fmt: skip
    freq = np.logspace(5, -1, 61)
    z = zel.with_noise(circuit_impedance(CircuitSpec(2, spike=False), params, freq), 0.003, np.random.default_rng(seed))
    res = conductivity_from_spectrum(freq, z, thickness_um=thickness, area_cm2=area, r_leads_ohm=r_s)
    assert res.circuit_labelled.count("[electrode]") == 2
    assert res.valid and covered(res.sigma_S_cm, res.sigma_stderr_S_cm, sigma)


# --------------------------------------------------------------------------- 5. unmeasured leads


@pytest.mark.parametrize("seed", range(N_DRAWS))
def test_thin_conductive_membrane_without_r_leads_is_right_or_flagged(seed: int) -> None:
    rng = draws(seed + 40)
    truth = {
        "sigma": 10 ** rng.uniform(-3, -2),
        "thickness": rng.uniform(20, 100),
        "area": rng.uniform(0.5, 2),
        "r_series": rng.uniform(0.1, 0.8),
    }
    p, freq, z = sim_spectrum(seed, **truth)
    res = conductivity_from_spectrum(freq, z, thickness_um=p.thickness, area_cm2=p.area)
    if not res.valid:
        assert res.reason and "leads" in res.reason
        return
    if abs(res.sigma_S_cm / p.sigma - 1) > 0.02:
        assert any("labctl run leads" in w for w in res.warnings)
        assert abs(res.sigma_S_cm - p.sigma) <= 2 * res.sigma_stderr_S_cm
    # measured leads remove the warning and the error
    fixed = conductivity_from_spectrum(freq, z, thickness_um=p.thickness, area_cm2=p.area, r_leads_ohm=p.r_series)
    assert not any("labctl run leads" in w for w in fixed.warnings)
    assert covered(fixed.sigma_S_cm, fixed.sigma_stderr_S_cm, p.sigma)


def test_result_records_uncertainty_labels_and_validity() -> None:
    _, freq, z = sim_spectrum(3, sigma=1e-6, thickness=500.0)
    res: ConductivityResult = conductivity_from_spectrum(freq, z, thickness_um=500.0, area_cm2=1.0, r_leads_ohm=0.25)
    d = res.as_dict()
    for key in ("sigma_stderr_S_cm", "R_bulk_stderr_ohm", "circuit_labelled", "labels", "warnings", "valid"):
        assert key in d
    assert d["labels"]["1"]["label"] == "bulk"
    assert 1 <= d["labels"]["1"]["eps_r"] <= 1000
    assert 0 < res.sigma_stderr_S_cm < 0.02 * res.sigma_S_cm
    # geometry uncertainty propagates
    g = conductivity_from_spectrum(
        freq, z, thickness_um=500.0, area_cm2=1.0, r_leads_ohm=0.25, thickness_stderr_um=25.0
    )
    assert g.sigma_stderr_S_cm == pytest.approx(math.hypot(res.sigma_stderr_S_cm, 0.05 * g.sigma_S_cm), rel=1e-6)
    # leads larger than R_total: invalid with the reason, no exception
    bad = conductivity_from_spectrum(freq, z, thickness_um=500.0, area_cm2=1.0, r_leads_ohm=1e6 - 1)
    assert not bad.valid and "not resolved" in (bad.reason or "")
    assert bad.as_dict()["sigma_S_cm"] is None


# --------------------------------------------------------------------------- 6. no invented electrode

#: Found by random draws (CI's queue batch, then 40 draws of this regime): a blocking cell
#: whose bulk arc peaks just above f_max was read as a Randles electrode with a few-ohm "Rct"
#: above the band, and sigma came out 8 % high with a 128 % uncertainty. Kept beside fresh
#: draws of the same regime (in 40 draws the old choice failed once).
FOUND_FARADAIC_MISREADINGS = [(3.11e-4, 551886181)]


@pytest.mark.parametrize("case", range(len(FOUND_FARADAIC_MISREADINGS) + N_DRAWS))
def test_bulk_arc_above_the_band_is_not_read_as_a_faradaic_electrode(case: int) -> None:
    if case < len(FOUND_FARADAIC_MISREADINGS):
        sigma, seed = FOUND_FARADAIC_MISREADINGS[case]
    else:
        rng = draws(case + 70)
        sigma, seed = 10 ** rng.uniform(-4.5, -3.3), int(rng.integers(0, 2**31))
    p, freq, z = sim_spectrum(seed, sigma=sigma)
    res = conductivity_from_spectrum(freq, z, thickness_um=p.thickness, area_cm2=p.area, r_leads_ohm=p.r_series)
    assert "CPEct" not in res.circuit, res.circuit  # the simulated SS|SE|SS cell has no faradaic process
    assert res.sigma_S_cm == pytest.approx(p.sigma, rel=0.01), (res.circuit, res.sigma_stderr_S_cm)


# --------------------------------------------------------------------------- real spectra


PELLET_BULK_SIGMA = [2.857e-06, 3.721e-06, 5.256e-06, 7.453e-06, 1.049e-05, 1.523e-05, 1.860e-05]


def test_pellet_bulk_conductivities_match_the_published_fit(reference_data: Path) -> None:
    """EISFitpython's own report of these files (Example_scripts/Example3/
    Arrhenius_Analysis_Report.txt): bulk σ at 140–200 °C; pellet 0.8 cm diameter, 0.21 cm."""
    files = sorted((reference_data / "eisfitpython_solid_electrolyte").glob("s04147-*deg.txt"))
    for path, published in zip(files, PELLET_BULK_SIGMA, strict=True):
        s = load_spectrum(path)
        res = conductivity_from_spectrum(s.freq, s.z, thickness_um=2100.0, area_cm2=float(disc_area_cm2(0.8)))
        assert res.circuit_labelled.count("[bulk]") == 1 and "[grain boundary]" in res.circuit_labelled
        assert res.sigma_bulk_S_cm == pytest.approx(published, rel=0.02)


def test_lagp_pellet_matches_its_published_fit() -> None:
    """EISFitpython Example 2 (LAGP, EIS_Data/Example-2/Example2b.txt), fitted by its authors
    with (R1|Q1)+(R2|Q2)+Q3, modulus weighting, 5.43 Hz–1 MHz: R1 = 44.71 kΩ (±0.61 %),
    R2 = 47.12 kΩ (±1.16 %) (Example_scripts/Example2/EIS_fit_report.txt)."""
    s = load_spectrum(HERE / "eisfitpython_lagp" / "Example2b.txt")
    keep = s.freq >= 5.0
    res = conductivity_from_spectrum(s.freq[keep], s.z[keep], thickness_um=750.0, area_cm2=float(disc_area_cm2(1.3)))
    assert res.fit_params["R1"] == pytest.approx(44.71e3, rel=0.02)
    assert res.R_gb_ohm == pytest.approx(47.12e3, rel=0.02)
    assert "[bulk]" in res.circuit_labelled and "[grain boundary]" in res.circuit_labelled


def read_mpt_cycle(path: Path, cycle: int, f_max: float, f_min: float) -> tuple[np.ndarray, np.ndarray]:
    """One cycle of a two-cycle EC-Lab export (labctl's importer refuses repeated sweeps)."""
    lines = path.read_text(encoding="latin-1").splitlines()
    n_header = int(lines[1].split(":")[1])
    cols = lines[n_header - 1].split("\t")
    i_f, i_re, i_im, i_c = (cols.index(k) for k in ("freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm", "cycle number"))
    rows = [[float(v) for v in line.split("\t")[: len(cols) - 1]] for line in lines[n_header:] if line.strip()]
    a = np.array(rows)
    keep = (a[:, i_c] == cycle) & (a[:, i_f] <= f_max) & (a[:, i_f] >= f_min)
    return a[keep, i_f], a[keep, i_re] - 1j * a[keep, i_im]


# PyEIS tutorial (Tutorials/PyEIS_experimental-data_tutorial.ipynb): Randles fits R-(Q(RW)) with
# a pure Warburg (n = 0.5), modulus weighting, 10 kHz–0.1 Hz, second sweep of each file: Rs
# (solution resistance) ± its SE. labctl's Randles has a CPE for the diffusion (n free): the
# model difference moves Rs by 2–3 %, so the bound here is 3 %.
PYEIS = {"ex1.mpt": 2262.1, "ex2.mpt": 2258.8}


@pytest.mark.parametrize("name", sorted(PYEIS))
def test_faradaic_electrode_arc_is_not_electrolyte(name: str) -> None:
    """A macrodisk electrode in a solution with a redox mediator: the electrolyte is the
    solution resistance Rs; the charge-transfer arc (µF) must not be counted in it."""
    freq, z = read_mpt_cycle(HERE / "pyeis" / name, 2, 1e4, 0.1)
    res = conductivity_from_spectrum(freq, z, thickness_um=1000.0, area_cm2=1.0, r_leads_ohm=0.0)
    assert "p(CPEct,Rct-CPEw)[electrode]" in res.circuit_labelled
    assert res.R_total_ohm == pytest.approx(PYEIS[name], rel=0.03)
    assert res.fit_params["Rct"] > 3 * res.R_total_ohm  # the arc is there, and not in sigma


# --------------------------------------------------------------------------- Arrhenius


def test_pellet_activation_energies_keep_their_published_values(reference_data: Path) -> None:
    """EISFitpython's report (Example3/Arrhenius_Analysis_Report.txt), σT form: Ea(total)
    0.8555 eV, Ea(bulk) 0.5869 ± 0.0163 eV; labctl's Ea now carries a standard error from the
    fit weighted by the per-point σ uncertainties, and the form is recorded."""
    from labctl.analyze import analyze_arrhenius_files

    files = sorted((reference_data / "eisfitpython_solid_electrolyte").glob("s04147-*deg.txt"))
    given = {"thickness": "2100", "area": str(float(disc_area_cm2(0.8)))}
    r = analyze_arrhenius_files(files, [140, 150, 160, 170, 180, 190, 200], given, "sigmaT")["results"]
    assert r["ea_eV"] == pytest.approx(0.8555, abs=0.01)
    assert 0 < r["ea_stderr_eV"] < 0.02
    assert r["ea_bulk_eV"] == pytest.approx(0.5869, abs=2 * 0.0163)
    assert r["conventions"]["form"] == "sigmaT" and "weighted" in r["conventions"]["fit"]
    assert all(row["sigma_stderr_S_cm"] > 0 for row in r["table"])


def test_arrhenius_weighting_and_warnings_from_the_points() -> None:
    """The arrhenius protocol's analysis: invalid points are left out (and said so), the
    points' warnings are propagated, Ea's SE comes from the per-point σ SEs."""
    from labctl.analysis.arrhenius import K_B_EV
    from protocols.arrhenius import ArrheniusValues, analyse_arrhenius

    rng = np.random.default_rng(7)
    ea, temps = 0.4, [0.0, 20.0, 40.0, 60.0, 80.0]
    table = []
    for t in temps:
        sigma = 1e-3 * math.exp(-ea / (K_B_EV * (t + 273.15)) + ea / (K_B_EV * 298.15))
        table.append({
            "T_set_C": t, "T_C": t, "sigma_S_cm": sigma * (1 + 0.01 * rng.standard_normal()),
            "sigma_stderr_S_cm": 0.01 * sigma, "valid": True, "reason": None,
            "warnings": ["bulk arc above the band: sigma includes the leads; measure them"] if t > 50 else [],
        })  # fmt: skip
    table.append({"T_set_C": 100.0, "T_C": 100.0, "sigma_S_cm": 1.0, "sigma_stderr_S_cm": None,
                  "valid": False, "reason": "sigma not determined", "warnings": []})  # fmt: skip
    values = ArrheniusValues.__new__(ArrheniusValues)
    object.__setattr__(values, "form", "sigma")
    object.__setattr__(values, "vtf", False)
    object.__setattr__(values, "r_leads", 0.0)
    object.__setattr__(values, "r_leads_source", "")
    out = analyse_arrhenius(values, table)
    assert out["ea_eV"] == pytest.approx(ea, abs=3 * out["ea_stderr_eV"])
    assert 0 < out["ea_stderr_eV"] < 0.01
    assert any("leads" in w and "60, 80" in w for w in out["warnings"])
    assert any("invalid" in w and "100" in w for w in out["warnings"])
    assert "100.00" not in out["sigma_S_cm"]
