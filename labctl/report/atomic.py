"""Writing outputs so that nothing is ever half-written.

A file is written to a temporary sibling and renamed over the target (rename
is atomic on one filesystem). A folder is built as a temporary sibling and
swapped in: a previous output of the same kind (recognised by its marker
file) is replaced; any other non-empty folder is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Marker files: a folder holding one was written by labctl and may be replaced.
REPORT_MARKER = ".labctl-report"
EXPORT_MARKER = ".labctl-export"


class OutputPathError(ValueError):
    """An output path that cannot be written: one line, exit 2."""


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; renamed onto it if the block succeeds."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: Path, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; swapped in if the block succeeds.

    ``marker`` is the name of a file written into the folder that marks it as
    ours, so that a later run may replace it."""
    check_dir_target(target, marker)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        (tmp / marker).write_text("written by labctl; the whole folder is replaced on the next export\n")
        os.chmod(tmp, 0o755)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "previous")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_dir_target(target: Path, marker: str) -> None:
    """Refuse a folder target that cannot be (re)written."""
    check_parent(target)
    if target.exists():
        if not target.is_dir():
            raise OutputPathError(f"{target} exists and is not a folder")
        if any(target.iterdir()) and not (target / marker).is_file():
            raise OutputPathError(f"{target} is a folder with other files in it; give a new or empty folder")


def check_parent(target: Path) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise OutputPathError(f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"folder {parent} is not writable")
