"""The main window: instruments, launcher, live view, queue, results and log.

One timer at 25 Hz drains the event subscriptions of the runs this GUI started (the engine
runs in its own thread) and the log; queue jobs run by another process are followed through
their run files twice a second. Nothing the GUI thread does waits on an instrument.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qtpy import QtCore, QtWidgets

from gui.follow import FileFollower
from gui.launcher import LauncherPanel
from gui.live import LivePanel
from gui.panels import InstrumentsPanel, LogPanel, ResultsPanel
from gui.presets import Presets
from gui.queue_panel import QueuePanel
from gui.session import ActiveRun, Session
from labctl.events import RunEnded, StatusChanged
from labctl.queue import JobState

FRAME_MS = 40  # 25 Hz
FOLLOW_EVERY = 12  # frames between looks at queue jobs' files (~0.5 s)

#: What to do with active runs when the window closes.
KEEP, ABORT, STAY = "keep", "abort", "stay"


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, session: Session, presets: Presets | None = None) -> None:
        super().__init__()
        self.setWindowTitle("labctl")
        self.session = session
        self.tabs = QtWidgets.QTabWidget(objectName="tabs")
        self.instruments = InstrumentsPanel(session)
        self.launcher = LauncherPanel(session, presets or Presets())
        self.live = LivePanel()
        self.live.on_new_view = self._connect_view
        self.queue = QueuePanel(session)
        self.results = ResultsPanel()
        self.log = LogPanel()
        for widget, name in ((self.instruments, "Instruments"), (self.launcher, "Launcher"), (self.live, "Live"),
                             (self.queue, "Queue"), (self.results, "Results"), (self.log, "Log")):  # fmt: skip
            self.tabs.addTab(widget, name)
        self.setCentralWidget(self.tabs)
        self.statusBar().showMessage(
            f"runs in {session.runs_dir.resolve()}; queue store {session.store_location or 'default'}"
        )
        logging.getLogger().addHandler(self.log.handler)
        logging.getLogger().setLevel(min(logging.getLogger().level or logging.INFO, logging.INFO))
        self.launcher.run_started.connect(self.watch_run)
        self.launcher.job_added.connect(lambda job: self.queue.reload())
        self.results.use_parameters.connect(self._reuse_parameters)
        self.unsafe: set[str] = set()  # runs whose safe state failed
        self.safe: set[str] = set()  # runs whose channel reported its safe state
        self.errors_shown: list[str] = []
        self.close_choice: str | None = None  # tests set it instead of answering the dialog
        self.followers: dict[int, FileFollower] = {}
        self.job_states: dict[int, JobState] = {}
        self._frames = 0
        self._closing_keep = False
        self.timer = QtCore.QTimer(self, interval=FRAME_MS)
        self.timer.timeout.connect(self.frame)
        self.timer.start()
        self.resize(1280, 800)

    # ---- runs started here -------------------------------------------------------------------

    def watch_run(self, run: ActiveRun) -> None:
        view = self.live.view(run.channel)
        self.live.setCurrentWidget(view)
        logging.getLogger("gui").info("run %s (%s) started on %s: %s", run.run_id, run.protocol, run.channel, run.path)

    def _reuse_parameters(self, path: str) -> None:
        self.launcher.use_past_run(path)
        self.tabs.setCurrentWidget(self.launcher)

    def control(self, channel: str, action: str) -> None:
        """Pause / resume / abort the run on ``channel``: a run of this GUI, else its queue job."""
        run = self.session.runs.get(channel)
        if run is not None and not run.handle.done:
            if action == "abort":
                run.handle.abort("aborted by user (GUI)")
            else:
                getattr(run.handle, action)()
            return
        for job in self.session.store.list_jobs(states=(JobState.RUNNING, JobState.PAUSING, JobState.PAUSED)):
            if job.channel == channel:
                getattr(self.session.store, "cancel" if action == "abort" else action)(job.id)
                return

    def frame(self) -> None:
        """25 Hz: drain the runs' events into the live views, then redraw them."""
        self._frames += 1
        for run in list(self.session.runs.values()):
            if run.subscription is None:
                continue
            view = self.live.view(run.channel)
            events = run.subscription.drain()
            for event in events:
                view.handle(event)
                if isinstance(event, StatusChanged) and event.state in ("safe", "unsafe"):
                    (self.safe if event.state == "safe" else self.unsafe).add(run.run_id)
                if isinstance(event, RunEnded):
                    self._run_ended(run, event)
            if not events and run.handle.done and self.session.runs.get(run.channel) is run:
                # The end event never reached this subscription: the engine's outcome says the same.
                outcome = run.handle.wait(0)
                if outcome is not None:
                    ended = RunEnded(outcome.status.value, outcome.results, outcome.error)
                    view.handle(ended)
                    self._run_ended(run, ended)
        if self._frames % FOLLOW_EVERY == 0:
            self._follow_jobs()
        self.live.refresh()
        self.log.drain()
        if self._frames % 25 == 0:
            self.instruments.reload()
        if self._closing_keep and not self.session.active_runs() and not self.session.runs:
            QtWidgets.QApplication.quit()

    def _run_ended(self, run: ActiveRun, event: RunEnded) -> None:
        self.session.run_ended(run)
        del self.session.runs[run.channel]
        log = logging.getLogger("gui")
        log.info("run %s on %s %s%s", run.run_id, run.channel, event.status, f": {event.error}" if event.error else "")
        self.results.open_file(str(run.path))
        if event.status == "failed":
            self.session.faults[run.channel] = event.error or "failed"
            self.show_error(f"Run {run.run_id} ({run.protocol}) on {run.channel} failed", event.error, run.run_id)
        elif event.status == "completed" and not self._closing_keep:
            self.tabs.setCurrentWidget(self.results)
        self.safe.discard(run.run_id)
        self.unsafe.discard(run.run_id)

    def show_error(self, title: str, error: str, run_id: str = "") -> None:
        if run_id in self.unsafe:
            after = "The safe state could NOT be confirmed: check the cell and switch it off by hand."
        elif run_id in self.safe:
            after = "The cell was switched off (output off, safe state applied) before the run file was closed."
        else:
            after = ("The job's process applies the safe state on any fault (output off); its run file "
                     "records it. Check the channel before acknowledging it.")  # fmt: skip
        text = f"{title}.\n\nWhat happened: {error or 'unknown error'}\n\n{after}"
        self.errors_shown.append(text)
        logging.getLogger("gui").error("%s", " ".join(text.split()))
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, "labctl – run failed", text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)  # fmt: skip
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # not modal to the event loop: live views keep updating

    # ---- queue jobs run elsewhere -----------------------------------------------------------------

    def _follow_jobs(self) -> None:
        jobs = self.session.store.list_jobs()
        active = {j.id: j for j in jobs if j.active and j.file and j.channel}
        for job_id in [i for i in self.followers if i not in active]:
            self.followers.pop(job_id).close()
        for job in active.values():
            if job.channel in self.session.runs:
                continue
            follower = self.followers.get(job.id)
            view = self.live.view(str(job.channel))
            if follower is None:
                follower = self.followers[job.id] = FileFollower(str(job.file))
                for curve in view.curves:
                    curve.clear()
                view.header.setText(f"{job.channel}: {job.protocol} queue job {job.id}, cell {job.cell.id}")
            view.state = job.state.value
            for event in follower.poll():
                view.handle(event)
            view._update_buttons()
        for job in jobs:
            before = self.job_states.get(job.id)
            if before is not None and before != job.state and job.state in (JobState.FAILED, JobState.INTERRUPTED):
                self.show_error(f"Queue job {job.id} ({job.protocol}) on {job.channel} {job.state.value}",
                                job.error or "")  # fmt: skip
            if before is not None and before != job.state and job.done and job.file:
                self.results.open_file(job.file)
            self.job_states[job.id] = job.state

    def _connect_view(self, view: Any) -> None:
        view.pause_requested.connect(lambda channel: self.control(channel, "pause"))
        view.resume_requested.connect(lambda channel: self.control(channel, "resume"))
        view.abort_requested.connect(lambda channel: self.control(channel, "abort"))

    # ---- closing ------------------------------------------------------------------------------------

    def _ask_close(self, n_runs: int, n_jobs: int) -> str:
        if self.close_choice is not None:
            return self.close_choice
        box = QtWidgets.QMessageBox(self)
        box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
        box.setWindowTitle("labctl – runs are active")
        box.setText(f"{n_runs} run(s) started here and {n_jobs} queue job(s) of this runner are active.")
        box.setInformativeText("Keep them running in the background, or abort them safely (each cell is "
                               "switched off and its file closed)?")  # fmt: skip
        keep = box.addButton("Keep running in background", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
        abort = box.addButton("Abort safely", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QtWidgets.QMessageBox.StandardButton.Cancel)
        box.exec()
        return KEEP if box.clickedButton() is keep else ABORT if box.clickedButton() is abort else STAY

    def closeEvent(self, event: Any) -> None:
        runs = self.session.active_runs()
        own_jobs = self.session.runner_alive and bool(
            self.session.store.list_jobs(states=(JobState.RUNNING, JobState.PAUSING, JobState.PAUSED))
        )
        if not runs and not own_jobs:
            self._shutdown()
            event.accept()
            return
        choice = self._ask_close(len(runs), int(own_jobs))
        if choice == STAY:
            event.ignore()
            return
        if choice == ABORT:
            self.session.abort_all("aborted: GUI closed")
            for run in list(self.session.runs.values()):
                self.session.runs.pop(run.channel, None)
            self.session.stop_runner()  # SIGTERM: its jobs end aborted, cells safe
            self._shutdown()
            event.accept()
            return
        # KEEP: the queue runner is its own process; runs of this process go on with the
        # window hidden, and the process exits when the last one has ended safely.
        self.session.detach_runner()
        if runs:
            QtWidgets.QApplication.instance().setQuitOnLastWindowClosed(False)
            self._closing_keep = True
            logging.getLogger("gui").info("window closed: %d run(s) continue in the background", len(runs))
            self.hide()
            event.ignore()
            return
        self._shutdown()
        event.accept()

    def _shutdown(self) -> None:
        self.timer.stop()
        self.queue.shutdown()
        self.launcher.shutdown()
        self.instruments.closed = True
        for follower in self.followers.values():
            follower.close()
        logging.getLogger().removeHandler(self.log.handler)


def _close_safely_on_signals(window: MainWindow) -> None:
    """SIGINT/SIGTERM close the window as "abort safely" would: no run is left driving a cell.
    (Python handlers run between Qt events; the 25 Hz timer gives it those moments.)"""

    def handler(signum: int, frame: object) -> None:
        window.close_choice = ABORT
        QtCore.QTimer.singleShot(0, window.close)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labctl gui")
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--lab", default=None)
    parser.add_argument("--store", default=None)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--speed", default="max")
    return parser


def main(argv: list[str] | None = None, *, demo: bool = False, lab_path: str | None = None,
         store: str | None = None, runs: str = "runs", speed: str = "max") -> int:  # fmt: skip
    """Open the window (``labctl gui``); with ``demo``, on simulators with runs going."""
    if argv is not None:
        args = build_parser().parse_args(argv)
        demo, lab_path, store, runs, speed = args.demo, args.lab, args.store, args.runs, args.speed
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    if demo:
        from gui.demo import demo_session, start_demo

        session = demo_session()
        window = MainWindow(session, Presets(session.runs_dir / "presets.json"))
        _close_safely_on_signals(window)  # before the demo starts anything
        start_demo(window)
    else:
        from labctl.config import load_lab

        lab = load_lab(Path(lab_path)) if lab_path else None
        session = Session(lab=lab, store=store, runs_dir=Path(runs), speed=speed)
        window = MainWindow(session)
        _close_safely_on_signals(window)
    window.show()
    code = app.exec()
    session.close()
    return int(code)


if __name__ == "__main__":
    os.environ.setdefault("QT_API", "pyside6")
    sys.exit(main(sys.argv[1:]))
