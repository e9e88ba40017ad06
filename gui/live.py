"""Live view of one channel: plots chosen by step type, the step, its limits and progress.

Events arrive from the GUI's 25 Hz timer (``handle``); curves only accumulate there, and
``refresh`` pushes a decimated view to pyqtgraph (``gui.live_plot.LiveCurve``), so a week of
samples never reaches the scene graph. Thin cosmetic pens, no anti-aliasing on live curves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from qtpy import QtCore, QtWidgets

from gui.live_plot import FollowX, LiveCurve
from labctl.events import RunEnded, RunStarted, Samples, SpectrumPoints, StateChanged, StepEnded, StepStarted
from labctl.steps import Impedance, VoltageSweep

PAGE_TIME, PAGE_EIS, PAGE_SWEEP = 0, 1, 2


def _pen(color: str) -> Any:
    return pg.mkPen(color=color, width=1, cosmetic=True)


def describe_limits(step: Any) -> str:
    try:
        limits = step.effective_limits()
    except Exception:
        return ""
    parts = []
    if limits.max_time:
        parts.append(f"t ≤ {_duration(limits.max_time)}")
    if limits.voltage_above is not None:
        parts.append(f"E < {limits.voltage_above:g} V")
    if limits.voltage_below is not None:
        parts.append(f"E > {limits.voltage_below:g} V")
    if limits.current_below:
        parts.append(f"|I| > {limits.current_below:.3g} A")
    if limits.current_above:
        parts.append(f"|I| < {limits.current_above:.3g} A")
    if limits.max_charge:
        parts.append(f"|Q| ≤ {limits.max_charge / 3.6:.4g} mAh")
    if limits.steady_slope:
        parts.append("until I steady")
    return ", ".join(parts) + (" (abort on limit)" if limits.on_limit == "abort" else "")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _plot(layout: pg.GraphicsLayoutWidget, row: int, left: tuple[str, str], bottom: tuple[str, str]) -> pg.PlotItem:
    item = layout.addPlot(row=row, col=0)
    item.setLabel("left", left[0], units=left[1])  # SI prefixes chosen by pyqtgraph (mV, µA)
    item.setLabel("bottom", bottom[0], units=bottom[1])
    item.showGrid(x=True, y=True, alpha=0.2)
    return item


class ChannelLive(QtWidgets.QWidget):
    """Plots, step description and controls of one channel's run."""

    pause_requested = QtCore.Signal(str)
    resume_requested = QtCore.Signal(str)
    abort_requested = QtCore.Signal(str)

    def __init__(self, channel: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.channel = channel
        self.header = QtWidgets.QLabel(f"{channel}: idle", objectName="header")
        self.header.setStyleSheet("font-weight: bold;")
        self.step_label = QtWidgets.QLabel("", objectName="step", wordWrap=True)
        self.progress = QtWidgets.QProgressBar(objectName="progress", maximum=1000, textVisible=True)
        self.reading = QtWidgets.QLabel("", objectName="reading")
        self.state = "idle"
        self.pause_button = QtWidgets.QPushButton("Pause (hold cell)", objectName="pause")
        self.resume_button = QtWidgets.QPushButton("Resume", objectName="resume")
        self.abort_button = QtWidgets.QPushButton("Abort", objectName="abort")
        self.pause_button.clicked.connect(lambda: self.pause_requested.emit(self.channel))
        self.resume_button.clicked.connect(lambda: self.resume_requested.emit(self.channel))
        self.abort_button.clicked.connect(lambda: self.abort_requested.emit(self.channel))

        self.stack = QtWidgets.QStackedWidget()
        time_page = pg.GraphicsLayoutWidget()
        self.plot_E = _plot(time_page, 0, ("E", "V"), ("t", "s"))
        self.plot_I = _plot(time_page, 1, ("I", "A"), ("t", "s"))
        self.plot_I.setXLink(self.plot_E)
        eis_page = pg.GraphicsLayoutWidget()
        self.plot_nyquist = eis_page.addPlot(row=0, col=0, rowspan=2)
        self.plot_nyquist.setLabel("bottom", "Z'", units="Ω")
        self.plot_nyquist.setLabel("left", "−Z''", units="Ω")
        self.plot_nyquist.setAspectLocked(True)  # equal axes: a semicircle looks like one
        self.plot_nyquist.showGrid(x=True, y=True, alpha=0.2)
        self.plot_bode_mag = eis_page.addPlot(row=0, col=1)
        self.plot_bode_mag.setLabel("left", "log₁₀ |Z| / Ω")
        self.plot_bode_phase = eis_page.addPlot(row=1, col=1)
        self.plot_bode_phase.setLabel("left", "−phase / °")
        self.plot_bode_phase.setLabel("bottom", "log₁₀ f / Hz")
        self.plot_bode_phase.setXLink(self.plot_bode_mag)
        sweep_page = pg.GraphicsLayoutWidget()
        self.plot_sweep = _plot(sweep_page, 0, ("I", "A"), ("E", "V"))
        for page in (time_page, eis_page, sweep_page):
            page.setAntialiasing(False)
            self.stack.addWidget(page)
        self.curve_E = LiveCurve(self.plot_E, _pen("#1565c0"), "E")
        self.curve_I = LiveCurve(self.plot_I, _pen("#c62828"), "I")
        self.curve_nyquist_line = LiveCurve(self.plot_nyquist, _pen("#2e7d32"), "Nyquist")
        self.curve_mag = LiveCurve(self.plot_bode_mag, _pen("#2e7d32"), "|Z|")
        self.curve_phase = LiveCurve(self.plot_bode_phase, _pen("#6a1b9a"), "phase")
        self.curve_sweep = LiveCurve(self.plot_sweep, _pen("#1565c0"), "I–E")
        self.curves = [self.curve_E, self.curve_I, self.curve_nyquist_line, self.curve_mag, self.curve_phase,
                       self.curve_sweep]  # fmt: skip
        # time axes step ahead of the data instead of auto-ranging every frame (bench/gui_fps.py)
        self.followers = [FollowX(self.plot_E), FollowX(self.plot_I)]
        self.step: Any = None
        self.step_t0 = 0.0
        self.step_points = 0
        self.t_cell = 0.0

        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.header, 1)
        for button in (self.pause_button, self.resume_button, self.abort_button):
            buttons.addWidget(button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(buttons)
        info = QtWidgets.QHBoxLayout()
        info.addWidget(self.step_label, 3)
        info.addWidget(self.progress, 1)
        layout.addLayout(info)
        layout.addWidget(self.reading)
        layout.addWidget(self.stack, 1)
        self._update_buttons()

    # ---- events ---------------------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        if isinstance(event, RunStarted):
            info = event.info
            for curve in self.curves:
                curve.clear()
            self.header.setText(f"{self.channel}: {info.protocol} run {info.run_id}, cell {info.cell.get('id') or '–'}")
            self.state = "running"
        elif isinstance(event, StepStarted):
            self._step_started(event)
        elif isinstance(event, Samples):
            block = event.block
            if len(block):
                self.curve_E.append(block["t"], block["E"])
                self.curve_I.append(block["t"], block["I"])
                if isinstance(self.step, VoltageSweep):
                    self.curve_sweep.append(block["E"], block["I"])
                row = block[-1]
                self.t_cell = float(row["t"])
                temperature = float(row["T"])
                self.reading.setText(
                    f"t = {_duration(self.t_cell)}   E = {row['E']:.4f} V   I = {row['I']:.4g} A"
                    + (f"   T = {temperature:.1f} °C" if math.isfinite(temperature) else "")
                )
        elif isinstance(event, SpectrumPoints):
            block = event.block
            if len(block):
                self.curve_nyquist_line.append(block["z_re"], -block["z_im"])
                z = np.hypot(block["z_re"], block["z_im"])
                self.curve_mag.append(np.log10(block["freq"]), np.log10(z))
                self.curve_phase.append(np.log10(block["freq"]), -np.degrees(np.arctan2(block["z_im"], block["z_re"])))
                self.step_points += len(block)
                self.t_cell = float(block[-1]["t"])
                self.reading.setText(f"f = {block[-1]['freq']:.4g} Hz   |Z| = {z[-1]:.4g} Ω")
        elif isinstance(event, StateChanged):
            self.state = event.new
        elif isinstance(event, StepEnded):
            pass
        elif isinstance(event, RunEnded):
            self.state = event.status
            self.progress.setValue(1000)
            self.step_label.setText(f"run {event.status}" + (f": {event.error}" if event.error else ""))
        self._update_buttons()

    def _step_started(self, event: StepStarted) -> None:
        step = event.step
        self.step = step
        self.step_t0 = event.t_start
        self.step_points = 0
        if isinstance(step, Impedance):
            self.stack.setCurrentIndex(PAGE_EIS)
            for curve in (self.curve_nyquist_line, self.curve_mag, self.curve_phase):
                curve.clear()  # one spectrum at a time (an Arrhenius run measures many)
        elif isinstance(step, VoltageSweep):
            self.stack.setCurrentIndex(PAGE_SWEEP)
            self.curve_sweep.clear()
        else:
            self.stack.setCurrentIndex(PAGE_TIME)
        label = f" – {step.label}" if step.label else ""
        limits = describe_limits(step)
        self.step_label.setText(f"step {event.index}: {step.kind}{label}" + (f"   [{limits}]" if limits else ""))

    def _update_buttons(self) -> None:
        running = self.state in ("running", "pausing")
        self.pause_button.setEnabled(running)
        self.resume_button.setEnabled(self.state in ("paused", "pausing"))
        self.abort_button.setEnabled(self.state in ("running", "pausing", "paused"))
        shown = {"paused": "paused – cell held", "pausing": "pausing…", "aborting": "aborting…"}.get(
            self.state, self.state
        )
        self.progress.setFormat(f"{shown}  %p%")

    def refresh(self) -> None:
        """Called by the 25 Hz timer: push decimated curves and the step's progress."""
        for curve in self.curves:
            curve.refresh()
        for follower in self.followers:
            follower.update()
        self.progress.setValue(int(1000 * self.fraction()))

    def fraction(self) -> float:
        step = self.step
        if step is None:
            return 0.0
        if isinstance(step, Impedance):
            return min(self.step_points / max(len(step.frequencies()), 1), 1.0)
        try:
            limits = step.effective_limits()
        except Exception:
            return 0.0
        if limits.max_time:
            return min(max((self.t_cell - self.step_t0) / limits.max_time, 0.0), 1.0)
        return 0.0


class LivePanel(QtWidgets.QTabWidget):
    """One tab per channel that has shown a run."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.views: dict[str, ChannelLive] = {}
        #: Called once with each new channel view (the window connects its controls).
        self.on_new_view: Any = None

    def view(self, channel: str) -> ChannelLive:
        if channel not in self.views:
            view = ChannelLive(channel)
            self.views[channel] = view
            self.addTab(view, channel)
            if self.on_new_view is not None:
                self.on_new_view(view)
        return self.views[channel]

    def refresh(self) -> None:
        for view in self.views.values():
            view.refresh()
