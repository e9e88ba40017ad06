"""The GUI's pure helpers: headline results with uncertainties and warnings, Arrhenius points,
and following a run file written by another process."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gui.follow import FileFollower
from gui.results_view import arrhenius_fit_line, arrhenius_points, headline_rows
from labctl.events import Samples, SpectrumPoints, StepStarted


def test_headline_first_with_its_uncertainty_then_warnings() -> None:
    rows = headline_rows(
        {"method": "x", "ea_eV": 0.3444, "ea_stderr_eV": 0.0010, "valid": False, "invalid_reasons": ["shorted"]}
    )
    assert (rows[0].name, rows[0].value) == ("Ea", "0.3444 ± 0.0010 eV")
    warnings = [r.value for r in rows if r.warning]
    assert warnings == ["shorted", "valid = false"]
    assert "ea_stderr_eV" not in [r.name for r in rows]  # shown with its value, not twice


def test_uncertainty_sets_the_digits() -> None:
    from gui.results_view import with_uncertainty

    assert with_uncertainty(0.514234, 0.001463) == "0.5142 ± 0.0015"
    assert with_uncertainty(1234.4, 56.0) == "1234 ± 56"
    assert with_uncertainty(3.3e-4, 2e-6) == "0.0003300 ± 0.0000020"


def test_arrhenius_points_and_line_follow_the_stored_table() -> None:
    ea, pre = 0.35, 200.0
    k_b = 8.617333262145179e-05
    table = [{"T_C": t, "sigma_S_cm": pre * math.exp(-ea / (k_b * (t + 273.15)))} for t in (0.0, 25.0, 60.0)]
    results = {"table": table, "ea_eV": ea, "prefactor": pre, "form": "sigma"}
    points = arrhenius_points(results)
    assert points is not None
    x, y = points
    assert np.allclose(x, [1000 / 273.15, 1000 / 298.15, 1000 / 333.15])
    line = arrhenius_fit_line(results, x)
    assert line is not None and np.allclose(line, y)
    assert [r.name for r in headline_rows(results)][:4] == ["Ea", "σ (0.0 °C)", "σ (25.0 °C)", "σ (60.0 °C)"]
    assert arrhenius_fit_line({**results, "form": "sigmaT"}, x) is None  # σT form: not this line


def test_follower_turns_a_run_file_into_live_events(tmp_path: Path) -> None:
    from labctl.runner import prepare_run
    from labctl.storage import open_run

    prepared = prepare_run("eis", params={"rest": "5"}, out_dir=tmp_path, cell_id="F1")
    prepared.execute()
    follower = FileFollower(prepared.path)
    events = follower.poll()
    with open_run(prepared.path) as run:
        n_samples, n_spectra, n_steps = run.n_samples, run.n_spectra, len(run.steps)
    assert sum(isinstance(e, StepStarted) for e in events) == n_steps
    assert sum(len(e.block) for e in events if isinstance(e, Samples)) == n_samples > 0
    assert sum(len(e.block) for e in events if isinstance(e, SpectrumPoints)) == n_spectra > 0
    assert follower.poll() == []  # nothing new: nothing repeated
    follower.close()


def test_results_tab_shows_the_report_figures_of_a_run(qtbot, tmp_path: Path) -> None:
    """The same figures as 'labctl report', for the selected run, drawn off the GUI thread."""
    from gui.panels import ResultsPanel
    from labctl.report.figures import figures_for
    from labctl.report.runview import load_run
    from labctl.runner import prepare_run

    prepared = prepare_run("eis", params={"points_per_decade": "4"}, out_dir=tmp_path, cell_id="R1")
    prepared.execute()
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    assert panel.open_file(str(prepared.path)) is None
    panel.show_report()
    dialog = panel.report_dialog
    expected = [f.name for f in figures_for(load_run(prepared.path))]
    qtbot.waitUntil(lambda: len(dialog.images) == len(expected), timeout=60_000)
    assert [image.objectName() for image in dialog.images] == [f"figure_{name}" for name in expected]
    assert all(image.pixmap().width() > 300 for image in dialog.images)
    assert "nyquist" in expected and "'labctl report'" in dialog.status.text()


def test_report_figures_of_a_refused_file_say_why(qtbot, tmp_path: Path) -> None:
    from gui.report_view import ReportFiguresDialog

    bad = tmp_path / "not-a-run.h5"
    bad.write_bytes(b"junk")
    dialog = ReportFiguresDialog(str(bad))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.status.text().startswith("no report:"), timeout=30_000)
    assert dialog.images == [] and "\n" not in dialog.status.text()
