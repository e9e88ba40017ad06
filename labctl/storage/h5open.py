"""Opening an HDF5 file as an SWMR reader with a bounded number of metadata
read attempts.

An SWMR reader retries a metadata read whose checksum fails (the writer may
have been caught mid-write), by default 100 times with a doubling sleep, so a
file with a corrupted metadata block (a damaged or crafted file) makes every
open hang for hours. HDF5's ``H5Pset_metadata_read_attempts`` bounds that;
h5py does not expose it, so it is called through ctypes on the HDF5 library
h5py itself loaded. A torn read of a live file is rare and short (the writer
flushes metadata in one go), so a few attempts are enough there.
"""

from __future__ import annotations

import ctypes
import functools
import os

import h5py

#: Attempts for SWMR metadata reads (HDF5's default for SWMR is 100).
SWMR_READ_ATTEMPTS = 8


@functools.cache
def _set_read_attempts() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """H5Pset_metadata_read_attempts from the HDF5 library h5py loaded."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            libs = {line.split()[-1] for line in fh if "libhdf5" in line and ".so" in line}
    except OSError:
        return None
    for path in sorted(libs):
        try:
            func = ctypes.CDLL(path).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        func.argtypes = [ctypes.c_int64, ctypes.c_uint]
        func.restype = ctypes.c_int
        return func
    return None


def open_swmr_reader(path: str | os.PathLike[str]) -> h5py.File:
    """``h5py.File(path, "r", swmr=True)`` with bounded metadata read
    attempts where the library allows setting them (OSError as h5py raises)."""
    setter = _set_read_attempts()
    if setter is None:
        return h5py.File(path, "r", swmr=True)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    if setter(fapl.id, SWMR_READ_ATTEMPTS) < 0:
        return h5py.File(path, "r", swmr=True)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def lacks_hdf5_signature(path: str | os.PathLike[str]) -> bool:
    """True for a file that certainly is not HDF5: it has bytes but no HDF5
    signature where a superblock may sit (0, 512, 1024, 2048 ... bytes). An
    empty file may be one a writer is creating, so it is not judged."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size < len(_SIGNATURE):
            return False
        offset = 0
        while offset + len(_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_SIGNATURE)) == _SIGNATURE:
                return False
            offset = 512 if offset == 0 else offset * 2
    return True
