"""Closing the file of a run whose writer died (killed, crashed, power cut).

Such a file holds everything up to the writer's last flush and opens for SWMR
reading (``open_run`` reports it ``interrupted``), but HDF5 still flags it as
"open for writing" in its superblock, so nothing else opens it: not HDFView,
not MATLAB, not h5py without ``swmr=True``, and not ``finalize_file``. What
HDF5's ``h5clear -s`` tool does is clear those flags; this does the same in
Python (h5py cannot), then finalizes the file as interrupted, which is what
the queue does on restart for jobs that were running (DESIGN §8).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import h5py

from labctl.storage.finalize import finalize_file
from labctl.storage.guard import RunFileError
from labctl.storage.reader import RunFile, open_run, pid_alive

_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: Without a process to ask (another host, or the pid is alive but may have
#: been reused), a writer counts as certainly dead only after this long
#: without a heartbeat: far beyond any flush interval, pause or slow disk
#: (a live writer rewrites the heartbeat every flush, paused or not).
CERTAINLY_DEAD_MIN_S = 600.0
CERTAINLY_DEAD_FLUSHES = 100


@dataclass(frozen=True)
class Recovery:
    """What ``recover_run`` did, for the one line ``labctl recover`` prints."""

    path: Path
    recovered: bool  # False: the file was already closed, nothing was written
    status: str
    steps: int  # step rows in the file
    completed_steps: int  # steps that ended (the rest was cut by the interruption)
    samples: int
    reason: str  # why the writer counts as dead (empty if nothing was done)

    @property
    def summary(self) -> str:
        if not self.recovered:
            return f"{self.path}: already closed (status {self.status}); nothing to do"
        return (
            f"{self.path}: recovered as {self.status} ({self.reason}); {self.completed_steps} of {self.steps} steps "
            f"complete, {self.samples} samples kept; the file now opens in any HDF5 tool"
        )


def writer_certainly_dead(run: RunFile, now: float | None = None) -> str:
    """Why the run's writer is certainly gone, or "" if it may still be
    writing. Stricter than the reader's ``interrupted`` (which only decides
    what to display): here the answer decides whether the file is modified.

    Certainly dead: on this host with its pid gone; or no heartbeat for
    max(CERTAINLY_DEAD_MIN_S, CERTAINLY_DEAD_FLUSHES x flush interval).
    """
    meta = run.meta
    pid, host = meta.get("writer_pid"), meta.get("writer_host")
    if host == socket.gethostname() and pid is not None and pid_alive(int(pid)) is False:
        return f"writer pid {pid} on this host is gone"
    now = time.time() if now is None else now
    limit = max(CERTAINLY_DEAD_MIN_S, CERTAINLY_DEAD_FLUSHES * float(meta.get("flush_interval", 0.5)))
    last = run.heartbeat.wall_time if run.heartbeat is not None else run.path.stat().st_mtime
    if now - last > limit:
        return f"no heartbeat for {now - last:.0f} s (limit {limit:.0f} s)"
    return ""


def recover_file(path: str | os.PathLike[str]) -> str:
    """Finalize the file of a run whose writer is gone; returns its status.

    Refuses (RuntimeError) while the run still looks alive: clearing the
    flags under a live writer would corrupt the file. A file already
    finalized is left alone. A writer that died while finalizing leaves an
    end record, and the file is finalized with that record's status.
    """
    return recover_run(path).status


def recover_run(path: str | os.PathLike[str]) -> Recovery:
    """``recover_file`` with an account of what was done (idempotent).

    Raises RunFileError for a file that is not a labctl run file (or is
    refused as input), RuntimeError while its writer may be alive.
    """
    p = Path(path)
    _require_hdf5(p)
    reason = ""
    try:
        with open_run(p, timeout=0.25) as run:
            if run.finalized:
                return _account(run, recovered=False, reason="")
            if run.status == "running" or not (reason := writer_certainly_dead(run)):
                raise RuntimeError(f"{p}: the run's writer may still be alive; not touching the file")
            error = _interrupted_error(run, reason)
    except OSError:
        # Not even an SWMR reader gets in: the writer died outside SWMR mode
        # (while creating or finalizing the file). Go on only if no process
        # holds a lock on the file (HDF5 locks it while it is open).
        if not _unlocked(p):
            raise RuntimeError(f"{p}: cannot open it and another process has it open") from None
        reason, error = "no process has the file open", ""
        clear_status_flags(p)
        open_run(p, timeout=0.25).close()  # the same checks as any reader before finalizing
    else:
        clear_status_flags(p)
    finalize_file(p, interrupted_error=error)
    with h5py.File(p, "r"):
        pass  # opens without SWMR now: what every other HDF5 tool needs
    with open_run(p) as run:
        return _account(run, recovered=True, reason=reason)


def _require_hdf5(path: Path) -> None:
    if not path.is_file():
        raise RunFileError("file", "no such file", str(path))
    try:
        with open(path, "rb") as fh:
            _find_superblock(fh)
    except ValueError:
        raise RunFileError("file", "not an HDF5 file (so not a labctl run file)", str(path)) from None


def _interrupted_error(run: RunFile, reason: str) -> str:
    hb = run.heartbeat
    last = "no flush recorded"
    if hb is not None:
        last = "last flush " + datetime.fromtimestamp(hb.wall_time, UTC).isoformat(timespec="seconds")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return f"the writer stopped before the run ended ({reason}; {last}); closed by labctl recover at {now}"


def _account(run: RunFile, recovered: bool, reason: str) -> Recovery:
    steps = run.steps
    return Recovery(
        path=run.path,
        recovered=recovered,
        status=run.status,
        steps=len(steps),
        completed_steps=sum(1 for s in steps if not s.running and s.end_reason is not None),
        samples=run.n_samples,
        reason=reason,
    )


def clear_status_flags(path: Path) -> bool:
    """Clear the superblock's file-consistency flags (``h5clear -s``).

    Only superblock versions 2 and 3 (what labctl writes) carry the flags and
    a checksum; the checksum is recomputed, and nothing is written unless the
    stored checksum is first reproduced, so a misread superblock is never
    "fixed". Returns False when there was nothing to clear.
    """
    with open(path, "r+b") as fh:
        base = _find_superblock(fh)
        fh.seek(base)
        head = bytearray(fh.read(12))
        version, size_of_offsets = head[8], head[9]
        if version not in (2, 3):
            raise ValueError(f"{path}: superblock version {version} has no status flags to clear")
        body_len = 12 + 4 * size_of_offsets  # signature..root object header address
        fh.seek(base)
        body = bytearray(fh.read(body_len + 4))
        stored = int.from_bytes(body[body_len:], "little")
        if lookup3(bytes(body[:body_len])) != stored:
            raise ValueError(f"{path}: superblock checksum does not match; not modifying the file")
        if body[11] == 0:
            return False
        body[11] = 0
        body[body_len:] = lookup3(bytes(body[:body_len])).to_bytes(4, "little")
        fh.seek(base)
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _unlocked(path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: cannot tell
        return False
    with open(path, "rb") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return True


def _find_superblock(fh: BinaryIO) -> int:
    """The superblock sits at 0, 512, 1024, 2048 ... (after a user block)."""
    size = fh.seek(0, os.SEEK_END)
    offset = 0
    while offset + 8 <= size:
        fh.seek(offset)
        if fh.read(8) == _SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    raise ValueError("not an HDF5 file (no superblock signature)")


_M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (public domain), the checksum HDF5
    puts on version 2+ superblocks and other metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M
    i = 0
    while length > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & _M
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & _M
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & _M
        a = (a - c) & _M
        a ^= _rot(c, 4)
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= _rot(a, 6)
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= _rot(b, 8)
        b = (b + a) & _M
        a = (a - c) & _M
        a ^= _rot(c, 16)
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= _rot(a, 19)
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= _rot(b, 4)
        b = (b + a) & _M
        length -= 12
        i += 12
    if length == 0:
        return c
    tail = data[i:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c ^= b
    c = (c - _rot(b, 14)) & _M
    a ^= c
    a = (a - _rot(c, 11)) & _M
    b ^= a
    b = (b - _rot(a, 25)) & _M
    c ^= b
    c = (c - _rot(b, 16)) & _M
    a ^= c
    a = (a - _rot(c, 4)) & _M
    b ^= a
    b = (b - _rot(a, 14)) & _M
    c ^= b
    c = (c - _rot(b, 24)) & _M
    return c
