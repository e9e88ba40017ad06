"""`labctl report`: the figures a paper shows per protocol, the results with
their uncertainties, warnings and conventions, for every protocol's run file;
running and interrupted runs; bad paths refused with one line."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.collections import PolyCollection
from matplotlib.patches import Polygon, Rectangle

from labctl.cli import main
from labctl.report.figures import figures_for
from labctl.report.plotting import NYQUIST_X, ReportFigure
from labctl.report.runview import load_run
from labctl.report.summary import summarize
from labctl.report.tabulate import problems, result_rows, rounded_pair
from labctl.report.writers import render_html
from labctl.storage import open_run
from tests.report_runs import CELL_ID, partial_copy, replayed, shared_runs

EXPECTED_FIGURES = {
    "eis": ["nyquist", "bode"],
    "arrhenius": ["arrhenius", "nyquist_per_temperature"],
    "transference": ["polarisation", "nyquist_before_after"],
    "lsv": ["lsv"],
    "ccd": ["ccd"],
    "li_cu_ce": ["li_cu_ce", "nucleation"],
    "cycling": ["per_cycle", "voltage_time"],
    "leads": ["nyquist", "bode"],
    "formation": ["per_cycle", "voltage_time"],
    "rate_capability": ["per_cycle", "voltage_time"],
    "long_cycling": ["per_cycle", "voltage_time"],
}
PROTOCOLS = sorted(EXPECTED_FIGURES)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def figures(runs: dict[str, Path]) -> dict[str, list[ReportFigure]]:
    return {name: figures_for(load_run(path)) for name, path in runs.items()}


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args))


def one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def drawn_axes(fig: ReportFigure) -> list:  # type: ignore[type-arg]
    """The axes of a figure that show data (not secondary axes)."""
    return [ax for ax in fig.figure.axes if ax.get_label() != "<colorbar>" and ax.get_xlabel() != "T / °C"]


# -- figures --------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_gets_its_figures_readable(figures, protocol: str) -> None:
    figs = figures[protocol]
    assert [f.name for f in figs] == EXPECTED_FIGURES[protocol]
    for f in figs:
        assert CELL_ID in f.figure.get_suptitle() and protocol in f.figure.get_suptitle()
        for ax in drawn_axes(f):
            if ax.get_xlabel() == "T / °C":
                continue
            assert ax.get_ylabel(), (f.name, "y axis without a label")
            has_data = any(len(np.asarray(line.get_xdata())) > 1 for line in ax.get_lines())
            assert has_data, (f.name, ax.get_title(), "an axes with nothing drawn")
        bottom = drawn_axes(f)[-1]
        unitless = bottom.get_xlabel().startswith("cycle number")
        assert unitless or re.search(r"/ \S+", bottom.get_xlabel()), (f.name, bottom.get_xlabel(), "no unit")
        assert f.figure.legends or any(ax.get_legend() for ax in f.figure.axes), (f.name, "no legend")


@pytest.mark.parametrize("protocol", ["eis", "arrhenius", "transference"])
def test_nyquist_plots_have_equal_aspect_and_the_files_points(figures, runs, protocol: str) -> None:
    nyquists = [ax for f in figures[protocol] for ax in f.figure.axes if ax.get_xlabel() == NYQUIST_X]
    assert nyquists
    with open_run(runs[protocol]) as run:
        spectra = [s.spectrum for s in run.steps if s.spectrum is not None]
    for ax in nyquists:
        assert ax.get_aspect() == 1.0
        points = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert len(points) == len(spectra)
        for line, spec in zip(points, spectra, strict=True):
            assert np.array_equal(line.get_xdata(), spec["z_re"])
            assert np.array_equal(line.get_ydata(), -spec["z_im"])  # −Z″ up


def test_eis_nyquist_draws_the_stored_fit_and_the_circuit(figures, runs) -> None:
    results = replayed(runs["eis"])
    ax = next(ax for ax in figures["eis"][0].figure.axes if ax.get_xlabel() == NYQUIST_X)
    fit = [line for line in ax.get_lines() if line.get_label().startswith("fit ")]
    assert len(fit) == 1 and results["circuit"] in fit[0].get_label()
    # The curve is the stored fit: at the high-frequency end it meets the fitted R_total region.
    z_re = np.asarray(fit[0].get_xdata())
    assert z_re.min() == pytest.approx(results["R_total_ohm"], rel=0.05)
    texts = " ".join(t.get_text() for a in figures["eis"][0].figure.axes for t in a.texts)
    assert f"circuit {results.get('circuit_labelled') or results['circuit']}" in texts and "sigma_S_cm" in texts
    assert "{" not in texts  # the arcs' labels are written out, not dumped as records
    bode = figures["eis"][1].figure.axes
    assert bode[0].get_ylabel() == "|Z| / Ω" and bode[1].get_ylabel() == "phase / °"
    assert bode[0].get_xscale() == "log"


def test_arrhenius_plot_matches_the_table_and_states_ea(figures, runs) -> None:
    results = replayed(runs["arrhenius"])
    ax = figures["arrhenius"][0].figure.axes[0]
    measured = next(line for line in ax.get_lines() if line.get_label() == "measured")
    t_k = np.array([row["T_C"] for row in results["table"]]) + 273.15
    sigma = np.array([row["sigma_S_cm"] for row in results["table"]])
    assert np.allclose(measured.get_xdata(), 1000 / t_k)
    assert np.allclose(measured.get_ydata(), np.log(sigma))  # the recorded form is "sigma"
    assert results["form"] == "sigma" and "ln(σ" in ax.get_ylabel()
    text = " ".join(t.get_text() for t in ax.texts)
    value, unc = rounded_pair(results["ea_eV"], results["ea_stderr_eV"])
    assert f"ea_eV = {value} ± {unc}" in text
    fit = next(line for line in ax.get_lines() if line.get_label().startswith("fit"))
    slope = np.polyfit(np.asarray(fit.get_xdata()) / 1000, fit.get_ydata(), 1)[0]
    assert -slope * 8.617333262e-5 == pytest.approx(results["ea_eV"], rel=1e-6)
    assert len(figures["arrhenius"][1].figure.axes[0].get_lines()) >= 4  # one spectrum per temperature


def test_transference_marks_i0_and_iss(figures, runs) -> None:
    results = replayed(runs["transference"])
    ax = figures["transference"][0].figure.axes[0]
    labels = {line.get_label(): line for line in ax.get_lines()}
    unit = ax.get_ylabel().split("/ ")[1]
    scale = {"A": 1, "mA": 1e-3, "µA": 1e-6, "nA": 1e-9}[unit]
    for name, key in (("I0", "I0_A"), ("Iss", "Iss_A")):
        line = next(v for k, v in labels.items() if k.startswith(f"{name} ="))
        assert line.get_ydata()[0] * scale == pytest.approx(abs(results[key]), rel=1e-3)
    assert "t_plus" in " ".join(t.get_text() for t in ax.texts)


def test_lsv_marks_every_onset_method(figures, runs) -> None:
    results = replayed(runs["lsv"])
    ax_lin, ax_log = figures["lsv"][0].figure.axes[:2]
    assert ax_lin.get_ylabel() == "j / (mA·cm⁻²)" and ax_log.get_yscale() == "log"
    for key in ("threshold_V", "tangent_V", "dIdV_V"):
        marked = [line for line in ax_lin.get_lines() if line.get_label().startswith(key[:-2] + ":")]
        assert len(marked) == 1 and marked[0].get_xdata()[0] == pytest.approx(results[key])


def test_ccd_shades_the_failing_step(figures, runs) -> None:
    results = replayed(runs["ccd"])
    assert results["ccd_mA_cm2"] == pytest.approx(0.4)
    ax_v, ax_j = figures["ccd"][0].figure.axes[:2]
    spans = [p for p in ax_v.patches if isinstance(p, Polygon | Rectangle)] + [
        c for c in ax_v.collections if isinstance(c, PolyCollection)
    ]
    assert any(f"step {results['failure_index']}" in s.get_label() for s in spans)
    j = np.asarray(ax_j.get_lines()[0].get_ydata())
    assert np.nanmax(np.abs(j)) == pytest.approx(
        results["ccd_mA_cm2"], rel=2e-3
    )  # the current steps, up to the failing one


def test_li_cu_annotates_cycles_and_ce(figures, runs) -> None:
    results = replayed(runs["li_cu_ce"])
    ax = figures["li_cu_ce"][0].figure.axes[0]
    text = [t.get_text() for t in ax.texts]
    assert any(f"ce_avg = {results['ce_avg']:.6g}" in t for t in text)
    assert {"1", "2", "3", "4"} <= set(text)  # the cycles numbered


def test_cycling_per_cycle_panels_hold_the_results(figures, runs) -> None:
    results = replayed(runs["cycling"])
    lines = {line.get_label(): line for ax in figures["cycling"][0].figure.axes for line in ax.get_lines()}
    for key in ("mean_overpotential_V", "hysteresis_V"):
        assert np.allclose(lines[key].get_ydata(), results[key])


def test_an_unknown_protocol_gets_the_generic_figures(runs) -> None:
    view = dataclasses.replace(load_run(runs["transference"]), protocol="not_yet_written")
    figs = figures_for(view)
    assert [f.name for f in figs] == ["potential_current", "nyquist", "bode"]
    ax_e, ax_i = figs[0].figure.axes[:2]
    assert ax_e.get_ylabel() == "E / V" and ax_i.get_ylabel().startswith("I / ")


# -- results, uncertainties, warnings ------------------------------------------------------


def test_uncertainties_are_paired_with_their_values() -> None:
    rows = {
        r.name: r
        for r in result_rows(
            {
                "ea_eV": 0.4,
                "ea_stderr_eV": 0.01,
                "sigma_S_cm": 1e-4,
                "sigma_stderr": 2e-6,
                "R_bulk_arc_ohm": 50.0,
                "R_bulk_arc_rel_err": 0.02,
                "t_plus": {"value": 0.41, "stderr": 0.03},
                "nested": {"x_V": 1.0, "x_ci": [0.9, 1.1]},
                "lonely_stderr": 3.0,
            }
        )
    }
    assert rows["ea_eV"].uncertainty == "± 0.010"  # two significant digits, the value to match
    assert rows["sigma_S_cm"].value == "0.0001000" and rows["sigma_S_cm"].uncertainty == "± 0.0000020"
    assert rows["R_bulk_arc_ohm"].uncertainty == "± 0.02 (relative)"
    assert rows["t_plus"].value == "0.410" and rows["t_plus"].uncertainty == "± 0.030"
    assert rows["nested.x_V"].uncertainty == "± [0.9, 1.1]"
    assert rows["lonely_stderr"].value == "3"  # nothing to pair with: shown on its own
    assert "ea_stderr_eV" not in rows and "sigma_stderr" not in rows


def test_warnings_and_invalid_reasons_are_found_anywhere() -> None:
    found = problems(
        {
            "warnings": ["arc partly above the band"],
            "valid": False,
            "invalid_reasons": ["reservoir exhausted"],
            "fits": [{"warnings": ["n at its bound"]}, {"valid": False, "reason": "µF arc is no electrolyte"}],
        }
    )
    assert found.warnings == ("result: arc partly above the band", "fits[0]: n at its bound")
    assert found.invalid == ("result: invalid: reservoir exhausted", "fits[1]: invalid: µF arc is no electrolyte")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_html_report_is_self_contained_with_results(runs, tmp_path: Path, protocol: str) -> None:
    out = tmp_path / "report.html"
    result = invoke("report", str(runs[protocol]), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout and f"{len(EXPECTED_FIGURES[protocol])} figures" in result.stdout
    text = out.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == len(EXPECTED_FIGURES[protocol])
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(http|//)', text)  # nothing fetched from the internet
    results = replayed(runs[protocol])
    for row in result_rows(results)[:8]:
        assert html.escape(row.name) in text
    for needle in ("Conventions", "Parameters", "Steps", CELL_ID, "end reason", "labctl physics simulator"):
        assert needle in text
    assert [p for p in tmp_path.iterdir()] == [out]  # no temporary file left


def test_html_shows_uncertainties_warnings_and_invalid(runs) -> None:
    view = load_run(runs["arrhenius"])
    r = view.results
    value, unc = rounded_pair(r["ea_eV"], r["ea_stderr_eV"])
    assert f"{value}</td><td class=num>± {unc}" in render_html(view, summarize(view), [], [])
    hostile = dataclasses.replace(
        view,
        results={**r, "warnings": ["<script>alert(1)</script> drift"], "valid": False, "reason": "chamber unstable"},
    )
    text = render_html(hostile, summarize(hostile), [], [])
    assert "&lt;script&gt;alert(1)&lt;/script&gt; drift" in text and "<script>" not in text
    assert "Invalid results" in text and "chamber unstable" in text


def test_an_invalid_result_is_reported_as_such(tmp_path: Path) -> None:
    from labctl.runner import prepare_run

    prepared = prepare_run("li_cu_ce", params={"q_t": "1", "q_c": "0.5", "n": "4"}, sim={"ce": "0.5"}, out_dir=tmp_path)
    assert prepared.execute().results["valid"] is False
    view = load_run(prepared.path)
    text = render_html(view, summarize(view), [], [])
    assert "<div class=bad><b>Invalid results</b><ul><li>result: invalid: " in text
    assert "exhausted" in text.split("Invalid results")[1].split("</ul>")[0]
    note = " ".join(t.get_text() for t in figures_for(view)[0].figure.axes[0].texts)
    assert "INVALID: " in note  # on the figure too


def test_pdf_has_table_pages_then_figure_pages(runs, tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    result = invoke("report", str(runs["eis"]), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page\b", data))
    assert pages >= 1 + len(EXPECTED_FIGURES["eis"])


@pytest.mark.parametrize("protocol", ["lsv"])
def test_folder_report_has_pngs_index_and_results(runs, tmp_path: Path, protocol: str) -> None:
    out = tmp_path / "figs"
    assert invoke("report", str(runs[protocol]), "-o", str(out)).exit_code == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"{k + 1:02d}_{n}.png" for k, n in enumerate(EXPECTED_FIGURES[protocol])]
    index = (out / "index.html").read_text()
    assert all(f'src="{p}"' in index for p in pngs)
    data = json.loads((out / "results.json").read_text())
    assert data["results"] == json.loads(json.dumps(replayed(runs[protocol])))
    assert data["cell"]["id"] == CELL_ID and data["status"] == "completed"
    # A second report replaces the first (it is ours); a foreign folder is refused.
    assert invoke("report", str(runs[protocol]), "-o", str(out)).exit_code == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    one_error_line(invoke("report", str(runs[protocol]), "-o", str(foreign)))
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


# -- running and interrupted runs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "says"),
    [
        ("cycling", "results from the 4 completed steps"),  # the analysis works on what was done
        ("ccd", "no results: "),  # the analysis needs the missing steps: the report says why
    ],
)
def test_interrupted_run_is_reported_as_such(runs, tmp_path: Path, protocol: str, says: str) -> None:
    path = tmp_path / "cut.h5"
    partial_copy(runs[protocol], path, completed=4).close()  # closed without an end: interrupted
    out = tmp_path / "cut.html"
    result = invoke("report", str(path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "status interrupted" in result.stdout
    text = out.read_text()
    assert "run interrupted after step 3; 4 of 5 steps completed" in text
    assert says in text
    assert len(re.findall(r"<img ", text)) == len(EXPECTED_FIGURES[protocol])


def test_running_run_is_reported_while_it_is_written(runs, tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    writer = partial_copy(runs["cycling"], path, completed=3)
    try:
        view = load_run(path)
        assert view.status == "running"
        assert any("still running" in n for n in view.notes)
        assert view.steps[-1].end_reason == "" and view.steps[-1].rows > 0
        out = tmp_path / "live"
        assert invoke("report", str(path), "-o", str(out)).exit_code == 0
        assert "still running" in (out / "index.html").read_text()
    finally:
        writer.close()


# -- bad input ----------------------------------------------------------------------------


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(runs, tmp_path: Path) -> None:
    run = str(runs["lsv"])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a run\n")
    cases = [
        (("report", str(tmp_path / "missing.h5")), "no run file"),
        (("report", str(text_file), "-o", str(tmp_path / "a.html")), "not an HDF5 file"),
        (("report", run, "-o", str(tmp_path / "a.png")), "allowed: FILE.html, FILE.pdf, or a folder"),
        (("report", run, "-o", str(tmp_path / "nowhere" / "a.html")), "does not exist"),
        (("report", run, "-o", str(text_file) + "/"), "not a folder"),
        (("report", run, "-p", "bogus"), "-p"),
    ]
    for args, fragment in cases:
        line = one_error_line(invoke(*args))
        assert fragment in line, (args, line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_hdf5_file_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    line = one_error_line(invoke("report", str(path), "-o", str(tmp_path / "r.html")))
    assert "format" in line and "not a labctl run file" in line
    assert not (tmp_path / "r.html").exists()


def test_long_steps_are_decimated_keeping_spikes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.events import RunEnded, RunStarted, Samples, StepEnded, StepStarted
    from labctl.report import runview
    from labctl.steps import SAMPLE_DTYPE, EndReason, Rest, StepResult
    from labctl.storage import RunFileWriter
    from tests.test_storage import INFO

    n = 200_003
    block = np.zeros(n, dtype=SAMPLE_DTYPE)
    block["t"] = np.arange(n)
    block["E"] = 0.01 * np.sin(np.arange(n) / 5000)
    block["E"][123_457], block["E"][190_001] = 4.2, -3.3  # one-sample spikes
    path = tmp_path / "long.h5"
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))  # a protocol this labctl does not know: stored results, generic figures
        w.handle(StepStarted(0, Rest(duration=float(n)), 0.0))
        for lo in range(0, n, 50_000):
            w.handle(Samples(0, block[lo : lo + 50_000]))
        w.handle(StepEnded(StepResult(0, Rest(duration=float(n)), EndReason.COMPLETED, 0.0, float(n), 0.0)))
        w.handle(RunEnded("completed", results={"R_ohm": 5.0, "R_stderr_ohm": 0.1}))
    monkeypatch.setattr(runview, "PLOT_ROWS_BUDGET", 2000)
    monkeypatch.setattr(runview, "_READ_CHUNK", 30_000)  # several chunks per step
    view = load_run(path)
    step = view.steps[0]
    assert step.rows == n and step.decimated and len(step.data) <= 2000 + 2
    assert step.data["E"].max() == 4.2 and step.data["E"].min() == -3.3
    assert np.all(np.diff(step.data["t"]) > 0)  # in time order
    assert view.results_source == "stored" and "could not be replayed" in view.notes[-1]
    assert [f.name for f in figures_for(view)] == ["potential_current"]
    assert next(r for r in result_rows(view.results) if r.name == "R_ohm").uncertainty == "± 0.10"


def test_arrhenius_plot_follows_the_recorded_sigma_t_convention(runs) -> None:
    from labctl.analysis.arrhenius import fit_arrhenius

    view = load_run(runs["arrhenius"])
    table = view.results["table"]
    fit = fit_arrhenius([r["T_C"] for r in table], [r["sigma_S_cm"] for r in table], form="sigmaT")
    results = {**view.results, "form": "sigmaT", "ea_eV": fit.Ea_eV, "prefactor": fit.prefactor}
    ax = figures_for(dataclasses.replace(view, results=results))[0].figure.axes[0]
    assert "ln(σT" in ax.get_ylabel()
    measured = next(line for line in ax.get_lines() if line.get_label() == "measured")
    t_k = np.array([r["T_C"] for r in table]) + 273.15
    assert np.allclose(measured.get_ydata(), np.log(np.array([r["sigma_S_cm"] for r in table]) * t_k))
    line = next(line for line in ax.get_lines() if line.get_label().startswith("fit"))
    slope = np.polyfit(np.asarray(line.get_xdata()) / 1000, line.get_ydata(), 1)[0]
    assert -slope * 8.617333262e-5 == pytest.approx(fit.Ea_eV, rel=1e-6)
    assert fit.Ea_eV - view.results["ea_eV"] == pytest.approx(fit.kT_mean_eV, abs=0.01)  # the forms differ by ~kT


def test_fits_stored_per_spectrum_are_drawn_on_their_spectra(runs) -> None:
    from labctl.analysis.impedance.circuits import CIRCUITS, circuit_impedance

    view = load_run(runs["transference"])
    n = len(view.spectra_steps)  # before and after the hold, and the drift check (transference 1.1)
    params = [{"R0": 30.0, "R1": 50.0 + 25.0 * k, "Q1": 1e-6, "n1": 0.9} for k in range(n)]
    results = {**view.results, "spectra": [{"circuit": "R0-p(R1,CPE1)", "fit_params": p} for p in params]}
    fig = figures_for(dataclasses.replace(view, results=results))[1]
    ax = fig.figure.axes[0]
    fits = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) == 200]
    assert n >= 2 and len(fits) == n
    for line, p in zip(fits, params, strict=True):
        z = circuit_impedance(CIRCUITS["rc"], p, np.array([1e-6]))  # the low-frequency end: R0 + R1
        assert max(line.get_xdata()) == pytest.approx(z.real[0], rel=0.01)
    # A mismatch in number (or an unknown circuit name) draws no fit rather than a wrong one.
    results["spectra"] = results["spectra"][:1]
    ax = figures_for(dataclasses.replace(view, results=results))[1].figure.axes[0]
    assert all(line.get_linestyle() != "-" or line.get_label().startswith("_") for line in ax.get_lines())
