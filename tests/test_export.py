"""`labctl export RUN.h5 --csv DIR`: every step's samples with units in the
header and the exact numbers of the run file, spectra readable by EIS tools
(and by labctl's own importer), results as CSV and JSON; bad paths refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from labctl.cli import main
from labctl.importers import load_spectrum
from labctl.storage import open_run
from tests.report_runs import CELL_ID, replayed, shared_runs

PROTOCOLS = ["arrhenius", "ccd", "cycling", "eis", "li_cu_ce", "lsv", "transference"]
SAMPLE_HEADER = "t_s,E_V,I_A,Q_C,T_degC"
SPECTRUM_HEADER = "freq_Hz,Z_real_ohm,Z_imag_ohm,E_dc_V,I_dc_A,t_s,T_degC"


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exports")
    dirs = {}
    for name, path in runs.items():
        result = CliRunner().invoke(main, ["export", str(path), "--csv", str(out / name)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(str(out / name))
        dirs[name] = out / name
    return dirs


def read_steps_index(folder: Path) -> list[dict[str, str]]:
    with open(folder / "steps.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_step_is_exported_with_the_files_numbers(runs, exported, protocol: str) -> None:
    folder = exported[protocol]
    index = read_steps_index(folder)
    with open_run(runs[protocol]) as run:
        records = run.steps
        assert [int(r["index"]) for r in index] == [s.index for s in records]
        n_sample_files = 0
        for row, rec in zip(index, records, strict=True):
            assert row["kind"] == rec.kind and row["label"] == rec.label and row["rows"] == str(rec.n_rows)
            assert float(row["duration_s"]) == rec.duration and float(row["charge_C"]) == rec.charge
            if rec.n_rows:
                n_sample_files += 1
                name = row["samples_file"]
                assert name == f"step_{rec.index:04d}_{rec.kind}.csv"
                text = (folder / name).read_text()
                assert text.splitlines()[0] == SAMPLE_HEADER
                table = np.loadtxt(folder / name, delimiter=",", skiprows=1, ndmin=2)
                data = rec.data
                for k, field in enumerate(("t", "E", "I", "Q", "T")):
                    assert np.array_equal(table[:, k], data[field], equal_nan=True), (name, field)
            else:
                assert row["samples_file"] == ""
        assert n_sample_files == len(list(folder.glob("step_*.csv")))


@pytest.mark.parametrize("protocol", ["eis", "arrhenius", "transference"])
def test_spectra_are_exported_for_eis_tools(runs, exported, protocol: str) -> None:
    folder = exported[protocol]
    with open_run(runs[protocol]) as run:
        stored = {s.index: s.spectrum for s in run.steps if s.spectrum is not None}
    files = sorted(folder.glob("spectrum_*.csv"))
    assert len(files) == len(stored) >= 1
    for path, (index, spec) in zip(files, sorted(stored.items()), strict=True):
        assert path.name == f"spectrum_{index:04d}_Impedance.csv"
        lines = path.read_text().splitlines()
        comments = [line for line in lines if line.startswith("#")]
        assert any("sign convention: Z = Z_real + j*Z_imag; Z_imag < 0 for a capacitive" in c for c in comments)
        assert any(CELL_ID in c for c in comments)
        assert lines[len(comments)] == SPECTRUM_HEADER
        table = np.loadtxt(path, delimiter=",", comments="#", skiprows=len(comments) + 1)
        assert np.array_equal(table[:, 0], spec["freq"])
        assert np.array_equal(table[:, 1], spec["z_re"]) and np.array_equal(table[:, 2], spec["z_im"])
        assert (table[:, 2] < 0).sum() > len(table) // 2  # capacitive: negative Z_imag, as the header says
        # labctl's own importer (which reads ZPlot/EC-Lab/CSV) reads it back unchanged.
        back = load_spectrum(path)
        assert np.array_equal(back.freq, spec["freq"])
        assert np.array_equal(back.z, spec["z_re"] + 1j * spec["z_im"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_results_are_exported_as_csv_and_json(runs, exported, protocol: str) -> None:
    folder = exported[protocol]
    results = replayed(runs[protocol])
    data = json.loads((folder / "results.json").read_text())
    assert data["results"] == json.loads(json.dumps(results))
    assert data["protocol"] == protocol and data["cell"]["id"] == CELL_ID and data["results_source"] == "replayed"
    with open(folder / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "value", "uncertainty"]
    by_name = {r[0]: r for r in rows[1:]}
    for key, value in results.items():
        if isinstance(value, float) and "_stderr" not in key and "_err" not in key:
            assert float(by_name[key][1]) == value, key
    if protocol == "arrhenius":
        assert float(by_name["ea_eV"][2]) == results["ea_stderr_eV"]  # the uncertainty beside its value


def test_export_replaces_its_own_folder_and_refuses_others(runs, tmp_path: Path) -> None:
    run = str(runs["lsv"])
    out = tmp_path / "csv"
    invoke = CliRunner().invoke
    assert invoke(main, ["export", run, "--csv", str(out)]).exit_code == 0
    (out / "step_0099_Stale.csv").write_text("from an older export\n")
    assert invoke(main, ["export", run, "--csv", str(out)]).exit_code == 0
    assert not (out / "step_0099_Stale.csv").exists()  # replaced as a whole
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "keep.csv").write_text("1,2\n")
    text_file = tmp_path / "file.txt"
    text_file.write_text("not a run file\n")
    for args, fragment in (
        (["export", run], "--csv DIR is required"),
        (["export", run, "--csv", str(foreign)], "other files in it"),
        (["export", run, "--csv", str(text_file)], "not a folder"),
        (["export", run, "--csv", str(tmp_path / "no" / "such")], "does not exist"),
        (["export", str(tmp_path / "missing.h5"), "--csv", str(tmp_path / "new")], "no run file"),
        (["export", str(text_file), "--csv", str(tmp_path / "new")], "not an HDF5 file"),
    ):
        result = invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (args, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv", "data", "file.txt"]  # no temporaries left
    assert [p.name for p in foreign.iterdir()] == ["keep.csv"]
