"""``labctl report RUN.h5 [-o report.html|report.pdf|DIR]``.

Exit codes as everywhere in labctl: 2 for bad input (a path that cannot be
written, a file that is not a labctl run file; nothing is written), 1 when
the file cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labctl.report.atomic import REPORT_MARKER, OutputPathError, check_dir_target, check_parent

EXIT_FAILED = 1
EXIT_USAGE = 2
KINDS = {".html": "html", ".htm": "html", ".pdf": "pdf"}


def output_target(run_file: Path, output: str | None) -> tuple[str, Path]:
    """(kind, path) for ``-o``: html, pdf or dir; raises OutputPathError."""
    if output is None:
        return "html", run_file.with_name(run_file.stem + "_report.html")
    if not output.strip():
        raise OutputPathError("-o: empty path (allowed: FILE.html, FILE.pdf, or a folder)")
    target = Path(output)
    is_dir = output.endswith(("/", "\\")) or target.is_dir() or not target.suffix
    if is_dir:
        if target.exists() and not target.is_dir():
            raise OutputPathError(f"-o: {target} exists and is not a folder")
        check_dir_target(target, REPORT_MARKER)
        return "dir", target
    kind = KINDS.get(target.suffix.lower())
    if kind is None:
        raise OutputPathError(
            f"-o: cannot write a {target.suffix!r} report (allowed: FILE.html, FILE.pdf, or a folder)"
        )
    check_parent(target)
    if target.exists() and target.resolve() == run_file.resolve():
        raise OutputPathError(f"-o: {target} is the run file itself")
    return kind, target


def fail(line: str, code: int) -> None:
    click.echo(f"error: {' '.join(line.split())}", err=True)
    sys.exit(code)


@click.command("report")
@click.argument("run_file", metavar="RUN.h5")
@click.option("-o", "--output", default=None, help="report.html (default RUN_report.html), report.pdf, or a folder")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="analysis parameter, as for analyze")
def report_command(run_file: str, output: str | None, params: tuple[str, ...]) -> None:
    """Write a report of a run: its figures, results with uncertainties,
    warnings, conventions and metadata (also for running or interrupted runs).

    \b
    labctl report RUN.h5                      -> RUN_report.html (self-contained)
    labctl report RUN.h5 -o report.pdf        -> table pages + figure pages
    labctl report RUN.h5 -o figures/          -> PNGs + index.html + results.json
    """
    from labctl.params import ParameterError, parse_assignments
    from labctl.report.figures import figures_for
    from labctl.report.runview import load_run
    from labctl.report.writers import write_dir, write_html, write_pdf
    from labctl.storage import RunFileError
    from labctl.watchdog import read_deadline

    path = Path(run_file)
    try:
        if not path.is_file():
            raise OutputPathError(f"RUN.h5: no run file at {path}")
        given = parse_assignments(params, "-p")
        kind, target = output_target(path, output)
        with read_deadline(run_file):
            view = load_run(path, given)
    except (OutputPathError, ParameterError, RunFileError) as exc:
        fail(str(exc), EXIT_USAGE)
        return
    except OSError as exc:
        fail(f"cannot read {run_file}: {(str(exc).splitlines() or [type(exc).__name__])[0][:300]}", EXIT_FAILED)
        return
    figures = figures_for(view)
    try:
        if kind == "html":
            write_html(view, figures, target)
        elif kind == "pdf":
            write_pdf(view, figures, target)
        else:
            write_dir(view, figures, target)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}", EXIT_FAILED)
    click.echo(f"{target}  ({len(figures)} figures, {view.protocol}, status {view.status})")
