"""Readers for impedance spectra measured elsewhere, so ``labctl analyze`` works on them.

``load_spectrum(path)`` picks the reader from the file's content (magic first lines or bytes)
and then its extension, and returns an :class:`ImportedSpectrum` with Z'' negative for
capacitive behaviour whatever the file's convention.

Whatever is wrong with a file — too large, binary, truncated, a number that is not a
measurement — arrives as one :class:`SpectrumFileError` (a ValueError) whose message is one
line, ``FILE:LINE: field: reason (allowed: …)``; no other exception escapes a reader for a
bad file. Files are size-checked before they are read and read incrementally
(:mod:`labctl.importers.source`); every spectrum passes the physical checks of
:mod:`labctl.importers.validation`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from labctl.importers.biologic_mpr import read_mpr
from labctl.importers.biologic_mpt import MAGICS as _MPT_MAGICS
from labctl.importers.biologic_mpt import read_mpt
from labctl.importers.delimited import read_delimited
from labctl.importers.eisfitpython import looks_like_eisfitpython, read_eisfitpython
from labctl.importers.errors import SpectrumFileError, SpectrumFormatError
from labctl.importers.gamry import read_dta
from labctl.importers.source import MAX_FILE_BYTES, read_head
from labctl.importers.spectrum import ImportedSpectrum
from labctl.importers.zplot import read_zplot

__all__ = [
    "MAX_FILE_BYTES",
    "READERS",
    "ImportedSpectrum",
    "SpectrumFileError",
    "SpectrumFormatError",
    "detect_format",
    "load_spectrum",
]

#: Format name -> reader(path, **options).
READERS: dict[str, Callable[..., ImportedSpectrum]] = {
    "zplot": read_zplot,
    "csv": read_delimited,
    "eisfitpython": read_eisfitpython,
    "biologic-mpt": read_mpt,
    "biologic-mpr": read_mpr,
    "gamry": read_dta,
}

_EXTENSIONS = {
    ".z": "zplot",
    ".mpt": "biologic-mpt",
    ".mpr": "biologic-mpr",
    ".dta": "gamry",
    ".csv": "csv",
}


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def detect_format(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The format name of ``path``: by content where a format has a signature, else by
    extension; plain text with three EISFitpython header lines is "eisfitpython", any other
    text "csv"."""
    path = Path(path)
    head = read_head(path, 4096, max_bytes)
    if head.startswith(b"BIO-LOGIC MODULAR FILE"):
        return "biologic-mpr"
    if head.startswith(HDF5_SIGNATURE):
        raise SpectrumFileError(path, "signature", "an HDF5 file is not an impedance spectrum",
                                allowed="a labctl run file (analysed as a run) or " + ", ".join(READERS))
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpectrumFileError(path, "encoding", "UTF-16 text", line=1, allowed="UTF-8, latin-1 or cp1252 text")
    text = head.decode("latin-1").splitlines()
    first = text[0].strip() if text else ""
    if first in _MPT_MAGICS:
        return "biologic-mpt"
    if first.upper().startswith("ZPLOT"):
        return "zplot"
    if first == "EXPLAIN":
        return "gamry"
    ext = path.suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]  # the reader will say what it expected to find
    text_part, nul, _ = head.partition(b"\x00")
    if nul and b"\n" not in text_part:
        raise SpectrumFileError(path, "format", "binary content without a known signature",
                                allowed=f"a known impedance format ({', '.join(READERS)})")
    # text followed by binary content: classified by the text, the reader names the bad line
    text = text_part.decode("latin-1").splitlines()
    return "eisfitpython" if looks_like_eisfitpython(text) else "csv"


def load_spectrum(
    path: str | Path, fmt: str | None = None, *, max_bytes: int = MAX_FILE_BYTES, **options: Any
) -> ImportedSpectrum:
    """Read one impedance spectrum. ``fmt`` overrides detection (one of :data:`READERS`);
    ``max_bytes`` raises the size limit (:data:`MAX_FILE_BYTES`); ``options`` go to the reader
    (e.g. ``imag_sign="negated"`` for a headerless CSV of −Z'')."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = fmt if fmt is not None else detect_format(path, max_bytes=max_bytes)
    if name not in READERS:
        raise SpectrumFileError(path, "format", f"unknown impedance format {name!r}", allowed=", ".join(READERS))
    return READERS[name](path, max_bytes=max_bytes, **options)
