"""A bound on how long reading an untrusted file may take.

The HDF5 C library can loop forever on some damaged metadata (a byte-flipped
global heap was found by bench/fuzz_runfiles.py; h5dump loops on it too).
While it loops it holds the GIL, so no Python thread or signal handler runs;
only faulthandler's C watchdog thread does. It is armed to exit the process
(exit code 1) after ``seconds``, writing its report into a pipe read by a
tiny shell that turns "something was written" into one line on stderr; when
the command finishes in time, the pipe closes empty and the shell says nothing.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator

#: Far beyond any legitimate read (show and analyze of real files take
#: seconds); LABCTL_READ_TIMEOUT_S overrides it (the fuzz harness uses 15 s).
READ_TIMEOUT_S = 120.0


@contextlib.contextmanager
def read_deadline(what: str, seconds: float | None = None) -> Iterator[None]:
    """Exit with one line on stderr (code 1) if the block runs over ``seconds``."""
    if seconds is None:
        seconds = float(os.environ.get("LABCTL_READ_TIMEOUT_S", READ_TIMEOUT_S))
    line = f"error: {what}: reading did not finish in {seconds:.0f} s (damaged HDF5 metadata?)"
    try:
        reporter = subprocess.Popen(
            ["/bin/sh", "-c", f'[ -n "$(cat)" ] && echo {shlex.quote(line)} >&2'],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
    except OSError:  # no /bin/sh: still bounded, without the line
        reporter = None
    assert sys.stderr is not None
    sink = reporter.stdin if reporter is not None and reporter.stdin is not None else sys.stderr
    faulthandler.dump_traceback_later(seconds, exit=True, file=sink)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        if reporter is not None and reporter.stdin is not None:
            reporter.stdin.close()
            reporter.wait()
