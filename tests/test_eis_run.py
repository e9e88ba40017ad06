"""Issue 2 acceptance: `labctl run eis` on the simulator recovers the truth, and
runs end cleanly on bad input, Ctrl-C and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labctl.runner import prepare_run
from labctl.storage import open_run

LABCTL = [sys.executable, "-m", "labctl.cli"]


def _draws(n: int, seed: int) -> list[tuple[float, float, float, float, int]]:
    """Random truths: σ log-uniform 1e-7..1e-2 S/cm, L log-uniform 20..2000 µm."""
    rng = np.random.default_rng(seed)
    draws = []
    for k in range(n):
        sigma = 10 ** rng.uniform(-7, -2)
        thickness = 10 ** rng.uniform(np.log10(20), np.log10(2000))
        area = rng.uniform(0.5, 2.0)
        r_series = rng.uniform(0.1, 1.0)
        draws.append((sigma, thickness, area, r_series, k))
    return draws


CORNERS = [
    (s, t, 2.0, 0.25, 100 + i) for i, (s, t) in enumerate([(1e-7, 20), (1e-7, 2000), (1e-2, 20), (1e-2, 2000)])
]


@pytest.mark.parametrize(("sigma", "thickness", "area", "r_series", "seed"), _draws(16, 2026) + CORNERS)
def test_eis_recovers_sigma_within_2_percent(tmp_path, sigma, thickness, area, r_series, seed):
    prepared = prepare_run(
        "eis",
        params={"r_leads": str(r_series)},
        sim={
            "sigma": str(sigma),
            "thickness": str(thickness),
            "area": str(area),
            "r_series": str(r_series),
            "seed": str(seed),
        },
        out_dir=tmp_path,
    )
    outcome = prepared.execute()
    assert outcome.status.value == "completed", outcome.error
    recovered = outcome.results["sigma_S_cm"]
    assert recovered == pytest.approx(sigma, rel=0.02)
    # The file holds the same result and the truth it was run against.
    with open_run(prepared.path) as run:
        assert run.status == "completed"
        assert run.results["sigma_S_cm"] == pytest.approx(recovered)
        assert run.meta["simulation"]["sigma"] == pytest.approx(sigma)
        spectrum = run.steps[-1].spectrum
        assert spectrum is not None and len(spectrum) == 61
        assert spectrum["freq"][0] == pytest.approx(1e5) and spectrum["freq"][-1] == pytest.approx(0.1)


def _run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_acceptance_command_json(tmp_path):
    proc = _run_cli(
        [
            "run",
            "eis",
            "--instrument",
            "sim",
            "--sim",
            "sigma=3.3e-4",
            "--sim",
            "thickness=120",
            "--sim",
            "area=2.0",
            "--sim",
            "r_series=0.25",
            "-p",
            "r_leads=0.25",
            "--json",
            "--out",
            str(tmp_path),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert set(payload) >= {"file", "status", "results"}
    assert payload["status"] == "completed"
    assert payload["results"]["sigma_S_cm"] == pytest.approx(3.3e-4, rel=0.02)
    assert payload["results"]["R_bulk_ohm"] == pytest.approx(120e-4 / (3.3e-4 * 2.0), rel=0.02)
    assert Path(payload["file"]).is_file()
    shown = _run_cli(["show", payload["file"], "--json"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["status"] == "completed"
    assert [s["kind"] for s in summary["steps"]] == ["Rest", "Impedance"]
    assert summary["results"]["sigma_S_cm"] == pytest.approx(payload["results"]["sigma_S_cm"])
    human = _run_cli(["show", payload["file"]], tmp_path)
    assert human.returncode == 0 and "completed" in human.stdout and "sigma_S_cm" in human.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-p", "amplitude=-5"], ["parameter 'amplitude'", "-5 mV is out of range", "0.1 to 500 mV"]),
        (["-p", "f_start=1e9"], ["parameter 'f_start'", "allowed: a number from 0.001 to 1e+07 Hz"]),
        (["-p", "thicknes=100"], ["parameter 'thicknes'", "unknown parameter", "thickness"]),
        (["--sim", "sigma=5"], ["sigma", "1e-09"]),
        (["--sim", "colour=blue"], ["colour"]),
        (["--speed", "-3"], ["parameter 'speed'"]),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, args, fragments):
    out = tmp_path / "runs"
    proc = _run_cli(["run", "eis", "--out", str(out), *args], tmp_path)
    assert proc.returncode == 2, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unknown_protocol_is_refused(tmp_path):
    proc = _run_cli(["run", "nosuch", "--out", str(tmp_path / "runs")], tmp_path)
    assert proc.returncode == 2
    assert "unknown protocol 'nosuch'" in proc.stderr and "eis" in proc.stderr


def _start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [*LABCTL, "run", "eis", "--speed", "10", "--out", str(out), "--json", "-p", "rest=2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        files = list(out.glob("*.h5")) if out.exists() else []
        if files:
            try:
                with open_run(files[0]) as run:
                    if run.n_spectra >= 3:
                        return proc, files[0]
            except OSError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the run never produced data")


def test_sigint_aborts_cleanly_with_safe_state_recorded(tmp_path):
    proc, path = _start_slow_run(tmp_path)
    live = _run_cli(["show", str(path), "--json"], tmp_path)  # readable while written
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["status"] == "running"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    payload = json.loads(stdout)
    assert payload["status"] == "aborted"
    with open_run(path) as run:
        assert run.status == "aborted"
        assert "Ctrl-C" in run.error
        states = [e["state"] for e in run.events]
        assert "safe" in states
        sweep = run.steps[-1]
        assert sweep.kind == "Impedance" and sweep.end_reason.value == "aborted"
        assert 3 <= len(sweep.spectrum) < 61


def test_sigkill_leaves_readable_file_reported_interrupted(tmp_path):
    proc, path = _start_slow_run(tmp_path)
    time.sleep(1.2)  # at least one more flush
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    time.sleep(0.5)
    with open_run(path) as run:
        points = run.spectra()
        assert len(points) >= 3
        assert np.all(np.diff(points["freq"]) < 0)
        assert run.stored_status == "running"
    proc_show = _run_cli(["show", str(path), "--json"], tmp_path)
    assert proc_show.returncode == 0, proc_show.stderr
    summary = json.loads(proc_show.stdout)
    assert summary["status"] == "interrupted"
    human = _run_cli(["show", str(path)], tmp_path)
    assert "interrupted" in human.stdout


def test_program_exit_mid_run_aborts_and_leaves_the_cell_safe(tmp_path):
    """A script that starts a run and exits (or crashes) does not leave the cell driven."""
    script = f"""
import sys
from pathlib import Path
from labctl.runner import prepare_run
prepared = prepare_run("eis", params={{}}, speed="5", out_dir=Path({str(tmp_path)!r}))
handle, subscription = prepared.start()
import time; time.sleep(1.0)
print(prepared.path, flush=True)
raise SystemExit("script crashed")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and "script crashed" in proc.stderr
    path = Path(proc.stdout.strip())
    with open_run(path) as run:
        assert run.status == "aborted"
        assert run.error == "program exiting"
        assert "safe" in [e["state"] for e in run.events]
