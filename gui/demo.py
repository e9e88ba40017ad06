"""``labctl gui --demo``: the GUI on simulated instruments with work already going.

A newcomer sees every panel alive at once: two finished Arrhenius runs on two simulated
membranes (results and a comparison), a cycling run (E–t) and an Arrhenius run (live
Nyquist) started from the GUI at 200× real time, and three queue jobs run by a
``labctl queue run`` process on the other simulated channels. Everything lives in a fresh
temporary folder (store, run files, presets), so the demo never touches a lab's own queue.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gui.session import RunRequest, Session

DEMO_SPEED = "200"
MEMBRANES = (("PEO-LiTFSI-A", {"sigma": "3.3e-4", "ea": "0.35", "seed": "1"}),
             ("PEO-LiTFSI-B", {"sigma": "1.2e-4", "ea": "0.52", "seed": "2"}))  # fmt: skip


def demo_session(folder: Path | None = None, speed: str = DEMO_SPEED) -> Session:
    folder = Path(folder or tempfile.mkdtemp(prefix="labctl-demo-"))
    return Session(store=str(folder / "queue.sqlite3"), runs_dir=folder / "runs", sim_channels=4, speed=speed)


def finished_arrhenius_runs(session: Session) -> list[Path]:
    """Two Arrhenius runs on two simulated membranes, in virtual time (a second or two each)."""
    from labctl.runner import prepare_run

    paths = []
    for cell_id, truth in MEMBRANES:
        prepared = prepare_run("arrhenius", params={}, sim=truth, speed="max", out_dir=session.runs_dir,
                               cell_id=cell_id)  # fmt: skip
        prepared.execute()
        paths.append(prepared.path)
    return paths


def start_demo(window: Any, *, queue: bool = True) -> None:
    session: Session = window.session
    for path in finished_arrhenius_runs(session):
        window.results.open_file(str(path))
    window.results.runs.selectAll()  # compare the two membranes
    for request in (RunRequest("cycling", {}, "sim1", "Li-Li-07", electrolyte="PEO:LiTFSI 20:1"),
                    RunRequest("arrhenius", {}, "sim2", "SS-PEO-03", notes="demo")):  # fmt: skip
        window.watch_run(session.start_run(request))
    if queue:
        for protocol, channel, cell in (("cycling", "sim3", "Li-Li-09"), ("eis", "sim3", "SS-PEO-04"),
                                        ("ccd", "sim4", "Li-Li-08"), ("lsv", "sim4", "Li-SS-02")):  # fmt: skip
            session.store.add(RunRequest(protocol, {}, channel, cell).job_spec())
        session.start_runner()
        window.queue.reload()
