"""fsync in a background thread.

HDF5 never fsyncs: a flush hands data to the OS, which survives the process
dying but not a power cut or an OS crash, and the OS then writes pages back
in any order (within ~30 s on Linux), which can leave an HDF5 file
inconsistent. Syncing after each flush closes that window, but the writer
runs in the engine thread, and an fsync can take tens of milliseconds on a
busy disk: long enough to disturb a host-timed acquisition loop. So the
writer only asks for an fsync; this thread does it.
"""

from __future__ import annotations

import os
import threading

#: fdatasync where there is one: the data and the file size, not the mtime.
_sync = getattr(os, "fdatasync", os.fsync)


class Syncer:
    """Syncs file descriptor ``fd`` to disk whenever asked, without blocking
    the asker. ``close()`` must be called before ``fd`` is closed."""

    def __init__(self, fd: int, name: str = "labctl-fsync") -> None:
        self._fd = fd
        self._wake = threading.Event()
        self._stop = False
        #: The last error from fsync (e.g. EIO): the writer re-raises it.
        self.error: OSError | None = None
        self.syncs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Sync soon: everything written before this call will be covered."""
        self._wake.set()

    def close(self) -> None:
        """Finish the sync in progress (if any), then stop."""
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            try:
                _sync(self._fd)
                self.syncs += 1
            except OSError as exc:
                self.error = exc


def sync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file by name (any descriptor of a file syncs all its data)."""
    fd = os.open(path, os.O_RDWR)  # Windows cannot sync a read-only descriptor
    try:
        _sync(fd)
    finally:
        os.close(fd)
