"""The smaller panels: instruments and channels, results, and the log."""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtGui, QtWidgets

from gui.results_view import arrhenius_fit_line, arrhenius_points, headline_rows
from gui.session import Session

#: Run files the results panel keeps loaded (the oldest is dropped; it can be opened again).
MAX_LOADED_RUNS = 50
COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")


class _TextSignal(QtCore.QObject):
    done = QtCore.Signal(str)


class InstrumentsPanel(QtWidgets.QWidget):
    """Configured channels (lab file, or the simulators), their state, identify and acknowledge."""

    def __init__(self, session: Session, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.table = QtWidgets.QTableWidget(0, 3, objectName="instruments_table")
        self.table.setHorizontalHeaderLabels(("channel", "instrument", "state"))
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.info = QtWidgets.QLabel("", objectName="instrument_info", wordWrap=True)
        self._identified = _TextSignal()
        self._identified.done.connect(self._identify_done)
        self.closed = False
        identify = QtWidgets.QPushButton("Identify", objectName="identify")
        identify.clicked.connect(self.identify)
        ack = QtWidgets.QPushButton("Acknowledge hold", objectName="acknowledge")
        ack.clicked.connect(self.acknowledge)
        source = "lab file " + str(session.lab.path) if session.lab is not None else "no lab file: simulated channels"
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel(source), 1)
        row.addWidget(identify)
        row.addWidget(ack)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.info)
        self.reload()

    def reload(self) -> None:
        if self.closed:
            return
        channels = self.session.channels()
        jobs = self.session.store.list_jobs()
        holds = {h.channel: h.reason for h in self.session.store.holds()}
        self.table.setRowCount(len(channels))
        for r, channel in enumerate(channels):
            state = self.session.channel_state(channel, jobs, holds)
            for c, text in enumerate((channel, self.session.describe_channel(channel), state)):
                item = self.table.item(r, c)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.table.setItem(r, c, item)
                item.setText(text)
            colour = (
                "#fdecea" if state.startswith(("held", "fault")) else "#e8f5e9" if state.startswith("running") else ""
            )
            if state.startswith("paused"):
                colour = "#fff8e1"
            for c in range(3):
                self.table.item(r, c).setBackground(QtGui.QColor(colour) if colour else QtGui.QBrush())
        self.table.resizeColumnsToContents()

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def state_of(self, channel: str) -> str:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == channel:
                return self.table.item(r, 2).text()
        return ""

    def identify(self) -> None:
        """Ask the instrument who it is, in a thread (a silent instrument takes its timeout)."""
        channel = self.selected()
        if channel is None:
            return
        if self.session.lab is None:
            self.info.setText(f"{channel}: labctl physics simulator (no hardware)")
            return
        state = self.state_of(channel)
        if not state.startswith(("idle", "held", "fault")):
            self.info.setText(f"{channel}: busy ({state}); identify it when it is idle")
            return
        self.info.setText(f"{channel}: asking…")
        lab = self.session.lab

        def work() -> None:
            from labctl.instruments import build_instrument

            try:
                config, ch = lab.channel(channel)
                instrument = build_instrument(config, ch.name)
                instrument.open()
                try:
                    info = instrument.identify().as_dict()
                finally:
                    instrument.close()
                text = f"{channel}: " + ", ".join(f"{k} {v}" for k, v in info.items())
            except Exception as exc:  # shown, never a crash
                text = f"{channel}: cannot identify: {' '.join(str(exc).split())}"
            self._identified.done.emit(text)

        threading.Thread(target=work, name="gui-identify", daemon=True).start()

    def _identify_done(self, text: str) -> None:
        if not self.closed:
            self.info.setText(text)

    def acknowledge(self) -> None:
        channel = self.selected()
        if channel is None:
            return
        if channel in self.session.faults:
            fault = self.session.faults.pop(channel)
            self.info.setText(f"{channel}: fault acknowledged ({fault})")
            self.reload()
            return
        holds = {h.channel: h.reason for h in self.session.store.holds()}
        if channel not in holds:
            self.info.setText(f"{channel} is not held")
            return
        self.session.store.ack(channel)
        self.info.setText(f"{channel}: hold acknowledged ({holds[channel]})")
        self.reload()


class ResultsPanel(QtWidgets.QWidget):
    """Headline results of a run (live or opened), its Arrhenius and Nyquist plots, and overlays."""

    use_parameters = QtCore.Signal(str)  # the run file whose parameters the launcher should take

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QtWidgets.QLabel("no run yet", objectName="results_title", wordWrap=True)
        self.title.setStyleSheet("font-weight: bold;")
        self.table = QtWidgets.QTableWidget(0, 2, objectName="results_table")
        self.table.setHorizontalHeaderLabels(("result", "value"))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs = QtWidgets.QListWidget(objectName="compared_runs")
        self.runs.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.runs.itemSelectionChanged.connect(self._show_selected)
        plots = pg.GraphicsLayoutWidget()
        self.arrhenius = plots.addPlot(row=0, col=0, title="Arrhenius")
        self.arrhenius.setLabel("bottom", "1000/T / K⁻¹")
        self.arrhenius.setLabel("left", "ln(σ / S cm⁻¹)")
        self.arrhenius.addLegend(offset=(-10, 10))
        self.nyquist = plots.addPlot(row=1, col=0, title="Nyquist")
        self.nyquist.setLabel("bottom", "Z' / Ω")
        self.nyquist.setLabel("left", "−Z'' / Ω")
        self.nyquist.setAspectLocked(True)
        self.nyquist.addLegend(offset=(-10, 10))
        for plot in (self.arrhenius, self.nyquist):
            plot.showGrid(x=True, y=True, alpha=0.2)
        open_button = QtWidgets.QPushButton("Open run file…", objectName="open_run")
        open_button.clicked.connect(lambda: self.open_file())
        reuse_button = QtWidgets.QPushButton("Use its parameters", objectName="reuse_parameters")
        reuse_button.clicked.connect(self._reuse)
        report_button = QtWidgets.QPushButton("Report figures…", objectName="report_figures_button")
        report_button.setToolTip("the figures 'labctl report' draws for the selected run")
        report_button.clicked.connect(self.show_report)
        self.report_dialog: Any = None
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.title)
        left.addWidget(self.table, 3)
        left.addWidget(QtWidgets.QLabel("runs (select several to compare)"))
        left.addWidget(self.runs, 1)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(open_button)
        row.addWidget(reuse_button)
        row.addWidget(report_button)
        left.addLayout(row)
        layout = QtWidgets.QHBoxLayout(self)
        layout.addLayout(left, 2)
        layout.addWidget(plots, 3)
        #: path -> (description, [spectra as (z_re, z_im) arrays])
        self.loaded: dict[str, tuple[dict[str, Any], list[np.ndarray]]] = {}
        self.rows: list[Any] = []

    def open_file(self, path: str | None = None) -> str | None:
        """Load a run file (finished or still being written); returns an error message or None."""
        if not path:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a run file", "", "run files (*.h5)")
        if not path:
            return None
        from labctl.storage import describe_run, open_run

        try:
            desc = describe_run(path)
            with open_run(path) as run:
                spectra = [s for s in (rec.spectrum for rec in run.steps) if s is not None]
        except Exception as exc:
            message = f"{path}: {' '.join(str(exc).split())}"
            self.title.setText(message)
            return message
        key = str(Path(path).resolve())
        self.loaded[key] = (desc, spectra[-12:])
        while len(self.loaded) > MAX_LOADED_RUNS:  # memory stays bounded over a long session
            oldest = next(iter(self.loaded))
            del self.loaded[oldest]
            for i in range(self.runs.count()):
                if self.runs.item(i).data(QtCore.Qt.ItemDataRole.UserRole) == oldest:
                    self.runs.takeItem(i)
                    break
        existing = self.runs.findItems(Path(path).name, QtCore.Qt.MatchFlag.MatchExactly)
        item = existing[0] if existing else QtWidgets.QListWidgetItem(Path(path).name)
        item.setData(QtCore.Qt.ItemDataRole.UserRole, key)
        if not existing:
            self.runs.addItem(item)
        self.runs.clearSelection()
        item.setSelected(True)
        return None

    def show_report(self) -> None:
        """The report's figures of the selected run, in a window of their own."""
        from gui.report_view import ReportFiguresDialog

        items = self.runs.selectedItems()
        if not items:
            return
        self.report_dialog = ReportFiguresDialog(str(items[-1].data(QtCore.Qt.ItemDataRole.UserRole)), self)
        self.report_dialog.show()

    def _reuse(self) -> None:
        items = self.runs.selectedItems()
        if items:
            self.use_parameters.emit(str(items[-1].data(QtCore.Qt.ItemDataRole.UserRole)))

    def _show_selected(self) -> None:
        keys = [item.data(QtCore.Qt.ItemDataRole.UserRole) for item in self.runs.selectedItems()]
        keys = [k for k in keys if k in self.loaded]
        if not keys:
            return
        desc, _ = self.loaded[keys[-1]]
        status = desc.get("status")
        cell = (desc.get("cell") or {}).get("id") or "–"
        self.title.setText(f"{desc.get('protocol')} run {desc.get('run_id')} on cell {cell}: {status}"
                           + (f" – {desc.get('error')}" if desc.get("error") else ""))  # fmt: skip
        self.rows = headline_rows(desc.get("results") or {})
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, text in enumerate((row.name, row.value)):
                item = QtWidgets.QTableWidgetItem(text)
                if row.warning:
                    item.setForeground(QtGui.QColor("#c62828"))
                if row.note:
                    item.setToolTip(row.note)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._plot([self.loaded[k] for k in keys])

    def _plot(self, chosen: list[tuple[dict[str, Any], list[np.ndarray]]]) -> None:
        self.arrhenius.clear()
        self.nyquist.clear()
        nyquist_r: list[float] = []
        for n, (desc, spectra) in enumerate(chosen):
            colour = COLORS[n % len(COLORS)]
            name = f"{(desc.get('cell') or {}).get('id') or desc.get('run_id')}"
            results = desc.get("results") or {}
            points = arrhenius_points(results)
            if points is not None:
                x, y = points
                self.arrhenius.plot(x, y, pen=None, symbol="o", symbolSize=6, symbolBrush=colour, name=name)
                line = arrhenius_fit_line(results, np.sort(x))
                if line is not None:
                    ea = results.get("ea_eV")
                    label = f"{name}: Ea {ea:.3f} eV" if isinstance(ea, float) else name
                    self.arrhenius.plot(np.sort(x), line, pen=pg.mkPen(colour, width=1, cosmetic=True), name=label)
            shown = spectra if len(chosen) == 1 else [s for s in [_nearest_room_temperature(spectra)] if s is not None]
            for k, spectrum in enumerate(shown):
                shade = pg.intColor(k, hues=max(len(shown), 1)) if len(chosen) == 1 else colour
                self.nyquist.plot(spectrum["z_re"], -spectrum["z_im"], pen=pg.mkPen(shade, width=1, cosmetic=True),
                                  symbol="o", symbolSize=3, symbolBrush=shade, symbolPen=None,
                                  name=name if k == 0 or len(chosen) > 1 else None)  # fmt: skip
                nyquist_r.append(_electrolyte_resistance(spectrum))
        r_max = max([r for r in nyquist_r if r > 0], default=0.0)
        if r_max > 0:  # the electrolyte's arc, not the electrode's capacitive tail, fills the view
            self.nyquist.setXRange(0.0, 3.0 * r_max)
            self.nyquist.setYRange(0.0, 1.5 * r_max)


def _nearest_room_temperature(spectra: list[np.ndarray]) -> np.ndarray | None:
    """For an overlay of several runs: each run's spectrum measured nearest 25 °C."""
    if not spectra:
        return None
    temps = [float(np.nanmedian(s["T"])) if np.isfinite(s["T"]).any() else 25.0 for s in spectra]
    return spectra[int(np.argmin([abs(t - 25.0) for t in temps]))]


def _electrolyte_resistance(spectrum: np.ndarray) -> float:
    """Z' where −Z'' is smallest: between the electrolyte's arc and the electrode's response."""
    if len(spectrum) == 0:
        return 0.0
    return float(spectrum["z_re"][int(np.argmin(-spectrum["z_im"]))])


class LogHandler(logging.Handler):
    """Collects log records from any thread; the GUI drains them on its timer."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.put(self.format(record))


class LogPanel(QtWidgets.QPlainTextEdit):
    MAX_LINES = 5000

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("log")
        self.setReadOnly(True)
        self.setMaximumBlockCount(self.MAX_LINES)  # memory stays bounded over weeks
        self.handler = LogHandler()

    def drain(self) -> None:
        while True:
            try:
                self.appendPlainText(self.handler.records.get_nowait())
            except queue.Empty:
                return

    def add(self, text: str) -> None:
        self.appendPlainText(text)
