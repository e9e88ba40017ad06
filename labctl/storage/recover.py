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
from pathlib import Path
from typing import BinaryIO

from labctl.storage.finalize import finalize_file
from labctl.storage.reader import open_run

_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def recover_file(path: str | os.PathLike[str]) -> str:
    """Finalize the file of a run whose writer is gone; returns its status.

    Refuses (RuntimeError) while the run still looks alive: clearing the
    flags under a live writer would corrupt the file. A file already
    finalized is left alone. A writer that died while finalizing leaves an
    end record, and the file is finalized with that record's status.
    """
    p = Path(path)
    try:
        with open_run(p, timeout=0.25) as run:
            if run.finalized:
                return run.status
            if run.status == "running":
                raise RuntimeError(f"{p}: the run's writer looks alive; not touching the file")
    except OSError:
        # Not even an SWMR reader gets in: the writer died outside SWMR mode
        # (while creating or finalizing the file). Go on only if no process
        # holds a lock on the file (HDF5 locks it while it is open).
        if not _unlocked(p):
            raise RuntimeError(f"{p}: cannot open it and another process has it open") from None
    clear_status_flags(p)
    finalize_file(p)
    with open_run(p) as run:
        return run.status


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
