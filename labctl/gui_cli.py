"""``labctl gui``: open the Qt window (the only place outside ``gui/`` that names it).

The import of ``gui`` is inside the command, so ``labctl`` without Qt installed (a headless
measuring PC) keeps every other command; the dependency test allows exactly this one edge
from the application layer to the GUI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command("gui")
@click.option("--demo", is_flag=True, help="simulated instruments with runs and a queue already going")
@click.option("--lab", "lab_path", envvar="LABCTL_LAB", type=click.Path(dir_okay=False), help="lab file (TOML)")
@click.option("--store", "store_location", envvar="LABCTL_QUEUE_STORE", default=None,
              help="queue store: a SQLite file or postgresql://… (default: the user's store)")  # fmt: skip
@click.option("--runs", "runs_dir", default="runs", show_default=True, help="folder for run files started here")
@click.option("--speed", default="max", show_default=True, help="simulated channels: max or N x real time")
def gui_command(demo: bool, lab_path: str | None, store_location: str | None, runs_dir: str, speed: str) -> None:
    """Open the GUI: instruments, protocol launcher, live plots, queue, results, log."""
    from labctl.config import LabConfigError, load_lab
    from labctl.params import ParameterError
    from labctl.speed import parse_speed

    try:
        parse_speed(speed)
        if lab_path is not None:
            load_lab(Path(lab_path))  # a bad lab file: one line, exit 2, before any window
    except (LabConfigError, ParameterError, ValueError) as exc:
        click.echo(f"error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)
    try:
        from gui.app import main
    except ImportError as exc:
        click.echo(f"error: the GUI needs Qt (pip install 'labctl[gui]'): {exc}", err=True)
        sys.exit(2)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.exit(main(demo=demo, lab_path=lab_path, store=store_location, runs=runs_dir, speed=speed))
