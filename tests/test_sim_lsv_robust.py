"""Issue 9 acceptance, LSV: the simulator runs at any documented conductivity and resistance
(no root-finding failure, no current at open circuit) and the onset is within 50 mV of the
truth, or the result is invalid with the reason."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drivers.sim.lsv import OxidationModel
from drivers.sim.params import SimParams
from labctl.runner import prepare_run

FAST = {"upper": 6.0, "rate": 10, "resolution": 10, "rest": 1}


def run_lsv(sim: dict[str, object], tmp_path: Path, params: dict[str, object] = FAST) -> tuple[dict, object]:
    prepared = prepare_run(
        "lsv", params={k: str(v) for k, v in params.items()}, sim={k: str(v) for k, v in sim.items()}, out_dir=tmp_path
    )
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    return outcome.results, outcome.steps[-1].data


@pytest.mark.parametrize("sigma", [1e-9, 1e-8, 1e-7, 1e-6])
@pytest.mark.parametrize("r_series", [0.25, 1000.0])
def test_no_current_at_open_circuit_and_no_solver_failure(sigma, r_series) -> None:
    p = SimParams(sigma=sigma, r_series=r_series)
    model = OxidationModel.calibrate(p, 25.0, p.ocv_bare, p.q_dl * p.area)
    i_f, _ = model.faradaic(np.array([p.ocv_bare]))
    assert i_f[0] == 0.0  # no oxidation at the rest potential, whatever the calibration
    _, current = model.solve(np.array([p.ocv_bare, 5.0, 6.0]), 0.0)
    assert current[0] == pytest.approx(0.0, abs=1e-15) and np.all(np.isfinite(current))
    assert np.all(np.diff(current) > 0)  # more oxidising, more current
    if not model.calibrated:  # said so: the ohmic drop at 0.05 mA/cm² spans the window
        assert (p.esw - p.ocv_bare) < 5e-5 * p.area * model.r_ohm * 1.01 or model.r_leak < math.inf


@pytest.mark.parametrize("sigma", [1e-9, 1e-7])
def test_resistive_cells_report_no_onset_with_the_reason(sigma, tmp_path) -> None:
    results, data = run_lsv({"sigma": sigma}, tmp_path)
    c_nu = SimParams().q_dl * 10e-3  # F × V/s at 10 mV/s (1 cm²)
    assert abs(data["I"][0]) <= 1.05 * c_nu  # only the capacitive current at the start of the sweep
    assert results["valid"] is False and results["onset_V"] is None
    assert "no onset" in results["reason"]


def _draws(n: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "esw": round(float(rng.uniform(3.5, 5.6)), 3),
            "sigma": float(10 ** rng.uniform(-9, -2)),
            "r_series": float(10 ** rng.uniform(-1, 3)),
            "sigma_e": float(rng.choice([0.0, 1e-12, 1e-9, 1e-7])),
            "tafel": float(rng.uniform(40, 300)),
            "seed": k + 1,
        }
        for k in range(n)
    ]


@pytest.mark.parametrize("truth", _draws(10, 4242))
def test_onset_within_50_mV_or_invalid_with_reason(truth, tmp_path) -> None:
    results, _ = run_lsv(truth, tmp_path)
    if results["valid"]:
        assert results["onset_V"] == pytest.approx(truth["esw"], abs=0.05), results
    else:
        assert results["reason"]


def test_leakage_crossing_the_threshold_is_not_an_onset(tmp_path) -> None:
    """1e-6 S/cm of electronic conduction passes 0.05 mA/cm² long before the oxidation wave."""
    results, _ = run_lsv({"sigma_e": 1e-6}, tmp_path)
    assert results["valid"] is False and "no oxidation wave" in results["reason"]
