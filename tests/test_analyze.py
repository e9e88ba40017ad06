"""`labctl analyze`: replaying stored runs, imported spectra, Arrhenius from a set of files."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest

from labctl.analyze import analyze_arrhenius_files, analyze_spectrum_file, replay_run
from labctl.params import ParameterError
from labctl.runner import prepare_run

LABCTL = [sys.executable, "-m", "labctl.cli"]
PELLET_AREA = math.pi * 0.4**2  # 0.8 cm diameter (reference-data README)
PELLET_TEMPS = [140, 150, 160, 170, 180, 190, 200]


def stored_run(tmp_path, protocol: str, params: dict[str, str], sim: dict[str, str]):
    prepared = prepare_run(protocol, params=params, sim=sim, out_dir=tmp_path)
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    return prepared.path, outcome.results


def test_replay_reproduces_the_live_result(tmp_path):
    path, live = stored_run(tmp_path, "eis", {"r_leads": "0.25"}, {"sigma": "2e-4", "thickness": "300"})
    report = replay_run(path, {})
    assert report["protocol"] == "eis" and report["status"] == "completed"
    assert report["results"]["sigma_S_cm"] == pytest.approx(live["sigma_S_cm"], rel=1e-9)


def test_replay_with_a_changed_analysis_parameter(tmp_path):
    path, live = stored_run(tmp_path, "lsv", {}, {"esw": "4.3"})
    tangent = replay_run(path, {"method": "tangent"})["results"]
    assert tangent["method"] == "tangent"
    assert tangent["onset_V"] == pytest.approx(live["tangent_V"])
    lower = replay_run(path, {"threshold": "0.02"})["results"]
    assert lower["onset_V"] < live["onset_V"]  # a lower threshold is met earlier in the sweep


def test_replay_refuses_a_parameter_that_changes_the_steps(tmp_path):
    path, _ = stored_run(tmp_path, "eis", {}, {})
    with pytest.raises(ValueError, match="replay diverged at step 0: the protocol now asks for Impedance"):
        replay_run(path, {"rest": "0"})


def test_imported_spectrum_conductivity(reference_data):
    # Circuit 2 dummy cell: R0 ~ 150 Ω in series with 502 Ω || C; no spike, so R_total = R0 + R1.
    report = analyze_spectrum_file(
        reference_data / "impedance_py" / "Circuit2_EIS_1.z", {"thickness": "1000", "area": "1"}
    )
    r = report["results"]
    assert report["format"] == "zplot"
    assert r["R_total_ohm"] == pytest.approx(150 + 502, rel=0.02)
    assert r["sigma_S_cm"] == pytest.approx(0.1 / r["R_total_ohm"], rel=1e-9)


def test_imported_spectrum_needs_geometry(reference_data):
    with pytest.raises(ParameterError, match="parameter 'thickness': is required"):
        analyze_spectrum_file(reference_data / "impedance_py" / "exampleData.csv", {"area": "1"})


def test_arrhenius_from_the_pellet_spectra(reference_data):
    # Adediwura et al., J. Mater. Chem. A 12 (2024) 15847: their own batch fit gives
    # Ea(total, σT) 0.856 eV and Ea(bulk) 0.587 eV for these spectra.
    files = sorted((reference_data / "eisfitpython_solid_electrolyte").glob("s04147-*deg.txt"))
    assert len(files) == 7
    report = analyze_arrhenius_files(files, PELLET_TEMPS, {"thickness": "2100", "area": str(PELLET_AREA)}, "sigmaT")
    r = report["results"]
    assert r["ea_eV"] == pytest.approx(0.856, abs=0.01)
    assert r["r_squared"] > 0.999
    assert r["ea_bulk_eV"] == pytest.approx(0.587, abs=0.03)
    assert [row["T_C"] for row in r["table"]] == PELLET_TEMPS
    sigmas = [row["sigma_S_cm"] for row in r["table"]]
    assert all(b > a for a, b in itertools.pairwise(sigmas))


def test_arrhenius_cli(reference_data, tmp_path):
    files = sorted(str(p) for p in (reference_data / "eisfitpython_solid_electrolyte").glob("s04147-*deg.txt"))
    temps = ",".join(str(t) for t in PELLET_TEMPS)
    proc = subprocess.run(
        [
            *LABCTL,
            "analyze",
            "arrhenius",
            *files,
            "--temperatures",
            temps,
            "-p",
            "thickness=2100",
            "-p",
            f"area={PELLET_AREA}",
            "--form",
            "sigmaT",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["ea_eV"] == pytest.approx(0.856, abs=0.01)
    wrong = subprocess.run(
        [
            *LABCTL,
            "analyze",
            "arrhenius",
            *files,
            "--temperatures",
            "140,150",
            "-p",
            "thickness=2100",
            "-p",
            "area=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2 and "2 temperatures given for 7 files" in wrong.stderr


def test_analyze_cli_on_a_run_file(tmp_path):
    path, live = stored_run(tmp_path, "li_cu_ce", {"n": "3", "q_t": "1", "q_c": "0.2"}, {"ce": "0.95"})
    proc = subprocess.run([*LABCTL, "analyze", str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["ce_avg"] == pytest.approx(live["ce_avg"])
    assert live["ce_avg"] == pytest.approx(0.95, abs=0.002)
