"""A run killed mid-way: `labctl recover` makes its file an ordinary HDF5 file
marked interrupted; `show` and `analyze` report the completed steps."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from labctl.events import RunStarted
from labctl.storage import RunFileWriter, open_run
from tests.test_storage import INFO

ROOT = Path(__file__).resolve().parents[1]
LABCTL = [sys.executable, "-m", "labctl.cli"]
RUN_PARAMS = ("-p", "half_cycle=0.1", "-p", "cycles=50")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LABCTL, *args], capture_output=True, text=True, timeout=120, env=ENV)


def completed_steps(path: Path) -> int:
    with open_run(path, timeout=0.2) as run:
        return sum(1 for s in run.steps if not s.running)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cycling run SIGKILLed once at least 3 of its 100 steps completed
    (waits on the file, not on time)."""
    out = tmp_path_factory.mktemp("killed")
    proc = subprocess.Popen(
        [*LABCTL, "run", "cycling", "-q", "--out", str(out), "--speed", "2000", *RUN_PARAMS],
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 120  # hang guard only
        path = None
        while time.monotonic() < deadline and proc.poll() is None:
            files = list(out.glob("*.h5"))
            if files:
                path = files[0]
                try:
                    if completed_steps(path) >= 3:
                        break
                except OSError:
                    pass  # being created
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert path is not None
    return path


@pytest.fixture
def killed_copy(killed_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / killed_run.name
    shutil.copy(killed_run, copy)
    return copy


def test_recover_makes_a_killed_run_file_ordinary(killed_copy: Path) -> None:
    with pytest.raises(OSError):
        h5py.File(killed_copy, "r")  # flagged open by the dead writer
    n_completed = completed_steps(killed_copy)
    proc = labctl("recover", str(killed_copy))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "recovered as interrupted" in lines[0] and "is gone" in lines[0]
    assert f"{n_completed} of {n_completed + 1} steps complete" in lines[0]
    with h5py.File(killed_copy, "r") as f:  # plain h5py, no SWMR
        assert f.attrs["status"] == "interrupted"
        assert "closed by labctl recover" in f.attrs["error"] and "is gone" in f.attrs["error"]
        groups = sorted(f["by_step"])
        assert len(groups) == n_completed + 1
        for name in groups[:n_completed]:
            g = f["by_step"][name]
            assert g.attrs["end_reason"] and g["data"].shape[0] > 0
            assert g["data"][:]["t"][0] >= g.attrs["t_start"] - 1e-9
    if shutil.which("h5ls"):
        listing = subprocess.run(["h5ls", str(killed_copy)], capture_output=True, text=True, timeout=60)
        assert listing.returncode == 0 and "by_step" in listing.stdout
    again = labctl("recover", str(killed_copy))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert again.stdout.count("\n") == 1


def test_analyze_an_interrupted_run_from_its_completed_steps(killed_copy: Path) -> None:
    n_completed = completed_steps(killed_copy)
    for stage in ("killed", "recovered"):
        before = killed_copy.read_bytes()
        proc = labctl("analyze", str(killed_copy), "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["status"] == "interrupted", stage
        assert report["completed_steps"] == n_completed
        assert report["note"].startswith(f"run interrupted after step {n_completed - 1};")
        assert f"the {n_completed} completed steps" in report["note"]
        # one overpotential per recorded half-cycle that has data
        assert len(report["results"]["mean_overpotential_V"]) == n_completed
        assert all(0 < v < 1 for v in report["results"]["mean_overpotential_V"])
        show = json.loads(labctl("show", str(killed_copy), "--json").stdout)
        assert show["status"] == "interrupted" and show["steps"][-1]["end_reason"] == "interrupted"
        assert show["note"].startswith(f"run interrupted after step {n_completed - 1}")
        assert ("labctl recover" in show["note"]) == (stage == "killed")
        assert killed_copy.read_bytes() == before  # readers never modify the file
        assert labctl("recover", str(killed_copy)).returncode == 0


def test_recover_refuses_what_is_not_a_run_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    for path, why in ((text, "not an HDF5 file"), (other, "format:")):
        before = path.read_bytes()
        proc = labctl("recover", str(path))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and why in proc.stderr and str(path) in proc.stderr
        assert path.read_bytes() == before


def test_recover_leaves_a_live_run_alone(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))
        before = path.stat().st_mtime_ns, path.stat().st_size
        proc = labctl("recover", str(path))
        assert proc.returncode == 1 and "may still be alive" in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert (path.stat().st_mtime_ns, path.stat().st_size) == before


def test_analyze_of_a_run_cut_before_its_first_step(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    info = dataclasses.replace(
        INFO, protocol="cycling", parameters={}, cell={"type": "Li|SE|Li", "area_cm2": 1.0, "thickness_um": 500.0}
    )
    with RunFileWriter(path) as w:
        w.handle(RunStarted(info))  # closed without RunEnded: finalized as interrupted
    proc = labctl("analyze", str(path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {path}: run interrupted before its first step completed; nothing to analyse"


@pytest.mark.parametrize(("silent_s", "recovered"), [(60.0, False), (700.0, True)])
def test_a_writer_on_another_host_is_dead_only_after_a_long_silence(
    killed_copy: Path, tmp_path: Path, silent_s: float, recovered: bool
) -> None:
    """No pid to ask on another host: the heartbeat must be older than
    max(600 s, 100 flushes) before the file is touched (DESIGN notes §7)."""
    assert labctl("recover", str(killed_copy)).returncode == 0
    path = tmp_path / "elsewhere.h5"
    shutil.copy(killed_copy, path)
    with h5py.File(path, "r+") as f:  # as if a writer on another host had stopped flushing
        f.attrs["status"] = "running"
        f.attrs["writer_host"] = "another-host.invalid"
        for name in ("results", "by_step"):
            del f[name]
        hb = f["heartbeat"][0]
        hb["wall_time"] = time.time() - silent_s
        f["heartbeat"][0] = hb
    proc = labctl("recover", str(path))
    if recovered:
        assert proc.returncode == 0 and "no heartbeat for" in proc.stdout, proc.stderr
        with h5py.File(path, "r") as f:
            assert f.attrs["status"] == "interrupted" and "by_step" in f
    else:
        assert proc.returncode == 1 and "may still be alive" in proc.stderr
        with h5py.File(path, "r") as f:
            assert f.attrs["status"] == "running" and "by_step" not in f
