"""The GUI driven end to end on simulated channels, headless (pytest-qt, offscreen).

Nothing here waits on wall-clock speed: runs use the virtual clock, and where a test must
catch a run in the middle (to pause it, or to close the window on it) the simulated channel's
clock is gated, so the run cannot end before the test lets it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

pytest.importorskip("pytestqt")
from qtpy import QtCore, QtGui, QtWidgets

from gui.app import ABORT, MainWindow
from gui.presets import Presets
from gui.session import Session
from labctl.channel import InstrumentError
from labctl.clock import VirtualClock
from labctl.queue import CellInfo, JobSpec, JobState, open_store
from labctl.queue.estimate import Estimator
from labctl.queue.estimate_cli import format_duration
from labctl.storage import describe_run

WAIT_MS = 60_000  # generous: the machine may be busy; the conditions decide, not the clock


class GatedClock(VirtualClock):
    """Virtual time that stops after ``free`` sleeps until the test opens the gate (a pause or
    abort still gets through: the channel's interrupt cancels the wait). With ``fault`` the
    gate raises an instrument error instead, as a real instrument fault would."""

    def __init__(self, free: int = 3, fault: str = "") -> None:
        super().__init__()
        self.free = free
        self.fault = fault
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.calls = 0

    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        self.calls += 1
        if self.calls > self.free and not self.gate.is_set():
            if self.fault:
                raise InstrumentError(self.fault)
            self.blocked.set()
            while not self.gate.wait(0.01):
                if cancel is not None and cancel.is_set():
                    return False
        return super().sleep_until(t, cancel)


def gate_channels(session: Session, clock: GatedClock) -> None:
    def hook(channel: object) -> None:
        channel._clock = clock  # the simulator reads its clock through this attribute only

    session.channel_hook = hook


@pytest.fixture
def window(qtbot, tmp_path: Path):
    session = Session(store=str(tmp_path / "queue.sqlite3"), runs_dir=tmp_path / "runs", sim_channels=2)
    win = MainWindow(session, Presets(tmp_path / "presets.json"))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close_choice = ABORT
    win.close()
    session.stop_runner()
    session.close()


def fill(win: MainWindow, protocol: str, channel: str, cell: str, **params: str) -> None:
    launcher = win.launcher
    launcher.protocol.setCurrentText(protocol)
    launcher.channel.setCurrentText(channel)
    launcher.cell_id.setText(cell)
    for name, value in params.items():
        launcher.field(name).setText(value)


def test_form_run_pause_resume_results(qtbot, window: MainWindow) -> None:
    session = window.session
    launcher = window.launcher
    fill(window, "eis", "sim1", "SS-PEO-01")
    # An invalid value is refused as typed, with the CLI's message naming the field ...
    launcher.field("amplitude").setText("5000")
    assert launcher.field_error("amplitude").startswith("parameter 'amplitude': 5000 mV is out of range")
    qtbot.mouseClick(launcher.start_button, QtCore.Qt.MouseButton.LeftButton)
    assert "parameter 'amplitude'" in launcher.status.text()
    assert not session.runs and not (session.runs_dir.exists() and any(session.runs_dir.iterdir()))
    launcher.field("amplitude").setText("10")
    assert launcher.field_error("amplitude") == ""
    # ... and a cross-parameter refusal from the protocol's own check lands under its field too.
    fill(window, "li_cu_ce", "sim1", "Cu-01", q_t="1", q_c="2")
    assert launcher.field_error("q_c") == ""  # each value alone is in range
    qtbot.mouseClick(launcher.queue_button, QtCore.Qt.MouseButton.LeftButton)
    assert launcher.field_error("q_c").startswith("parameter 'q_c': Q_c = 2 mAh/cm² must not exceed Q_t")
    assert session.store.list_jobs() == []
    fill(window, "eis", "sim1", "SS-PEO-01", amplitude="10")
    qtbot.waitUntil(lambda: "dry run" in launcher.estimate.text(), timeout=WAIT_MS)  # shown before start
    expected = Estimator().estimate(JobSpec("eis", CellInfo("x"), {"amplitude": "10"}, channel="sim1"))
    assert launcher.estimate.text().startswith(f"estimate: {format_duration(expected.duration)} (")

    clock = GatedClock(free=3)
    gate_channels(session, clock)
    qtbot.mouseClick(launcher.start_button, QtCore.Qt.MouseButton.LeftButton)
    assert "started on sim1" in launcher.status.text(), launcher.status.text()
    run = session.runs["sim1"]
    view = window.live.view("sim1")
    qtbot.waitUntil(lambda: view.curve_E.n_points > 0, timeout=WAIT_MS)  # the plot receives data
    assert clock.blocked.wait(30)

    qtbot.mouseClick(view.pause_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.state == "paused", timeout=WAIT_MS)
    assert run.handle.state.value == "paused"
    window.instruments.reload()
    assert window.instruments.state_of("sim1").startswith("paused – cell held")
    assert not view.pause_button.isEnabled() and view.resume_button.isEnabled()
    # A run file still being written opens in the results panel too.
    assert window.results.open_file(str(run.path)) is None
    assert window.results.title.text().endswith(": running"), window.results.title.text()

    qtbot.mouseClick(view.resume_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.state == "running", timeout=WAIT_MS)
    clock.gate.set()
    qtbot.waitUntil(lambda: "completed" in window.results.title.text(), timeout=WAIT_MS)
    assert window.results.rows[0].name == "σ" and window.results.rows[0].value.endswith("S/cm")
    assert view.curve_nyquist_line.n_points > 0  # the impedance step went to the Nyquist plot
    desc = describe_run(run.path)
    assert desc["status"] == "completed"
    states = [e["state"] for e in desc["events"]]
    assert states[states.index("paused") + 1] == "running"  # the file records the hold and the resume
    assert states[-2:] == ["safe", "completed"]
    assert desc["cell"]["id"] == "SS-PEO-01"
    assert session.store.holds() == []  # the GUI run's hold on sim1 was released
    # "Use its parameters": the finished run's parameters go back into the launcher.
    launcher.field("amplitude").setText("")
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "reuse_parameters"), QtCore.Qt.MouseButton.LeftButton)
    assert float(launcher.field("amplitude").text()) == 10.0 and window.tabs.currentWidget() is launcher
    window.instruments.reload()
    assert window.instruments.state_of("sim1") == "idle"


def drop_on_row(table: QtWidgets.QTableWidget, row: int) -> None:
    """What releasing a drag of the selected rows over ``row`` delivers to the table."""
    rect = table.visualRect(table.model().index(row, 0))
    mime = table.model().mimeData(table.selectionModel().selectedIndexes())
    event = QtGui.QDropEvent(QtCore.QPointF(rect.center()), QtCore.Qt.DropAction.MoveAction, mime,
                             QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)  # fmt: skip
    table.dropEvent(event)


def test_queue_three_jobs_reorder_cancel(qtbot, window: MainWindow, tmp_path: Path) -> None:
    session = window.session
    launcher = window.launcher
    panel = window.queue
    for cell in ("Q1", "Q2", "Q3"):
        fill(window, "eis", "sim1", cell, rest="0")
        qtbot.mouseClick(launcher.queue_button, QtCore.Qt.MouseButton.LeftButton)
        assert "queued job" in launcher.status.text(), launcher.status.text()
    qtbot.waitUntil(lambda: panel.table.rowCount() == 3, timeout=WAIT_MS)
    ids = [job.id for job in panel.jobs]

    # A change made elsewhere (the CLI, another PC) shows up without any action here.
    with open_store(session.store_location) as other:
        extra = other.add(JobSpec("eis", CellInfo("CLI-1"), {"rest": "0"}, channel="sim1"))
    qtbot.waitUntil(lambda: panel.table.rowCount() == 4, timeout=WAIT_MS)

    panel.select_ids([ids[2]])
    qtbot.mouseClick(panel.buttons["up"], QtCore.Qt.MouseButton.LeftButton)
    assert [j.id for j in panel.jobs] == [ids[0], ids[2], ids[1], extra.id]
    # Dragging the last job onto the first puts it first (a drop the store carries out).
    panel.select_ids([extra.id])
    drop_on_row(panel.table, 0)
    assert [j.id for j in panel.jobs] == [extra.id, ids[0], ids[2], ids[1]]
    panel.select_ids([extra.id])
    qtbot.mouseClick(panel.buttons["cancel"], QtCore.Qt.MouseButton.LeftButton)
    assert session.store.get(extra.id).state == JobState.CANCELLED

    # Before anything runs, the dry-run schedule gives each queued job its expected end.
    row = [j.id for j in panel.jobs].index(ids[1])  # the last of sim1's queue
    qtbot.waitUntil(lambda: panel.table.item(row, 7).text().startswith("≈"), timeout=WAIT_MS)
    assert "sim1: free ≈" in panel.channel_ends.text()

    def planned_in_new_order() -> bool:  # the schedule is recomputed in a thread: wait for the one after the moves
        slots = [panel.schedule.slot(i) if panel.schedule is not None else None for i in (ids[0], ids[2], ids[1])]
        ends = [slot.end if slot is not None else None for slot in slots]
        return None not in ends and ends == sorted(ends) and ends[0] < ends[-1]

    qtbot.waitUntil(planned_in_new_order, timeout=WAIT_MS)  # one after another on sim1, in the new order

    qtbot.mouseClick(panel.runner_button, QtCore.Qt.MouseButton.LeftButton)  # run the queue here
    assert session.runner_alive
    qtbot.waitUntil(lambda: all(session.store.get(i).state == JobState.COMPLETED for i in ids), timeout=WAIT_MS)
    started = sorted(ids, key=lambda i: session.store.get(i).started or 0.0)
    assert started == [ids[0], ids[2], ids[1]]  # the new order was run
    qtbot.waitUntil(lambda: window.results.runs.count() == 3, timeout=WAIT_MS)  # each run's results shown
    qtbot.waitUntil(lambda: all(panel.table.item(r, 4).text() != "queued" for r in range(4)), timeout=WAIT_MS)


def test_closing_aborts_safely_on_request(qtbot, window: MainWindow) -> None:
    session = window.session
    clock = GatedClock(free=2)
    gate_channels(session, clock)
    fill(window, "eis", "sim2", "SS-close")
    qtbot.mouseClick(window.launcher.start_button, QtCore.Qt.MouseButton.LeftButton)
    run = session.runs["sim2"]
    assert clock.blocked.wait(30)
    window.close_choice = ABORT
    window.close()
    assert run.handle.done  # closing waited for the safe state
    desc = describe_run(run.path)
    assert desc["status"] == "aborted"
    assert any(e.get("state") == "safe" for e in desc["events"]), desc["events"]
    assert session.store.holds() == []


def test_keep_running_hides_the_window_and_lets_the_run_finish(qtbot, window: MainWindow) -> None:
    session = window.session
    clock = GatedClock(free=2)
    gate_channels(session, clock)
    fill(window, "eis", "sim1", "SS-keep")
    qtbot.mouseClick(window.launcher.start_button, QtCore.Qt.MouseButton.LeftButton)
    run = session.runs["sim1"]
    assert clock.blocked.wait(30)
    window.close_choice = "keep"
    window.close()
    assert not window.isVisible() and not run.handle.done  # the cell is still under control
    clock.gate.set()
    qtbot.waitUntil(lambda: "sim1" not in session.runs, timeout=WAIT_MS)
    assert describe_run(run.path)["status"] == "completed"


def test_instrument_fault_dialog_says_the_cell_is_off(qtbot, window: MainWindow) -> None:
    session = window.session
    gate_channels(session, GatedClock(free=2, fault="compliance trip: 2450 output tripped"))
    fill(window, "eis", "sim1", "SS-fault")
    qtbot.mouseClick(window.launcher.start_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(window.errors_shown), timeout=WAIT_MS)
    text = window.errors_shown[0]
    assert "failed" in text and "compliance trip" in text
    assert "switched off" in text
    window.instruments.reload()
    assert window.instruments.state_of("sim1").startswith("fault (acknowledge): ")
    with pytest.raises(ValueError, match="acknowledge it first"):
        session.start_run(window.launcher.request())  # no new run on a faulted channel ...
    window.instruments.table.selectRow(0)
    qtbot.mouseClick(window.findChild(QtWidgets.QPushButton, "acknowledge"), QtCore.Qt.MouseButton.LeftButton)
    assert window.instruments.state_of("sim1") == "idle"  # ... until someone has looked at it


def test_presets_and_past_run_parameters(qtbot, window: MainWindow, tmp_path: Path) -> None:
    launcher = window.launcher
    fill(window, "eis", "sim1", "SS-preset", amplitude="20", f_stop="1")
    launcher.presets.save("eis", "quick", launcher.values())
    launcher.field("amplitude").setText("")
    launcher.preset.addItems(["quick"])
    launcher.preset.setCurrentText("quick")
    launcher.load_preset()
    assert launcher.field("amplitude").text() == "20" and launcher.field("f_stop").text() == "1"

    from labctl.runner import prepare_run

    prepared = prepare_run("eis", params={"amplitude": "7", "rest": "0"}, out_dir=tmp_path / "old", cell_id="OLD-1")
    prepared.execute()
    launcher.use_past_run(str(prepared.path))
    assert float(launcher.field("amplitude").text()) == 7.0 and launcher.cell_id.text() == "OLD-1"


def test_gui_command_refuses_bad_input_before_any_window(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from labctl.cli import main

    result = CliRunner().invoke(main, ["gui", "--speed", "0"])
    assert result.exit_code == 2 and "parameter 'speed'" in result.output
    bad = tmp_path / "lab.toml"
    bad.write_text("[instruments.x]\ndriver = 'nope'\n")
    result = CliRunner().invoke(main, ["gui", "--lab", str(bad)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_a_job_run_by_another_process_is_followed_and_controlled(qtbot, window: MainWindow) -> None:
    """A queue job runs in the runner's process: the live view follows its run file, and
    Pause / Abort go through the store to the job's process (as from the CLI)."""
    session = window.session
    session.speed = "10"  # 10 h of cycling at 10x: the job cannot end before the test acts
    job = session.store.add(JobSpec("cycling", CellInfo("Li-Li-remote"), {}, channel="sim2"))
    qtbot.mouseClick(window.queue.runner_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "sim2" in window.live.views and window.live.views["sim2"].curve_E.n_points > 0,
                    timeout=WAIT_MS)  # fmt: skip
    view = window.live.views["sim2"]
    assert f"queue job {job.id}" in view.header.text()
    qtbot.mouseClick(view.pause_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: session.store.get(job.id).state == JobState.PAUSED, timeout=WAIT_MS)
    window.instruments.reload()
    assert window.instruments.state_of("sim2").startswith(f"paused – cell held (job {job.id}")
    qtbot.waitUntil(lambda: view.resume_button.isEnabled(), timeout=WAIT_MS)
    qtbot.mouseClick(view.abort_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: session.store.get(job.id).done, timeout=WAIT_MS)
    done = session.store.get(job.id)
    assert done.state in (JobState.CANCELLED, JobState.ABORTED)
    qtbot.waitUntil(lambda: not window.followers, timeout=WAIT_MS)  # the GUI let go of the file
    assert describe_run(done.file)["status"] == "aborted"


def test_lab_file_channels_and_identify_over_the_wire(qtbot, tmp_path: Path) -> None:
    """With a lab file the panels list its channels; Identify asks the instrument (here the
    Keithley 2450 wire emulator, over its SCPI socket) in a thread."""
    from drivers.sim import SimParams
    from labctl.config import load_lab
    from labctl.registry import emulator_factory

    with emulator_factory("keithley2450")(SimParams(), cell_type="li_li") as server:
        lab_path = tmp_path / "lab.toml"
        lab_path.write_text(f'[instruments.smu]\ndriver = "keithley2450"\nresource = "{server.resource}"\n')
        session = Session(lab=load_lab(lab_path), store=str(tmp_path / "q.sqlite3"), runs_dir=tmp_path / "runs")
        win = MainWindow(session, Presets(tmp_path / "presets.json"))
        qtbot.addWidget(win)
        try:
            assert session.channels() == ["smu"]
            assert [win.launcher.channel.itemText(i) for i in range(win.launcher.channel.count())] == ["smu"]
            win.instruments.reload()
            assert win.instruments.state_of("smu") == "idle"
            win.instruments.table.selectRow(0)
            win.instruments.identify()
            qtbot.waitUntil(lambda: "2450" in win.instruments.info.text(), timeout=WAIT_MS)
            assert not server.output_on
        finally:
            win.close()
            session.close()


def test_queue_import_duplicate_retry(qtbot, window: MainWindow, tmp_path: Path) -> None:
    panel = window.queue
    batch = tmp_path / "night.toml"
    batch.write_text(
        '[[job]]\nprotocol = "eis"\ncell_id = "B-1"\nchannel = "sim2"\nparams = { rest = 0 }\n'
        '[[job]]\nprotocol = "lsv"\ncell_id = "B-2"\nchannel = "sim2"\n'
    )
    panel.do_import(str(batch))
    assert [(j.cell.id, j.protocol) for j in panel.jobs] == [("B-1", "eis"), ("B-2", "lsv")]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[job]]\nprotocol = "eis"\ncell_id = "B-3"\nparams = { amplitude = 5000 }\n')
    panel.do_import(str(bad))
    assert "amplitude" in panel.status.text() and len(panel.jobs) == 2  # refused whole, nothing queued

    first = panel.jobs[0]
    panel.select_ids([first.id])
    qtbot.mouseClick(panel.buttons["duplicate"], QtCore.Qt.MouseButton.LeftButton)
    copy = panel.jobs[-1]
    assert (copy.protocol, copy.cell.id, dict(copy.params)) == ("eis", "B-1", dict(first.params))
    panel.select_ids([first.id])
    qtbot.mouseClick(panel.buttons["cancel"], QtCore.Qt.MouseButton.LeftButton)
    panel.select_ids([first.id])
    qtbot.mouseClick(panel.buttons["retry"], QtCore.Qt.MouseButton.LeftButton)
    retried = [j for j in panel.jobs if j.retry_of == first.id]
    assert len(retried) == 1 and retried[0].state == JobState.QUEUED
    panel.select_ids([copy.id, panel.jobs[1].id])  # a finished job cannot be paused: said, not crashed
    qtbot.mouseClick(panel.buttons["pause"], QtCore.Qt.MouseButton.LeftButton)
    assert panel.status.text()
