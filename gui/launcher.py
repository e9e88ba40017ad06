"""The protocol launcher: protocol, channel, cell, parameters, presets, estimate, start/queue.

Nothing here decides whether a run is acceptable: the form checks each field with the
parameter's own ``parse`` as it is typed, and Start/Add go through ``prepare_run`` /
``check_spec`` (the CLI's code), whose one-line errors are shown under the field they name.
"""

from __future__ import annotations

import threading
from typing import Any

from qtpy import QtCore, QtWidgets

from gui.form import ParamForm
from gui.presets import Presets
from gui.session import RunRequest, Session
from labctl import registry
from labctl.params import ParameterError
from labctl.protocol import GEOMETRY_PARAMS
from labctl.queue import QueueError

GEOMETRY_NAMES = {p.name for p in GEOMETRY_PARAMS}


class _EstimateSignal(QtCore.QObject):
    done = QtCore.Signal(int, str)


class LauncherPanel(QtWidgets.QWidget):
    run_started = QtCore.Signal(object)  # ActiveRun
    job_added = QtCore.Signal(object)  # Job

    def __init__(self, session: Session, presets: Presets, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.presets = presets
        self.protocol = QtWidgets.QComboBox(objectName="protocol")
        self.protocol.addItems(registry.available_protocols())
        self.channel = QtWidgets.QComboBox(objectName="channel")
        self.channel.addItems(session.channels())
        self.title = QtWidgets.QLabel(wordWrap=True)
        self.cell_id = QtWidgets.QLineEdit(objectName="cell_id", placeholderText="e.g. PEO-LiTFSI-03")
        self.electrolyte = QtWidgets.QLineEdit(objectName="electrolyte", placeholderText="e.g. PEO:LiTFSI 20:1")
        self.notes = QtWidgets.QLineEdit(objectName="notes")
        self.preset = QtWidgets.QComboBox(objectName="preset")
        self.estimate = QtWidgets.QLabel("estimate: –", objectName="estimate")
        self.status = QtWidgets.QLabel("", objectName="status", wordWrap=True)
        self.start_button = QtWidgets.QPushButton("Start now", objectName="start")
        self.queue_button = QtWidgets.QPushButton("Add to queue", objectName="add_to_queue")
        self.geometry_form: ParamForm | None = None
        self.form: ParamForm | None = None
        self._estimate_gen = 0
        self._estimate_busy = False
        self._closed = False
        self._estimate_signal = _EstimateSignal()
        self._estimate_signal.done.connect(self._estimate_done)
        self._estimate_timer = QtCore.QTimer(self, singleShot=True, interval=400)
        self._estimate_timer.timeout.connect(self._start_estimate)

        top = QtWidgets.QFormLayout()
        top.addRow("protocol", self.protocol)
        top.addRow("", self.title)
        top.addRow("channel", self.channel)
        self.cell_box = QtWidgets.QGroupBox("cell")
        cell_layout = QtWidgets.QFormLayout(self.cell_box)
        cell_layout.addRow("cell ID", self.cell_id)
        cell_layout.addRow("electrolyte", self.electrolyte)
        cell_layout.addRow("notes", self.notes)
        self.geometry_slot = QtWidgets.QVBoxLayout()
        cell_layout.addRow(self.geometry_slot)
        self.params_box = QtWidgets.QGroupBox("parameters")
        self.params_layout = QtWidgets.QVBoxLayout(self.params_box)
        scroll = QtWidgets.QScrollArea(widgetResizable=True)
        scroll.setWidget(self.params_box)
        presets_row = QtWidgets.QHBoxLayout()
        presets_row.addWidget(QtWidgets.QLabel("preset"))
        presets_row.addWidget(self.preset, 1)
        for text, slot in (("Load", self.load_preset), ("Save as…", self.save_preset),
                           ("Use a past run…", self.use_past_run)):  # fmt: skip
            button = QtWidgets.QPushButton(text)
            button.clicked.connect(slot)
            presets_row.addWidget(button)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.estimate, 1)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.queue_button)
        left = QtWidgets.QVBoxLayout()
        left.addLayout(top)
        left.addWidget(self.cell_box)
        left.addStretch(1)
        right = QtWidgets.QVBoxLayout()
        right.addLayout(presets_row)
        right.addWidget(scroll, 1)
        columns = QtWidgets.QHBoxLayout()
        columns.addLayout(left, 2)
        columns.addLayout(right, 3)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

        self.protocol.currentTextChanged.connect(self._build_form)
        self.channel.currentTextChanged.connect(lambda _t: self._schedule_estimate())
        self.start_button.clicked.connect(self.start_now)
        self.queue_button.clicked.connect(self.add_to_queue)
        if "eis" in registry.available_protocols():
            self.protocol.setCurrentText("eis")
        self._build_form(self.protocol.currentText())

    # ---- the form ------------------------------------------------------------------------

    def _build_form(self, name: str) -> None:
        for form in (self.form, self.geometry_form):
            if form is not None:
                form.setParent(None)
                form.deleteLater()
        protocol = registry.get_protocol(name)
        self.title.setText(f"{protocol.title} (v{protocol.version}, cell {protocol.cell_type})")
        self.title.setToolTip(protocol.description)
        self.geometry_form = ParamForm(tuple(p for p in protocol.params if p.name in GEOMETRY_NAMES))
        self.form = ParamForm(tuple(p for p in protocol.params if p.name not in GEOMETRY_NAMES and not p.internal))
        self.geometry_slot.addWidget(self.geometry_form)
        self.params_layout.addWidget(self.form)
        for form in (self.form, self.geometry_form):
            for edit in form.edits.values():
                edit.textChanged.connect(lambda _t: self._schedule_estimate())
        self.preset.clear()
        self.preset.addItems(self.presets.names(name))
        self.status.setText("")
        self._schedule_estimate()

    def field(self, name: str) -> QtWidgets.QLineEdit:
        assert self.form is not None and self.geometry_form is not None
        return self.form.edits.get(name) or self.geometry_form.edits[name]

    def field_error(self, name: str) -> str:
        assert self.form is not None and self.geometry_form is not None
        return self.form.errors.get(name) or self.geometry_form.errors.get(name, "")

    def values(self) -> dict[str, str]:
        assert self.form is not None and self.geometry_form is not None
        return {**self.geometry_form.values(), **self.form.values()}

    def set_values(self, values: dict[str, Any]) -> None:
        assert self.form is not None and self.geometry_form is not None
        self.form.set_values(values)
        self.geometry_form.set_values(values)

    def request(self) -> RunRequest:
        return RunRequest(
            protocol=self.protocol.currentText(),
            params=self.values(),
            channel=self.channel.currentText(),
            cell_id=self.cell_id.text().strip(),
            electrolyte=self.electrolyte.text().strip(),
            notes=self.notes.text().strip(),
        )

    def _refuse(self, exc: Exception) -> None:
        """Show a refusal: under its field when it names one, always in the status line."""
        assert self.form is not None and self.geometry_form is not None
        if isinstance(exc, ParameterError):
            self.form.show_error(exc) or self.geometry_form.show_error(exc)
        message = " ".join(str(exc).split())
        self.status.setStyleSheet("color: #c62828;")
        self.status.setText(message)

    def _ok(self, message: str) -> None:
        self.status.setStyleSheet("color: #2e7d32;")
        self.status.setText(message)

    def _precheck(self) -> bool:
        errors = {
            **(self.geometry_form.errors if self.geometry_form else {}),
            **(self.form.errors if self.form else {}),
        }
        if errors:
            self._refuse(ValueError(next(iter(errors.values()))))
            return False
        return True

    # ---- actions -----------------------------------------------------------------------------

    def start_now(self) -> None:
        if not self._precheck():
            return
        request = self.request()
        if not request.cell_id:
            request = RunRequest(**{**request.__dict__, "cell_id": ""})
        try:
            run = self.session.start_run(request)
        except (ParameterError, ValueError, QueueError) as exc:
            self._refuse(exc)
            return
        self._ok(f"run {run.run_id} started on {run.channel} → {run.path}")
        self.run_started.emit(run)

    def add_to_queue(self) -> None:
        from labctl.queue.validate import check_spec

        if not self._precheck():
            return
        request = self.request()
        try:
            if not request.cell_id:
                raise ValueError("cell ID: a queued job needs the cell's identifier")
            spec = request.job_spec()
            check_spec(spec, self.session.lab)
        except (ParameterError, ValueError, QueueError) as exc:
            self._refuse(_as_parameter_error(exc))
            return
        job = self.session.store.add(spec)
        self._ok(f"queued job {job.id} ({job.protocol} on {job.requested_channel})")
        self.job_added.emit(job)

    # ---- presets -------------------------------------------------------------------------------

    def save_preset(self) -> None:
        name, ok = QtWidgets.QInputDialog.getText(self, "Save preset", "preset name")
        if ok and name.strip():
            self.presets.save(self.protocol.currentText(), name, self.values())
            self.preset.clear()
            self.preset.addItems(self.presets.names(self.protocol.currentText()))
            self.preset.setCurrentText(name.strip())

    def load_preset(self) -> None:
        name = self.preset.currentText()
        if name:
            self.set_values(self.presets.get(self.protocol.currentText(), name))

    def use_past_run(self, path: str | None = None) -> None:
        from labctl.storage import describe_run

        if not path:
            folder = str(self.session.runs_dir)
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Past run", folder, "run files (*.h5)")
        if not path:
            return
        try:
            desc = describe_run(path)
        except Exception as exc:  # an unreadable file is reported, never a crash
            self._refuse(ValueError(f"{path}: {exc}"))
            return
        if desc.get("protocol") in registry.available_protocols():
            self.protocol.setCurrentText(desc["protocol"])
        self.set_values(dict(desc.get("parameters") or {}))
        cell = desc.get("cell") or {}
        self.cell_id.setText(str(cell.get("id", "")))
        self._ok(f"parameters of {desc.get('protocol')} run {desc.get('run_id')} loaded")

    # ---- estimate --------------------------------------------------------------------------------

    def _schedule_estimate(self) -> None:
        self._estimate_gen += 1
        self.estimate.setText("estimate: …")
        self._estimate_timer.start()

    def _start_estimate(self) -> None:
        """One dry run at a time (a 60-hour protocol takes seconds even in virtual time); a
        change made meanwhile is estimated when the running one ends."""
        if self._estimate_busy:
            return
        gen = self._estimate_gen
        request = self.request()
        lab = self.session.lab
        if (self.form and self.form.errors) or (self.geometry_form and self.geometry_form.errors):
            self.estimate.setText("estimate: – (fix the parameters)")
            return

        def work() -> None:
            from labctl.queue.estimate import Estimator
            from labctl.queue.estimate_cli import format_duration

            try:
                spec = RunRequest(**{**request.__dict__, "cell_id": request.cell_id or "estimate"}).job_spec()
                est = Estimator(lab=lab).estimate(spec)
                text = (f"estimate: {format_duration(est.duration)} ({len(est.steps)} steps, dry run)"
                        if est.known else f"estimate: unknown ({est.reason})")  # fmt: skip
            except Exception as exc:
                text = f"estimate: unknown ({' '.join(str(exc).split())})"
            self._estimate_signal.done.emit(gen, text)

        self._estimate_busy = True
        threading.Thread(target=work, name="gui-estimate", daemon=True).start()

    def shutdown(self) -> None:
        """Estimates still running are dropped when they arrive."""
        self._estimate_timer.stop()
        self._closed = True

    def _estimate_done(self, gen: int, text: str) -> None:
        self._estimate_busy = False
        if self._closed:
            return
        if gen == self._estimate_gen:
            self.estimate.setText(text)
        else:
            self._estimate_timer.start()  # the form changed meanwhile


def _as_parameter_error(exc: Exception) -> Exception:
    """``check_spec`` turns a ParameterError into text; get the field back for the form."""
    text = str(exc)
    if text.startswith("parameter '") and "'" in text[11:]:
        return ParameterError(text[11 : text.index("'", 11)], text.split(": ", 1)[1] if ": " in text else text)
    return exc
