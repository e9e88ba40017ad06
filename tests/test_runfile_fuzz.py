"""Crafted run files: show/analyze refuse in one line, never read outside the
file, never trace back (a seeded sample of bench/fuzz_runfiles.py, plus the
specific attacks one by one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from labctl.cli import main
from labctl.steps import SAMPLE_DTYPE
from labctl.storage import layout as L
from tests.runfile_fuzz import Canaries, build_corpus, fuzz, make_canaries


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def canaries(tmp_path_factory: pytest.TempPathFactory) -> Canaries:
    return make_canaries(tmp_path_factory.mktemp("canary"))


@pytest.fixture
def eis_copy(corpus: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "run.h5"
    shutil.copy(corpus[0], path)
    return path


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def refused(path: Path, canaries: Canaries, command: str = "show") -> str:
    """The one stderr line of a refusal (exit 2, nothing on stdout, no canary read)."""
    armed = canaries.arm()
    code, out, err = cli(command, str(path), "--json")
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: "), err
    assert canaries.token not in err and canaries.touched(armed) == []
    return err.strip()


def test_fuzz_sample(corpus: list[Path], canaries: Canaries, tmp_path: Path) -> None:
    tally = fuzz(corpus, canaries, tmp_path, n=100, seed=20261204, subprocess_every=50)
    assert tally.failures == [], "\n".join(f.line() for f in tally.failures)
    assert tally.runs == 3 * 100 + 2
    assert tally.exit_codes.get(2, 0) > 50 and tally.exit_codes.get(0, 0) > 20  # both refusals and passes


def test_the_harness_sees_a_canary_read(eis_copy: Path, canaries: Canaries) -> None:
    """Positive control: reading external storage without the guard is seen."""
    size = canaries.raw_end.stat().st_size
    with h5py.File(eis_copy, "r+") as f:
        del f[L.END]
        f.create_dataset(
            L.END, shape=(size,), dtype=np.uint8, external=[(str(canaries.raw_end), 0, h5py.h5f.UNLIMITED)]
        )
        f["elsewhere"] = h5py.ExternalLink(str(canaries.h5), "/steps")
    armed = canaries.arm()
    with h5py.File(eis_copy, "r") as f:
        assert canaries.token in f[L.END][:].tobytes().decode()
        assert len(f["elsewhere"][:]) == 4
    assert sorted(canaries.touched(armed)) == ["canary.h5", "end.json"]


def test_external_raw_storage_is_refused(eis_copy: Path, canaries: Canaries) -> None:
    with h5py.File(eis_copy, "r+") as f:
        del f[L.STEPS]
        size = canaries.raw_steps.stat().st_size
        f.create_dataset(L.STEPS, shape=(size // L.STEP_ROW_DTYPE.itemsize,), dtype=L.STEP_ROW_DTYPE,
                         external=[(str(canaries.raw_steps), 0, h5py.h5f.UNLIMITED)])  # fmt: skip
    line = refused(eis_copy, canaries)
    assert line.endswith("/steps: external raw storage (data kept in another file) is not allowed")
    assert refused(eis_copy, canaries, "analyze") == line


def test_external_link_is_refused(eis_copy: Path, canaries: Canaries) -> None:
    with h5py.File(eis_copy, "r+") as f:
        f["results/more"] = h5py.ExternalLink(str(canaries.h5), "/end")
    assert "/results/more: external link to another file" in refused(eis_copy, canaries)


def test_virtual_dataset_onto_another_file_is_refused(eis_copy: Path, canaries: Canaries) -> None:
    layout = h5py.VirtualLayout(shape=(64,), dtype=SAMPLE_DTYPE)
    layout[:] = h5py.VirtualSource(str(canaries.h5), "/samples", shape=(64,), dtype=SAMPLE_DTYPE)
    with h5py.File(eis_copy, "r+") as f:
        step = sorted(f[L.BY_STEP])[0]
        del f[L.BY_STEP][step]["data"]
        f[L.BY_STEP][step].create_virtual_dataset("data", layout)
    assert f"/by_step/{step}/data: virtual dataset reads another file" in refused(eis_copy, canaries)


def test_the_writers_own_views_are_allowed(eis_copy: Path) -> None:
    with h5py.File(eis_copy, "r") as f:
        assert len(f[L.BY_STEP]) > 0  # "." virtual datasets onto /samples, /spectra
    code, out, _ = cli("show", str(eis_copy), "--json")
    assert code == 0 and json.loads(out)["status"] == "completed"


def test_a_huge_declared_shape_is_refused_before_reading(eis_copy: Path, canaries: Canaries) -> None:
    with h5py.File(eis_copy, "r+") as f:
        del f[L.SAMPLES]
        f.create_dataset(L.SAMPLES, shape=(10**9,), maxshape=(None,), chunks=(16384,), dtype=SAMPLE_DTYPE,
                         compression="gzip")  # fmt: skip
    line = refused(eis_copy, canaries)
    assert line.endswith(f"/samples: declares 1000000000 rows; at most {1 << 24} are read")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("null", "cell.area_cm2: missing: the analysis needs the cell's geometry"),
        ("[1, 2]", "cell: is a JSON list; expected an object"),
        ('{"area_cm2": "x", "thickness_um": 1}', "cell.area_cm2: is 'x'; expected a positive number"),
        ('{"area_cm2": NaN, "thickness_um": 1}', "cell.area_cm2: is nan; expected a finite number"),
        ("[" * 100 + "]" * 100, "cell: JSON nested deeper than 64 levels"),
        ("[" * 100_000 + "]" * 100_000, "cell: JSON nested deeper than 64 levels"),
    ],
)
def test_cell_metadata_is_checked(eis_copy: Path, canaries: Canaries, cell: str, expected: str) -> None:
    with h5py.File(eis_copy, "r+") as f:
        f.attrs["cell"] = cell
    assert refused(eis_copy, canaries, "analyze").endswith(expected)


def test_markup_in_labels_is_shown_as_text(eis_copy: Path) -> None:
    with h5py.File(eis_copy, "r+") as f:
        f.attrs["operator"] = "[/bold] [red]x"
        f.attrs["parameters"] = json.dumps({"note": "[/bold]"})
        f.attrs["results"] = json.dumps({"[/x]": "[/y]"})
    code, out, err = cli("show", str(eis_copy))
    assert code == 0 and "[/bold] [red]x" in out and '"note": "[/bold]"' in out and "[/y]" in out, err


def test_the_read_watchdog_ends_a_hung_read_in_one_line() -> None:
    """HDF5 can loop forever on damaged metadata while holding the GIL; the
    watchdog (a C thread) still ends the process with one line and exit 1."""
    import subprocess
    import sys

    code = (
        "from labctl.watchdog import read_deadline\n"
        "with read_deadline('run.h5', seconds=1):\n"
        "    while True:\n"
        "        pass\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"PYTHONPATH": root}
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "error: run.h5: reading did not finish in 1 s (damaged HDF5 metadata?)\n"


def test_the_read_watchdog_is_silent_when_in_time() -> None:
    import subprocess
    import sys

    code = "from labctl.watchdog import read_deadline\nwith read_deadline('run.h5', seconds=60):\n    print('read')\n"
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"PYTHONPATH": root}
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "read\n", "")
