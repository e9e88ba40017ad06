"""Who a worker is, and making sure only one process is that worker on this PC.

A worker's id is stable across restarts (host name + lab file, or ``--worker-id``) so that a
restarted worker finds and recovers *its own* previous jobs. Each of its channels claims under
``WORKER/CHANNEL``: the store can then interrupt the one job whose process died
(``recover_worker("WORKER/CHANNEL")``) without touching the worker's other channels.

Two processes with the same id would each recover the other's live jobs, so the id is locked
(``flock`` on a file in the temp folder, released by the kernel when the process dies).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

SEPARATOR = "/"


def default_worker_id(lab_path: Path | None) -> str:
    """``HOST:lab-NAME-HASH`` for a lab file, ``HOST:sim`` for simulated channels only."""
    host = socket.gethostname() or "localhost"
    if lab_path is None:
        return f"{host}:sim"
    resolved = str(Path(lab_path).resolve())
    digest = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    return f"{host}:lab-{Path(lab_path).stem}-{digest}"


def slot_id(worker: str, channel: str) -> str:
    """The id a worker's channel claims and reports under."""
    return f"{worker}{SEPARATOR}{channel}"


def owns(worker: str, slot: str | None) -> bool:
    """True when ``slot`` (a job's ``worker``) is one of ``worker``'s channels."""
    return slot is not None and slot.startswith(worker + SEPARATOR)


class WorkerLock:
    """Exclusive use of a worker id (against one store) on this PC."""

    def __init__(self, worker: str, store_location: str) -> None:
        key = hashlib.sha1(f"{worker}\0{store_location}".encode()).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"labctl-queue-worker-{key}.lock"
        self.worker = worker
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ValueError naming the worker (another process is it)."""
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process' life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise ValueError(
                f"worker id {self.worker!r} is already running on this PC (pid {holder}) against this store; "
                "stop it, or give another --worker-id"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
