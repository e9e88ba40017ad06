"""Issue 12: the full-cell C-rate protocols recover the simulated truth.

Truths are drawn at random (seeded): cathode, areal capacity, electrode area,
fade per full-depth cycle, charging CE. What is recovered, and the tolerances:

* specific discharge capacity of the reference cycle (mAh/g) vs the simulator's
  capacity in the window, C0 × (x(OCV = v_max) − x(OCV = v_min)) / active mass:
  within 2 %, never above it (a CV cut-off at C/20 and the 1 C discharge
  overpotential leave up to ~1 % of the window unreached);
* fade per cycle vs the simulator's own capacity trajectory,
  1 − (C_end/C_0)^(1/N): within 3 % (relative) + 2e-5;
* mean CE vs ce_full: within 3e-4;
* the cycle at which retention falls below 80 %: within one cycle of the
  cycle the true trajectory predicts;
* LFP dQ/dV: the mean of the charge and discharge peaks within 20 mV of the
  3.42 V plateau.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from drivers.sim import fullcell as sim_fullcell
from labctl.analyze import replay_run
from labctl.cathode import CathodeSpec
from labctl.params import ParameterError
from labctl.registry import get_protocol
from labctl.runner import prepare_run
from labctl.storage import open_run


def run(protocol: str, params: dict[str, object], sim: dict[str, object], tmp_path) -> tuple[dict, dict]:
    prepared = prepare_run(
        protocol,
        params={k: str(v) for k, v in params.items()},
        sim={k: str(v) for k, v in sim.items()},
        out_dir=tmp_path,
    )
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    with open_run(prepared.path) as stored:  # what was returned is what the file holds
        assert stored.results.keys() == outcome.results.keys()
        assert stored.results["table"]["discharge_mAh_g"] == pytest.approx(
            outcome.results["table"]["discharge_mAh_g"], nan_ok=True
        )
    return outcome.results, prepared.channel.truth()["model"]


def draws(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        out.append(
            {
                "seed": k + 1,
                "cathode": ("nmc", "lfp")[k % 2],
                "capacity": float(10 ** rng.uniform(math.log10(0.5), math.log10(4.0))),
                "area": float(rng.uniform(0.5, 2.0)),
                "fade": float(10 ** rng.uniform(math.log10(5e-4), math.log10(8e-3))),
                "ce_full": float(rng.uniform(0.99, 0.9995)),
            }
        )
    return out


def window_truth_mAh_g(truth: dict[str, object]) -> float:
    cathode = str(truth["cathode"])
    v_min, v_max = sim_fullcell.WINDOW_V[cathode]
    return sim_fullcell.NOMINAL_MAH_G[cathode] * sim_fullcell.window_fraction(cathode, v_min, v_max)


@pytest.mark.parametrize("truth", draws(6, 12))
def test_long_cycling_recovers_capacity_fade_and_ce(tmp_path, truth):
    cycles = 30
    params = {"cycles": cycles, "c_rate": 1, "formation_cycles": 1, "formation_rate": 0.1}
    results, model = run("long_cycling", params, truth, tmp_path)
    assert results["valid"], results["reason"]
    assert results["cycles_completed"] == cycles + 1
    assert results["reference_cycle"] == 2  # the first cycle after formation
    assert results["cathode"]["chemistry"] == truth["cathode"]
    # 1 C is the nominal capacity in one hour (the simulated cell declares its true capacity).
    assert results["one_c_mA"] == pytest.approx(truth["capacity"] * truth["area"], rel=1e-9)

    # At 0.1 C (the formation cycle) the capacity is the window's; at 1 C kinetics take some.
    expected = window_truth_mAh_g(truth)
    table = results["table"]
    assert table["discharge_mAh_g"][0] == pytest.approx(expected, rel=0.015)
    assert results["capacity_mAh_g"] <= table["discharge_mAh_g"][0] <= expected * 1.001

    # The formation cycle's fade is counted too: capacity after it is C0·(1 − fade·depth).
    c0 = truth["capacity"] * 3.6 * truth["area"]
    c_ref = c0 - truth["fade"] * table["discharge_mAh_cm2"][0] * 3.6 * truth["area"]
    fade_true = 1.0 - (model["capacity_c"] / c_ref) ** (1.0 / cycles)
    fade = results["fade_per_cycle"]
    assert fade["value"] == pytest.approx(fade_true, rel=0.03, abs=2e-5)
    # ... and the simulator's documented fade: ``fade`` per full-depth cycle.
    depth = sim_fullcell.window_fraction(str(truth["cathode"]), *sim_fullcell.WINDOW_V[str(truth["cathode"])])
    assert fade_true == pytest.approx(truth["fade"] * depth, rel=0.06)
    assert results["ce_mean"]["value"] == pytest.approx(truth["ce_full"], abs=3e-4)

    assert len(table["cycle"]) == cycles + 1 and table["cycle"][0] == 1
    assert table["retention"][1] == pytest.approx(1.0)
    assert table["discharge_mAh_cm2"][0] == pytest.approx(
        table["discharge_mAh_g"][0] * results["active_mass_mg"] * 1e-3 / truth["area"], rel=1e-9
    )
    assert all(g > 0 for g in table["voltage_gap_V"])  # charge above discharge
    energy = np.array(table["discharge_energy_mWh"])
    mean_v = np.array(table["mean_discharge_V"])
    q_mAh = np.array(table["discharge_mAh_cm2"]) * truth["area"]
    assert energy == pytest.approx(mean_v * q_mAh, rel=1e-9)  # E = V̄·Q by definition of V̄


def test_analyze_replays_the_run_file(tmp_path):
    prepared = prepare_run(
        "formation", params={"cycles": "2", "c_rate": "0.5"}, sim={"cathode": "lfp"}, out_dir=tmp_path
    )
    outcome = prepared.execute()
    report = replay_run(prepared.path, {})
    assert report["results"]["table"] == outcome.results["table"]
    assert report["results"]["cathode"] == outcome.results["cathode"]  # rebuilt from the file's cell record
    with pytest.raises(ValueError, match=r"'loading'.*out of range"):  # a bad override names the field
        replay_run(prepared.path, {"loading": "-3"})


def test_cycle_below_80_matches_the_true_trajectory(tmp_path):
    truth = {"seed": 3, "cathode": "nmc", "fade": 0.012, "ce_full": 0.998}
    results, model = run("long_cycling", {"cycles": 30}, truth, tmp_path)
    fade_true = 1.0 - (model["capacity_c"] / (2.0 * 3.6)) ** (1.0 / 30)
    predicted = 1 + math.ceil(math.log(0.8) / math.log(1.0 - fade_true))
    assert results["cycle_below_80"] is not None
    assert abs(results["cycle_below_80"] - predicted) <= 1
    assert results["table"]["retention"][results["cycle_below_80"] - 1] < 0.8
    assert results["table"]["retention"][results["cycle_below_80"] - 2] >= 0.8
    assert not any("not reached" in w for w in results["warnings"])


def test_lfp_dqdv_peaks_straddle_the_plateau(tmp_path):
    results, _ = run(
        "long_cycling",
        {"cycles": 2, "c_rate": 0.2, "dqdv_cycles": "1,2", "sample_period": 20},
        {"cathode": "lfp", "fade": 0.0},
        tmp_path,
    )
    for cycle in ("cycle_1", "cycle_2"):
        curves = results["dqdv"][cycle]
        ch, dis = curves["charge"]["peak_V"], curves["discharge"]["peak_V"]
        assert ch > 3.42 > dis
        assert (ch + dis) / 2 == pytest.approx(3.42, abs=0.02)
        # the curve integrates to the half-cycle's capacity (mAh/g)
        bins = np.diff(curves["discharge"]["V"])[0]
        area = float(np.sum(curves["discharge"]["dQdV_mAh_g_V"]) * bins)
        k = int(cycle.split("_")[1]) - 1
        assert area == pytest.approx(results["table"]["discharge_mAh_g"][k], rel=1e-3)


def test_formation_at_slow_rate(tmp_path):
    truth = {"seed": 5, "cathode": "nmc", "ce_full": 0.995, "fade": 0.001}
    results, _ = run("formation", {"cycles": 3, "c_rate": 0.1}, truth, tmp_path)
    assert results["valid"] and results["cycles_completed"] == 3
    assert results["capacity_mAh_g"] == pytest.approx(window_truth_mAh_g(truth), rel=0.01)
    assert results["first_cycle_ce"] <= 0.995 + 1e-3
    assert results["ce_mean"]["value"] == pytest.approx(0.995, abs=3e-4)
    assert sorted(results["dqdv"]) == ["cycle_1", "cycle_2"]  # the selected cycles that exist


def test_rate_capability_falls_with_rate_and_recovers(tmp_path):
    results, _ = run(
        "rate_capability",
        {"rates": "0.2,1,4", "cycles": 2, "return_cycles": 2},
        {"cathode": "lfp", "fade": 0.0, "r_cathode": 60},
        tmp_path,
    )
    rates = results["rates"]
    assert rates["c_rate"] == [0.2, 1.0, 4.0, 0.2]
    assert rates["cycles"] == [2, 2, 2, 2]
    rel = rates["relative_to_first"]
    assert rel[0] == pytest.approx(1.0) and rel[1] < 1.0 and rel[2] < rel[1]
    assert results["recovery"] == pytest.approx(1.0, abs=3e-3)  # no fade: the capacity comes back
    assert results["table"]["c_rate_discharge"] == [0.2, 0.2, 1, 1, 4, 4, 0.2, 0.2]


def test_chamber_temperature_is_set_first(tmp_path):
    results, model = run(
        "long_cycling", {"cycles": 2, "temperature": -20, "settle_time": 600}, {"cathode": "lfp"}, tmp_path
    )
    assert results["temperature_C"] == -20
    assert model["temperature"] == pytest.approx(-20, abs=1.0)
    assert results["cycles_completed"] == 2


def test_the_cathode_is_required_on_hardware_and_validated():
    protocol = get_protocol("long_cycling")
    values = protocol.validate({"thickness": 100, "area": 1.0})
    with pytest.raises(ParameterError, match=r"'cathode'.*required"):
        protocol.resolve_cell(values, None)
    values = protocol.validate(
        {"thickness": 100, "area": 1.0, "cathode": "other", "loading": 10, "specific_capacity": 150}
    )
    with pytest.raises(ParameterError, match=r"'v_min'.*required"):
        protocol.resolve_cell(values, None)
    values = protocol.validate(
        {"thickness": 100, "area": 2.0, "cathode": "nmc", "loading": 10, "specific_capacity": 180}
    )
    cell = protocol.resolve_cell(values, None)
    assert (cell.cathode.v_min, cell.cathode.v_max) == (3.0, 4.3)
    assert cell.cathode.one_c_A(cell.area_cm2) == pytest.approx(180 * 10e-3 * 2.0 * 1e-3)
    with pytest.raises(ParameterError, match="loading_mg_cm2"):
        CathodeSpec.from_mapping(
            {"chemistry": "nmc", "loading_mg_cm2": "x", "specific_capacity_mAh_g": 1, "v_min": 3, "v_max": 4}
        )
    with pytest.raises(ParameterError, match="v_min"):
        CathodeSpec("lfp", 10.0, 150.0, 4.0, 3.0)


@pytest.mark.parametrize(
    ("param", "field"),
    [
        ("loading=-1", "loading"),
        ("cathode=ncm9", "cathode"),
        ("v_min=4.5", "v_min"),
        ("dqdv_cycles=1.5", "dqdv_cycles"),
    ],
)
def test_bad_cell_metadata_is_one_line_exit_2(tmp_path, param, field):
    cmd = [
        sys.executable,
        "-m",
        "labctl.cli",
        "run",
        "long_cycling",
        "-p",
        param,
        "-p",
        "cycles=1",
        "--out",
        str(tmp_path),
        "-q",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written
