"""Readers for impedance spectra measured elsewhere, so ``labctl analyze`` works on them.

``load_spectrum(path)`` picks the reader from the file's content (magic first lines or bytes)
and then its extension, and returns an :class:`ImportedSpectrum` with Z'' negative for
capacitive behaviour whatever the file's convention. Every reader raises
:class:`SpectrumFormatError` naming the file, the line (or byte) and what it expected.
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
from labctl.importers.gamry import read_dta
from labctl.importers.spectrum import ImportedSpectrum, SpectrumFormatError
from labctl.importers.zplot import read_zplot

__all__ = [
    "READERS",
    "ImportedSpectrum",
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


def detect_format(path: str | Path) -> str:
    """The format name of ``path``: by content where a format has a signature, else by
    extension; plain text with three EISFitpython header lines is "eisfitpython", any other
    text "csv"."""
    path = Path(path)
    try:
        head = path.open("rb").read(4096)
    except OSError as exc:
        raise SpectrumFormatError(path, "a readable file", found=str(exc)) from None
    if head.startswith(b"BIO-LOGIC MODULAR FILE"):
        return "biologic-mpr"
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
    if b"\x00" in head:
        raise SpectrumFormatError(path, f"a known impedance format ({', '.join(READERS)})",
                                  found="binary content without a known signature")
    return "eisfitpython" if looks_like_eisfitpython(text) else "csv"


def load_spectrum(path: str | Path, fmt: str | None = None, **options: Any) -> ImportedSpectrum:
    """Read one impedance spectrum. ``fmt`` overrides detection (one of :data:`READERS`);
    ``options`` go to the reader (e.g. ``imag_sign="negated"`` for a headerless CSV of −Z'')."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = fmt if fmt is not None else detect_format(path)
    if name not in READERS:
        raise ValueError(f"unknown impedance format {name!r}; known: {', '.join(READERS)}")
    return READERS[name](path, **options)
