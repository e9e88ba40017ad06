"""``python -m gui.screenshots OUTDIR``: PNGs of each main view with simulated runs going.

Runs the demo offscreen, waits (on conditions, with a generous bound) until each view has
something to show, and grabs it: instruments, launcher (with its estimate, and refusing a
value), live E–t, live Nyquist, queue, and results with the Arrhenius plot of two membranes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _wait(app: object, condition: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()  # type: ignore[attr-defined]
        if condition():
            return True
        time.sleep(0.02)
    return False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gui.screenshots OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    from qtpy import QtWidgets

    from gui.app import ABORT, MainWindow
    from gui.demo import demo_session, start_demo
    from gui.presets import Presets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    session = demo_session(speed="400")
    window = MainWindow(session, Presets(session.runs_dir / "presets.json"))
    window.resize(1280, 800)
    window.show()
    start_demo(window)
    from gui.live import PAGE_EIS

    def shot(name: str, widget: QtWidgets.QWidget) -> None:
        window.tabs.setCurrentWidget(widget)
        _wait(app, lambda: False, 0.3)  # two or three frames of the 25 Hz timer
        path = out / f"{name}.png"
        window.grab().save(str(path))
        print(path)

    e_t = window.live.view("sim1")
    nyquist = window.live.view("sim2")
    window.live.setCurrentWidget(nyquist)
    _wait(app, lambda: nyquist.stack.currentIndex() == PAGE_EIS and nyquist.curve_nyquist_line.n_points > 35)
    shot("live_nyquist", window.live)
    window.live.setCurrentWidget(e_t)
    _wait(app, lambda: e_t.curve_E.n_points > 200)
    shot("live_E-t", window.live)
    _wait(app, lambda: any(j.active and j.fraction for j in session.store.list_jobs()), 60)
    _wait(app, lambda: "sim3" in window.live.views and window.live.views["sim3"].curve_E.n_points > 50, 60)
    window.queue.reload()
    shot("queue", window.queue)
    window.instruments.reload()
    shot("instruments", window.instruments)
    window.launcher.protocol.setCurrentText("transference")
    window.launcher.cell_id.setText("Li-PEO-Li-11")
    window.launcher.electrolyte.setText("PEO:LiTFSI 20:1")
    window.launcher.field("dv").setText("20")
    _wait(app, lambda: "dry run" in window.launcher.estimate.text(), 60)
    shot("launcher", window.launcher)  # the dry-run estimate, before anything starts
    window.launcher.field("dv").setText("500")
    shot("launcher_invalid", window.launcher)  # the as-you-type check, with the CLI's message
    window.results.runs.clearSelection()
    for i in range(window.results.runs.count()):
        item = window.results.runs.item(i)
        item.setSelected("arrhenius" in item.text())
    shot("results_arrhenius", window.results)
    window.close_choice = ABORT
    window.close()
    session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
