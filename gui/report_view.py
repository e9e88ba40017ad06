"""The ``labctl report`` figures of a run, inside the GUI.

Why: the results tab draws live-style pyqtgraph plots, but the figures a paper shows (Nyquist
with the fitted, labelled circuit, LSV with each onset method, the CCD failing step…) are drawn
once, by ``labctl.report``; showing the same images here means a technician sees exactly what
the report will say. The figures are made in a thread (matplotlib Agg, no Qt), so a long run
never freezes the window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qtpy import QtCore, QtGui, QtWidgets

#: Pixels a figure is shown at (the report's PNGs are drawn at print resolution).
FIGURE_WIDTH = 900


@dataclass(frozen=True)
class RenderedFigure:
    name: str
    caption: str
    png: bytes


def render_report_figures(path: str) -> list[RenderedFigure]:
    """The report's figures of the run file ``path`` as PNG images (raises on a refused file).
    The report draws on its own Agg canvases (no pyplot state), so nothing needs closing."""
    from labctl.report.figures import figures_for
    from labctl.report.runview import load_run
    from labctl.report.writers import png_bytes

    return [RenderedFigure(f.name, f.caption, png_bytes(f.figure)) for f in figures_for(load_run(Path(path)))]


class _Done(QtCore.QObject):
    finished = QtCore.Signal(object)  # list[RenderedFigure] or an error text


class ReportFiguresDialog(QtWidgets.QDialog):
    """A scrollable page of a run's report figures, each with its caption."""

    def __init__(self, path: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("report_figures")
        self.setWindowTitle(f"report figures – {Path(path).name}")
        self.resize(960, 760)
        self.status = QtWidgets.QLabel("drawing the report's figures…", objectName="report_status")
        self.page = QtWidgets.QWidget()
        self.column = QtWidgets.QVBoxLayout(self.page)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.page)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        self.images: list[QtWidgets.QLabel] = []
        self._done = _Done()
        self._done.finished.connect(self._show)
        start_in_thread(lambda: render_report_figures(path), self._done.finished.emit)

    def _show(self, outcome: object) -> None:
        if not isinstance(outcome, list):
            self.status.setText(f"no report: {outcome}")
            return
        self.status.setText(f"{len(outcome)} figures, as in 'labctl report'")
        for figure in outcome:
            pixmap = QtGui.QPixmap()
            pixmap.loadFromData(figure.png, "PNG")
            if pixmap.width() > FIGURE_WIDTH:  # fit the window: no sideways scrolling
                pixmap = pixmap.scaledToWidth(FIGURE_WIDTH, QtCore.Qt.TransformationMode.SmoothTransformation)
            image = QtWidgets.QLabel(objectName=f"figure_{figure.name}")
            image.setPixmap(pixmap)
            caption = QtWidgets.QLabel(figure.caption, wordWrap=True)
            self.column.addWidget(image)
            self.column.addWidget(caption)
            self.images.append(image)
        self.column.addStretch(1)


def start_in_thread(work: Callable[[], object], done: Callable[[object], None]) -> None:
    """Run ``work`` in a daemon thread; ``done`` gets its result or a one-line error text."""

    def run() -> None:
        try:
            result = work()
        except Exception as exc:  # a refused or unreadable file: said in the dialog
            result = " ".join(str(exc).split()) or type(exc).__name__
        done(result)

    threading.Thread(target=run, name="gui-report", daemon=True).start()
