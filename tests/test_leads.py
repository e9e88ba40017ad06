"""Lead calibration (issue 9): the ``leads`` protocol recovers R and L of the simulated
leads, ``--save`` stores them per channel next to the lab file, and eis / arrhenius /
transference on that channel subtract them by default and say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from labctl import calibration
from labctl.analysis.leads import fit_leads
from labctl.cli import main
from labctl.config import load_lab
from labctl.registry import get_protocol
from labctl.runner import prepare_run

LAB = """
[instruments.pstat]
driver = "emstat4"
resource = "/dev/labctl-test-no-such-port"

[instruments.pstat.channels.1]
max_current = 50.0
{leads}
"""


def _lab(tmp_path: Path, leads: str = "") -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(LAB.format(leads=leads), encoding="utf-8")
    return path


def _run(tmp_path: Path, protocol: str, sim: dict, params: dict | None = None, lab=None) -> dict:
    prepared = prepare_run(
        protocol,
        params={k: str(v) for k, v in (params or {}).items()},
        sim={k: str(v) for k, v in sim.items()},
        out_dir=tmp_path / "runs",
        lab=lab,
    )
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    return outcome.results


def _cli(args: list[str]):
    return CliRunner().invoke(main, args)


def _one_line_usage_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.output, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- measuring


def _truths(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "r_series": round(float(10 ** rng.uniform(-2, 0.7)), 4),
            "inductance": float(10 ** rng.uniform(-8, -6)),
            "noise": float(rng.uniform(0.001, 0.01)),
            "seed": int(rng.integers(0, 2**31)),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("truth", _truths(6, seed=2026), ids=lambda t: f"R{t['r_series']}")
def test_leads_recovers_r_and_l_of_the_short(tmp_path, truth: dict) -> None:
    res = _run(tmp_path, "leads", truth)
    assert res["valid"], res["reason"]
    assert abs(res["r_ohm"] - truth["r_series"]) <= 4 * res["r_stderr_ohm"]
    assert abs(res["l_h"] - truth["inductance"]) <= 4 * res["l_stderr_h"] + 1e-10
    assert res["r_stderr_ohm"] < 0.01 * truth["r_series"]


def test_leads_on_a_cell_is_not_a_calibration(tmp_path) -> None:
    res = _run(tmp_path, "leads", {"cell": "ss"})
    assert not res["valid"]
    assert "not a short" in res["reason"] or "explains the spectrum only" in res["reason"]


def test_fit_leads_refuses_a_capacitive_spectrum() -> None:
    f = np.logspace(5, 2, 31)
    z = 0.3 + 1.0 / (1j * 2 * np.pi * f * 1e-6)  # a series capacitor: an open clamp
    res = fit_leads(f, z)
    assert not res.valid and "capacitive" in res.reason


# --------------------------------------------------------------------------- storing and using


def test_save_then_eis_uses_the_calibration(tmp_path) -> None:
    lab = _lab(tmp_path)
    sim = ["--sim", "r_series=0.8", "--sim", "seed=3"]
    saved = _cli(["run", "leads", "--lab", str(lab), *sim, "--save", "--json", "-q", "--out", str(tmp_path / "runs")])
    assert saved.exit_code == 0, saved.stderr
    payload = json.loads(saved.stdout)
    cal_path = Path(payload["calibration"])
    assert cal_path == tmp_path / "lab.calibration.toml"
    stored = calibration.load_file(cal_path)["sim"]
    assert stored.r_ohm == pytest.approx(0.8, abs=4 * stored.r_stderr_ohm)
    assert stored.run == payload["file"] and stored.measured
    assert not list(tmp_path.glob(".lab.calibration.toml.*"))  # no temporary file left behind

    lab_config = load_lab(lab)
    truth_rb = 100e-4 / (3.3e-4 * 1.0)  # L/(σA) of the default simulated membrane
    corrected = _run(tmp_path, "eis", {"r_series": 0.8, "seed": 4}, lab=lab_config)
    assert corrected["r_leads_source"].startswith(f"calibration {cal_path}")
    assert stored.measured in corrected["r_leads_source"]
    uncorrected = _run(tmp_path, "eis", {"r_series": 0.8, "seed": 4})
    assert uncorrected["r_leads_source"] == "none (0 ohm assumed)"
    assert abs(corrected["R_bulk_ohm"] - truth_rb) < 0.01 * truth_rb
    assert uncorrected["R_bulk_ohm"] - truth_rb > 0.6  # the leads' 0.8 ohm left in
    given = _run(tmp_path, "eis", {"r_series": 0.8, "seed": 4}, {"r_leads": 0.5}, lab=lab_config)
    assert given["r_leads_source"] == "parameter" and given["r_leads_ohm"] == 0.5

    tplus = _run(tmp_path, "transference", {"r_series": 0.8, "seed": 5}, lab=lab_config)
    assert tplus["r_leads_source"].startswith("calibration") and tplus["r_leads_ohm"] == stored.r_ohm
    assert tplus["valid"] and abs(tplus["t_plus"] - 0.4) <= 0.03


def test_saving_keeps_other_channels_and_replaces_its_own(tmp_path) -> None:
    lab = load_lab(_lab(tmp_path))
    path = calibration.calibration_path(lab.path)
    first = {"valid": True, "r_ohm": 0.2, "r_stderr_ohm": 0.001, "l_h": 1e-7, "l_stderr_h": 1e-9}
    calibration.save_from_results(lab, "pstat:1", first, Path("a.h5"))
    calibration.save_from_results(lab, "sim", {**first, "r_ohm": 0.3}, Path("b.h5"))
    calibration.save_from_results(lab, "pstat:1", {**first, "r_ohm": 0.25}, Path("c.h5"))
    stored = calibration.load_file(path)
    assert stored["pstat:1"].r_ohm == 0.25 and stored["pstat:1"].run == "c.h5"
    assert stored["sim"].r_ohm == 0.3
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not saved: not a short"):
        calibration.save_from_results(lab, "sim", {"valid": False, "reason": "not a short"}, Path("d.h5"))
    assert path.read_bytes() == before


def test_lab_file_entry_and_file_entry_the_later_wins(tmp_path) -> None:
    lab = load_lab(_lab(tmp_path, "leads = { r_ohm = 0.4, l_h = 2e-7, measured = 2026-01-01 }"))
    cal = calibration.lead_calibration(lab, "pstat")
    assert cal is not None and cal.r_ohm == 0.4 and cal.source_file == lab.path
    calibration.save_from_results(lab, "pstat:1", {"valid": True, "r_ohm": 0.2}, Path("x.h5"))
    newer = calibration.lead_calibration(lab, "pstat:1")
    assert newer is not None and newer.r_ohm == 0.2  # measured now, after 2026-01-01
    params = calibration.apply_r_leads_default(get_protocol("arrhenius"), {}, lab, "pstat")
    assert float(params["r_leads"]) == 0.2 and params["r_leads_source"].startswith("calibration ")
    lab2 = load_lab(_lab(tmp_path, "leads = { r_ohm = 0.4, measured = 2999-01-01 }"))
    later = calibration.lead_calibration(lab2, "pstat")
    assert later is not None and later.r_ohm == 0.4
    assert calibration.apply_r_leads_default(get_protocol("ccd"), {}, lab2, "pstat") == {}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("leads", "fragment"),
    [
        ("leads = { r_ohm = -1.0 }", "channels.1.leads.r_ohm: -1 Ω is out of range"),
        ("leads = { l_h = 1e-7 }", "channels.1.leads.r_ohm: missing"),
        ("leads = { r_ohm = 0.2, measured = 'yesterday' }", "leads.measured: 'yesterday' is not a date"),
        ("leads = { r_ohm = 0.2, colour = 'red' }", "leads.colour: unknown key"),
        ("leads = 0.2", "channels.1.leads: expected a table"),
        ("leads = { r_ohm = 'nan' }", "leads.r_ohm: expected a number, got 'nan'"),
    ],
)
def test_bad_lab_file_leads_is_a_one_line_usage_error(tmp_path, leads: str, fragment: str) -> None:
    lab = _lab(tmp_path, leads)
    result = _cli(["run", "eis", "--lab", str(lab), "-q", "--out", str(tmp_path / "runs")])
    _one_line_usage_error(result, fragment)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('[leads."sim"]\nr_ohm = "abc"\n', "leads.sim.r_ohm: expected a number, got 'abc'"),
        ('[leads."sim"]\nl_h = 1e-7\n', "leads.sim.r_ohm: missing"),
        ("[other]\n", "unknown section [other]"),
        ("r_ohm = = 1\n", "not valid TOML"),
    ],
)
def test_damaged_calibration_file_is_a_one_line_usage_error(tmp_path, content: str, fragment: str) -> None:
    lab = _lab(tmp_path)
    (tmp_path / "lab.calibration.toml").write_text(content, encoding="utf-8")
    for args in (["run", "eis"], ["run", "leads", "--save"]):
        result = _cli([*args, "--lab", str(lab), "-q", "--out", str(tmp_path / "runs")])
        _one_line_usage_error(result, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "leads", "--save"], "needs --lab"),
        (["run", "eis", "--save", "--lab", "LAB"], "only the 'leads' protocol stores a calibration"),
        (["run", "eis", "-p", "r_leads_source=mine", "--lab", "LAB"], "r_leads_source': is filled in by labctl"),
    ],
)
def test_save_and_source_misuse(tmp_path, args: list[str], fragment: str) -> None:
    lab = str(_lab(tmp_path))
    result = _cli([*(lab if a == "LAB" else a for a in args), "-q", "--out", str(tmp_path / "runs")])
    _one_line_usage_error(result, fragment)


def test_invalid_leads_run_is_not_saved(tmp_path) -> None:
    lab = _lab(tmp_path)
    result = _cli(["run", "leads", "--lab", str(lab), "--sim", "cell=ss", "--save", "-q", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "calibration not saved" in result.stderr + result.stdout
    assert not (tmp_path / "lab.calibration.toml").exists()
