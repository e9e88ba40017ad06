"""Issue 3 acceptance: each protocol on the simulator recovers the simulated truth,
for random truths across (and beyond) the seed papers' ranges."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from labctl.params import ParameterError
from labctl.runner import prepare_run
from labctl.storage import open_run


def run(protocol: str, params: dict[str, object], sim: dict[str, object], tmp_path) -> dict:
    prepared = prepare_run(
        protocol,
        params={k: str(v) for k, v in params.items()},
        sim={k: str(v) for k, v in sim.items()},
        out_dir=tmp_path,
    )
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    with open_run(prepared.path) as stored:  # the file holds what was returned
        assert stored.status == "completed"
        assert stored.results.keys() == outcome.results.keys()
    return outcome.results


def draws(n: int, seed: int, **ranges: tuple[float, float, str]) -> list[dict[str, float]]:
    """n random truths; each range is (low, high, 'lin'|'log')."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        truth: dict[str, float] = {"seed": k + 1}
        for name, (lo, hi, scale) in ranges.items():
            truth[name] = 10 ** rng.uniform(math.log10(lo), math.log10(hi)) if scale == "log" else rng.uniform(lo, hi)
        out.append(truth)
    return out


@pytest.mark.parametrize(
    "truth",
    draws(
        5, 11, sigma=(1e-6, 1e-2, "log"), ea=(0.05, 0.6, "lin"), thickness=(50, 1000, "log"), r_series=(0.1, 1, "lin")
    ),
)
def test_arrhenius_recovers_ea_and_sigma(tmp_path, truth):
    results = run(
        "arrhenius",
        {"settle_time": 600, "r_leads": truth["r_series"]},
        truth,
        tmp_path,
    )
    assert results["form"] == "sigma"
    assert results["ea_eV"] == pytest.approx(truth["ea"], abs=0.01)
    kb = 8.617333262e-5
    for row in results["table"]:
        t_k = row["T_C"] + 273.15
        expected = truth["sigma"] * math.exp(-truth["ea"] / kb * (1 / t_k - 1 / 298.15))
        assert row["sigma_S_cm"] == pytest.approx(expected, rel=0.02), row
    assert len(results["table"]) == 12


@pytest.mark.parametrize(
    "truth",
    draws(6, 12, t_plus=(0.1, 0.95, "lin"), sigma=(1e-6, 1e-3, "log"), thickness=(50, 500, "log")),
)
def test_transference_recovers_t_plus(tmp_path, truth):
    results = run("transference", {"r_leads": 0.25}, {**truth, "r_series": 0.25}, tmp_path)
    assert results["t_plus"] == pytest.approx(truth["t_plus"], abs=0.03)
    assert results["I0_convention"] == "ohmic"
    assert results["valid"], results["reason"]
    # steady = the hold lasted 5 fitted diffusion times; a shorter one is extrapolated and says so
    assert results["Iss_source"] == ("measured" if results["steady"] else "extrapolated")
    assert results["Rss_ohm"] > results["R0_ohm"]  # the interface grew during the hold (rss_ratio 1.5)


@pytest.mark.parametrize("truth", draws(6, 13, esw=(3.8, 5.5, "lin"), sigma=(1e-6, 1e-2, "log")))
def test_lsv_onset_finds_esw(tmp_path, truth):
    results = run("lsv", {"upper": 6.0}, truth, tmp_path)
    assert results["method"] == "threshold"
    assert results["onset_V"] == pytest.approx(truth["esw"], abs=0.05)
    # The other methods are reported too, below the threshold onset (they mark where the rise starts).
    assert results["tangent_V"] < results["onset_V"] and results["dIdV_V"] < results["onset_V"]


def _first_step_above(ccd: float, start: float = 0.1, step: float = 0.1) -> float:
    k = 0
    while round(start + k * step, 9) <= ccd + 1e-9:
        k += 1
    return round(start + k * step, 9)


@pytest.mark.parametrize(
    ("truth", "kind"),
    [(t, "hard") for t in draws(3, 14, ccd=(0.2, 3.0, "lin"))]
    + [(t, "soft") for t in draws(3, 15, ccd=(0.2, 3.0, "lin"))],
)
def test_ccd_fails_at_the_correct_step(tmp_path, truth, kind):
    results = run("ccd", {}, {**truth, "short_kind": kind}, tmp_path)
    expected = _first_step_above(truth["ccd"])
    assert results["ccd_mA_cm2"] == pytest.approx(expected)
    assert results["last_passed_mA_cm2"] == pytest.approx(round(expected - 0.1, 9))
    assert results["failure"] == kind


@pytest.mark.parametrize("truth", draws(5, 16, ce=(0.80, 0.999, "lin"), sigma=(1e-4, 1e-2, "log")))
def test_li_cu_average_ce(tmp_path, truth):
    results = run("li_cu_ce", {}, truth, tmp_path)
    assert results["valid"] is True
    assert results["ce_avg"] == pytest.approx(truth["ce"], abs=0.002)
    # Q_s follows from the truth: CE·Q_t − n(1−CE)·Q_c with the defaults 5, 0.5, 10.
    assert results["Q_s_mAh_cm2"] == pytest.approx(truth["ce"] * 5 - 10 * (1 - truth["ce"]) * 0.5, abs=0.01)
    assert results["nucleation_overpotential_mV"] < -5  # a dip below the growth plateau on bare Cu


def test_li_cu_too_resistive_for_the_cutoff_is_invalid_not_wrong(tmp_path):
    # 1e-5 S/cm over 100 µm: 0.5 V of ohmic drop at 0.5 mA/cm² on top of the kinetics, so
    # plating meets the -1.0 V limit at once. The result must say so rather than report a CE.
    results = run("li_cu_ce", {}, {"sigma": 1e-5, "ce": 0.95}, tmp_path)
    assert results["valid"] is False and results["ce_avg"] is None
    assert any("could not be plated" in reason for reason in results["invalid_reasons"])


def test_li_cu_exhausted_reservoir_is_invalid(tmp_path):
    # CE 0.5 loses 0.25 mAh/cm² per cycle: the 1 mAh/cm² reservoir runs out within n = 10.
    results = run("li_cu_ce", {"q_t": 1.0, "q_c": 0.5}, {"ce": 0.5}, tmp_path)
    assert results["valid"] is False
    assert results["exhausted_cycles"]


@pytest.mark.parametrize("ce_full", [0.99, 0.9995])
def test_full_cell_cycling_ce_per_cycle(tmp_path, ce_full):
    results = run("cycling", {"mode": "full", "cycles": 4, "rates": 0.5}, {"ce_full": ce_full, "fade": 0.01}, tmp_path)
    assert results["cycles_completed"] == 4
    assert np.allclose(results["coulombic_efficiency"], ce_full, atol=0.002)
    retention = results["retention"]
    assert retention[0] == 1.0 and all(b < a for a, b in itertools.pairwise(retention))


def test_symmetric_cycling_overpotential_grows_with_rate(tmp_path):
    results = run("cycling", {"rates": "0.1,0.5", "cycles": 2, "half_cycle": 0.25}, {}, tmp_path)
    assert results["cycles_completed"] == 4
    hyst = results["hysteresis_V"]
    assert hyst[2] > 3 * hyst[0] > 0  # 5x the current: ohmic + asinh kinetics, more than 3x the gap


@pytest.mark.parametrize(
    ("protocol", "params", "name", "fragment"),
    [
        ("li_cu_ce", {"j": "-0.5"}, "j", "out of range"),
        ("li_cu_ce", {"q_c": "6"}, "q_c", "must not exceed Q_t"),
        ("lsv", {"upper": "2.0"}, "upper", "not above the cell's open-circuit voltage"),
        ("ccd", {"start": "2", "max": "1"}, "max", "below start"),
        ("arrhenius", {"temperatures": "25"}, "temperatures", "at least two"),
        ("nosuch", {}, "protocol", "unknown protocol"),
    ],
)
def test_bad_parameters_refused_before_anything_runs(tmp_path, protocol, params, name, fragment):
    out = tmp_path / "runs"
    with pytest.raises(ParameterError) as info:
        prepare_run(protocol, params=params, out_dir=out)
    assert info.value.name == name and fragment in str(info.value)
    assert not out.exists()
