"""Job processes that outlived their worker, found and waited for by the restarted worker.

A SIGKILLed worker's job processes are told by the kernel (``PR_SET_PDEATHSIG``) and abort
their runs, but that takes a moment: the orphan may still be importing, creating its run file
or putting the cell in its safe state when the worker comes back. The restarted worker must
not call such a job ``interrupted`` (nor touch its file) before the orphan is gone, or the
store would point at a file that is still being written. Orphans are found by their command
line (``python -m labctl.queue.job … --job ID --worker SLOT``), which names the job and the
channel slot uniquely on this PC (the worker id is locked per PC, see ``identity``).

Linux only (``/proc``); elsewhere no orphans are found and the file-level checks of
``labctl.storage.recover`` are all that guard the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from labctl.storage.reader import pid_alive

log = logging.getLogger(__name__)

JOB_MODULE = "labctl.queue.job"
#: After SIGKILL, how long to wait for the kernel to take a hung orphan away.
KILL_WAIT_S = 5.0


def job_processes(job_id: int, slot: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids of live processes running job ``job_id`` for channel slot ``slot``."""
    if not proc.is_dir():
        return []
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        mine = JOB_MODULE in argv and _option(argv, "--job") == str(job_id) and _option(argv, "--worker") == slot
        if mine and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _option(argv: list[str], name: str) -> str | None:
    try:
        return argv[argv.index(name) + 1]
    except (ValueError, IndexError):
        return None


def still_alive(pids: Iterable[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid) is not False]


def await_orphans(pids: list[int], wait_s: float, poll_s: float = 0.1) -> list[int]:
    """Wait (up to ``wait_s``) for orphans to end their runs; an orphan still there after that
    is hung and is killed (the worker then makes the channel safe on its own connection).
    Returns the pids that had to be killed."""
    deadline = time.monotonic() + wait_s
    alive = still_alive(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(poll_s)
        alive = still_alive(alive)
    for pid in alive:
        log.warning("job process %s did not end %.0f s after its worker died: killing it", pid, wait_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while still_alive(alive) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return alive
