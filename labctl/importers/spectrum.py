"""The common shape of an imported impedance spectrum and the error every reader raises.

Every reader returns Z = Z' + jZ'' with Z'' *negative* for capacitive behaviour, whatever
the file's own convention (BioLogic stores −Im(Z), Gamry and ZPlot the signed Im(Z)), so the
analysis never has to know where a spectrum came from.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labctl.steps import SPECTRUM_DTYPE


class SpectrumFormatError(ValueError):
    """A file is not what its reader expected. The message names the file, the place
    (line number for text, byte offset for binary files) and what was expected there."""

    def __init__(
        self,
        path: str | Path,
        expected: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        found: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.line = line
        self.offset = offset
        self.expected = expected
        self.found = found
        where = f"{self.path}"
        if line is not None:
            where += f", line {line}"
        if offset is not None:
            where += f", byte {offset}"
        msg = f"{where}: expected {expected}"
        if found is not None:
            shown = found if len(found) <= 80 else found[:77] + "..."
            msg += f", found {shown!r}"
        super().__init__(msg)


@dataclass
class ImportedSpectrum:
    """One impedance spectrum read from a file, in SI units.

    ``freq`` in Hz, ``z`` complex Ω (Z'' < 0 capacitive), in the file's point order.
    ``columns`` holds optional per-point arrays the file carried (``t`` in s, ``E_dc`` in V,
    ``I_dc`` in A). ``metadata`` holds what the file says about the measurement, with SI keys
    where converted (``amplitude_V``, ``temperature_C``, ``area_cm2``, ``date`` ...).
    """

    freq: np.ndarray
    z: np.ndarray
    source: Path
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.freq.size)

    def as_spectrum_block(self) -> np.ndarray:
        """The points as a ``labctl.steps.SPECTRUM_DTYPE`` block (NaN where unknown)."""
        block = np.full(self.n_points, np.nan, dtype=SPECTRUM_DTYPE)
        block["freq"] = self.freq
        block["z_re"] = self.z.real
        block["z_im"] = self.z.imag
        for name in ("E_dc", "I_dc", "t"):
            if name in self.columns:
                block[name] = self.columns[name]
        return block


def read_text(path: Path) -> list[str]:
    """Lines of a text file without line endings. Instrument software writes cp1252/latin-1
    (µ, °, ²) more often than UTF-8; UTF-8 is tried first, latin-1 never fails."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def to_float(token: str, *, decimal_comma: bool = False) -> float:
    """float() that accepts a decimal comma (European-locale exports)."""
    if decimal_comma:
        token = token.replace(",", ".")
    return float(token)


def parse_row(
    path: Path, line_no: int, fields: Sequence[str], n_expected: int, what: str, *,
    decimal_comma: bool = False,
) -> list[float]:
    """Parse one data row of ``n_expected`` numbers or raise a SpectrumFormatError."""
    if len(fields) != n_expected:
        raise SpectrumFormatError(
            path, f"{n_expected} {what}, got {len(fields)}", line=line_no, found="\t".join(fields)
        )
    try:
        return [to_float(f.strip(), decimal_comma=decimal_comma) for f in fields]
    except ValueError:
        raise SpectrumFormatError(
            path, f"{n_expected} numbers ({what})", line=line_no, found="\t".join(fields)
        ) from None


def iso_datetime(text: str, formats: Sequence[str]) -> str | None:
    """ISO 8601 form of a vendor date(-time) string, or None if no format matches. The formats
    are the vendor's own (US month-first for EC-Lab, Gamry and ZPlot)."""
    for fmt in formats:
        try:
            value = dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return value.date().isoformat() if value.time() == dt.time() and "%H" not in fmt else value.isoformat()
    return None


def finish(
    path: Path,
    fmt: str,
    freq: Sequence[float] | np.ndarray,
    z: Sequence[complex] | np.ndarray,
    line_numbers: Sequence[int] | None,
    metadata: dict[str, Any],
    columns: dict[str, np.ndarray] | None = None,
) -> ImportedSpectrum:
    """Validate the points common to every format and build the result."""
    f = np.asarray(freq, dtype=float)
    zz = np.asarray(z, dtype=complex)
    if f.size == 0:
        raise SpectrumFormatError(path, "at least one impedance data row, found none")
    bad = ~(np.isfinite(f) & (f > 0) & np.isfinite(zz.real) & np.isfinite(zz.imag))
    if np.any(bad):
        i = int(np.argmax(bad))
        line = None if line_numbers is None else int(line_numbers[i])
        raise SpectrumFormatError(
            path, "a positive finite frequency and finite Z' and Z''", line=line,
            found=f"point {i}: f={f[i]}, Z={zz[i]}",
        )
    metadata = {k: v for k, v in metadata.items() if not (isinstance(v, float) and math.isnan(v))}
    return ImportedSpectrum(f, zz, Path(path), fmt, metadata, dict(columns or {}))
