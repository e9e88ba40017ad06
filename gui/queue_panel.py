"""The persistent queue: every job with its cell, protocol, key parameters, state, channel,
progress and ETA, the end time per channel, and the technician's controls.

The table is a view of the store: it is redrawn when the store's watcher reports a committed
change (checked four times a second), so a job added, moved or cancelled from the CLI or by a
worker on another PC shows up within a second. Every control is a store call, as the CLI's.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from qtpy import QtCore, QtGui, QtWidgets

from gui.session import GUI_HOLD, Session
from labctl.queue import Job, JobState, QueueError
from labctl.queue.display import clock_time, key_params, progress_text

COLUMNS = ("id", "cell", "protocol", "parameters", "state", "channel", "progress", "ETA")


class JobTable(QtWidgets.QTableWidget):
    """The job table; dropping dragged rows asks for a move instead of moving cells around."""

    rows_dropped = QtCore.Signal(int)  # the row they were dropped on (-1: below the last)

    def __init__(self, rows: int, columns: int, **kwargs: object) -> None:
        super().__init__(rows, columns, **kwargs)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDragDropMode(QtWidgets.QAbstractItemView.DragDropMode.InternalMove)
        self.setDropIndicatorShown(True)

    def dropEvent(self, event: QtGui.QDropEvent) -> None:  # Qt's name
        row = self.rowAt(int(event.position().y()))
        event.setDropAction(QtCore.Qt.DropAction.IgnoreAction)  # the store decides the order
        event.accept()
        self.rows_dropped.emit(row)


class _ScheduleSignal(QtCore.QObject):
    done = QtCore.Signal(object)  # Schedule, or None when it could not be made


class QueuePanel(QtWidgets.QWidget):
    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.jobs: list[Job] = []
        self.table = JobTable(0, len(COLUMNS), objectName="queue_table")
        self.table.rows_dropped.connect(self.drop_before)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.channel_ends = QtWidgets.QLabel("", objectName="channel_ends", wordWrap=True)
        self.status = QtWidgets.QLabel("", objectName="queue_status", wordWrap=True)
        self.runner_button = QtWidgets.QPushButton("Run queue here", objectName="runner", checkable=True)
        self.runner_button.toggled.connect(self._toggle_runner)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        row = QtWidgets.QHBoxLayout()
        for name, text in (("pause", "Pause"), ("resume", "Resume"), ("cancel", "Cancel"), ("retry", "Retry"),
                           ("up", "Move up"), ("down", "Move down"), ("duplicate", "Duplicate"),
                           ("import", "Import batch…")):  # fmt: skip
            button = QtWidgets.QPushButton(text, objectName=f"queue_{name}")
            button.clicked.connect(getattr(self, f"do_{name}"))
            self.buttons[name] = button
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(self.runner_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.channel_ends)
        layout.addWidget(self.status)
        #: The dry-run schedule (``labctl queue estimate``'s): expected end of each job and channel.
        self.schedule: Any = None
        self._schedule_signal = _ScheduleSignal()
        self._schedule_signal.done.connect(self._schedule_done)
        self._schedule_busy = False
        self._schedule_stale = True
        self._closed = False
        self._estimator: Any = None
        self.watcher = session.store.watch()
        self.timer = QtCore.QTimer(self, interval=250)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self._last_full = 0
        self.reload()

    # ---- view ----------------------------------------------------------------------------

    def poll(self) -> None:
        """Redraw on a committed change; otherwise every second for progress and ETA."""
        if self._closed:
            return
        self._last_full += 1
        if self.watcher.wait(0) is not None or self._last_full >= 4:
            self.reload()
        self.runner_button.blockSignals(True)
        self.runner_button.setChecked(self.session.runner_alive)
        self.runner_button.blockSignals(False)

    def reload(self) -> None:
        if self._closed:
            return
        self._last_full = 0
        self._schedule_stale = True
        selected = set(self.selected_ids())
        self.jobs = self.session.store.list_jobs()
        self.table.setRowCount(len(self.jobs))
        for r, job in enumerate(self.jobs):
            state = job.state.value + (f" ({job.request.value}?)" if job.request else "")
            cells = (str(job.id), job.cell.id, job.protocol, key_params(job), state,
                     job.channel or job.requested_channel or "any", progress_text(job),
                     self._eta_text(job))  # fmt: skip
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.table.setItem(r, c, item)
                item.setText(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, job.id)
        self.table.resizeColumnsToContents()
        self.table.clearSelection()
        mode = QtCore.QItemSelectionModel.SelectionFlag.Select | QtCore.QItemSelectionModel.SelectionFlag.Rows
        for r, job in enumerate(self.jobs):
            if job.id in selected:
                self.table.selectionModel().select(self.table.model().index(r, 0), mode)
        self.channel_ends.setText(self._channel_ends())
        self._start_schedule()

    def _eta_text(self, job: Job) -> str:
        """The worker's ETA for a running job; the dry-run schedule's expected end otherwise."""
        if job.active and job.eta is not None:
            return clock_time(job.eta)
        if job.state == JobState.QUEUED and self.schedule is not None:
            try:
                slot = self.schedule.slot(job.id)
            except StopIteration:
                return ""
            return f"≈ {clock_time(slot.end)}" if slot.end is not None else "unknown"
        return ""

    def _channel_ends(self) -> str:
        """When each channel runs out of work (dry-run schedule), and which are held."""
        ends = []
        if self.schedule is not None:
            for channel, end in sorted(self.schedule.channel_ends.items()):
                if any(
                    j.active or j.state == JobState.QUEUED
                    for j in self.jobs
                    if channel in (j.channel, j.requested_channel)
                ):
                    ends.append(f"{channel}: free ≈ {clock_time(end) if end is not None else 'unknown'}")
        holds = self.session.store.holds()
        ends += [f"{h.channel}: {h.reason}" if h.reason.startswith(GUI_HOLD) else f"{h.channel}: held ({h.reason})"
                 for h in holds]  # fmt: skip
        if ends and self.session.speed.strip().lower() == "max":
            ends.append("(simulators run at max speed: times are cell time from now)")
        return "   ".join(ends) or "no channel busy"

    def _start_schedule(self) -> None:
        """Recompute the schedule in a thread (dry runs are cached per recipe)."""
        if self._schedule_busy or not self._schedule_stale:
            return
        if not any(j.active or j.state == JobState.QUEUED for j in self.jobs):
            self.schedule = None
            return
        self._schedule_busy = True
        self._schedule_stale = False
        jobs, lab, channels = list(self.jobs), self.session.lab, self.session.channels()
        speed = self.session.speed

        def work() -> None:
            from labctl.queue.estimate import Estimator, estimate_queue
            from labctl.queue.jobparams import wall_pace

            try:
                if self._estimator is None:
                    self._estimator = Estimator(lab=lab)
                # Clock times on simulated channels follow the runner's speed; at "max" there is
                # no wall time to give, so the schedule is laid out in cell time (and says so).
                pace = wall_pace(speed) if speed.strip().lower() != "max" else (lambda channel: 1.0)
                schedule = estimate_queue(jobs, time.time(), estimator=self._estimator, channels=channels,
                                          pace=pace)  # fmt: skip
            except Exception:  # an estimate is a nicety: never a crash
                schedule = None
            self._schedule_signal.done.emit(schedule)

        threading.Thread(target=work, name="gui-schedule", daemon=True).start()

    def shutdown(self) -> None:
        """Stop polling; a schedule still being computed is dropped when it arrives."""
        self.timer.stop()
        self.watcher.close()
        self._closed = True

    def _schedule_done(self, schedule: Any) -> None:
        self._schedule_busy = False
        if self._closed:
            return
        self.schedule = schedule
        for r, job in enumerate(self.jobs):
            item = self.table.item(r, len(COLUMNS) - 1)
            if item is not None:
                item.setText(self._eta_text(job))
        self.channel_ends.setText(self._channel_ends())

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.jobs[r].id for r in rows if r < len(self.jobs)]

    def select_ids(self, ids: list[int]) -> None:
        self.table.clearSelection()
        mode = QtCore.QItemSelectionModel.SelectionFlag.Select | QtCore.QItemSelectionModel.SelectionFlag.Rows
        for r, job in enumerate(self.jobs):
            if job.id in ids:
                self.table.selectionModel().select(self.table.model().index(r, 0), mode)

    # ---- controls --------------------------------------------------------------------------

    def _each(self, action: str) -> None:
        done, errors = [], []
        for job_id in self.selected_ids():
            try:
                getattr(self.session.store, action)(job_id)
                done.append(str(job_id))
            except QueueError as exc:
                errors.append(str(exc))
        self._report(f"{action}: job {', '.join(done)}" if done else "", errors)
        self.reload()

    def _report(self, ok: str, errors: list[str]) -> None:
        self.status.setStyleSheet("color: #c62828;" if errors else "")
        self.status.setText("; ".join([*errors, ok] if ok else errors))

    def do_pause(self) -> None:
        self._each("pause")

    def do_resume(self) -> None:
        self._each("resume")

    def do_cancel(self) -> None:
        self._each("cancel")

    def do_retry(self) -> None:
        self._each("retry")

    def _move(self, offset: int) -> None:
        """Move the selected queued jobs of one channel queue one place up or down."""
        ids = self.selected_ids()
        if not ids:
            return
        chosen = [j for j in self.jobs if j.id in ids]
        queue_of = {j.requested_channel for j in chosen}
        if len(queue_of) != 1 or any(j.state != JobState.QUEUED for j in chosen):
            self._report("", ["move: select queued jobs of one channel queue"])
            return
        lane = [j.id for j in self.jobs if j.state == JobState.QUEUED and j.requested_channel in queue_of]
        moving = sorted(ids, key=lane.index)
        rest = [i for i in lane if i not in moving]
        if offset < 0:
            first = lane.index(moving[0])
            before = lane[first - 1] if first > 0 else (rest[0] if rest else None)
        else:
            last = lane.index(moving[-1])
            following = lane[last + 1] if last + 1 < len(lane) else None
            after_it = rest.index(following) + 1 if following is not None else len(rest)
            before = rest[after_it] if after_it < len(rest) else None
        try:
            self.session.store.move(moving, before=before)
        except QueueError as exc:
            self._report("", [str(exc)])
        self.reload()
        self.select_ids(ids)

    def drop_before(self, row: int) -> None:
        """Dragged jobs dropped on ``row``: they go just before that job (at the tail below the last)."""
        ids = self.selected_ids()
        chosen = [j for j in self.jobs if j.id in ids]
        lanes = {j.requested_channel for j in chosen}
        if not chosen or len(lanes) != 1 or any(j.state != JobState.QUEUED for j in chosen):
            self._report("", ["move: drag queued jobs of one channel queue"])
            return
        target = self.jobs[row] if 0 <= row < len(self.jobs) else None
        if target is not None and target.id in ids:
            return  # dropped on itself
        same_lane = target is not None and target.state == JobState.QUEUED and target.requested_channel in lanes
        before = target.id if same_lane and target is not None else None
        lane = [j.id for j in self.jobs if j.state == JobState.QUEUED and j.requested_channel in lanes]
        try:
            self.session.store.move(sorted(ids, key=lane.index), before=before)
        except QueueError as exc:
            self._report("", [str(exc)])
        self.reload()
        self.select_ids(ids)

    def do_up(self) -> None:
        self._move(-1)

    def do_down(self) -> None:
        self._move(+1)

    def do_duplicate(self) -> None:
        from labctl.queue import JobSpec

        added = []
        for job in [j for j in self.jobs if j.id in self.selected_ids()]:
            spec = JobSpec(protocol=job.protocol, cell=job.cell, params=dict(job.params),
                           channel=job.requested_channel, on_failure=job.on_failure)  # fmt: skip
            added.append(str(self.session.store.add(spec).id))
        self._report(f"duplicated as job {', '.join(added)}" if added else "", [])
        self.reload()

    def do_import(self, path: str | None = None) -> None:
        from labctl.queue.batch import load_batch

        if not path:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Import a batch file", "", "batch files (*.toml)")
        if not path:
            return
        try:
            specs = load_batch(Path(path), self.session.lab)
            jobs = self.session.store.add_batch(specs)
        except (QueueError, ValueError) as exc:
            self._report("", [" ".join(str(exc).split())])
            return
        self._report(f"imported {len(jobs)} jobs from {path}", [])
        self.reload()

    def _toggle_runner(self, on: bool) -> None:
        if on:
            self.session.start_runner()
        else:
            self.session.stop_runner()
