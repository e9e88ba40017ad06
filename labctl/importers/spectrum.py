"""The common shape of an imported impedance spectrum, and the last step of every reader.

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

from labctl.importers.validation import check_columns, check_points, check_temperature
from labctl.steps import SPECTRUM_DTYPE


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
    z_re: Sequence[float] | np.ndarray,
    z_im: Sequence[float] | np.ndarray,
    line_numbers: Sequence[int] | None,
    metadata: dict[str, Any],
    columns: dict[str, np.ndarray] | None = None,
    row_name: str = "line",
) -> ImportedSpectrum:
    """Check the points physically (:mod:`labctl.importers.validation`) and build the result.

    Z is assembled only after Z' and Z'' are known to be finite: ``1j * inf`` is
    ``nan + inf·j`` with a RuntimeWarning, which would print before the error.
    """
    f = np.asarray(freq, dtype=float)
    re_ = np.asarray(z_re, dtype=float)
    im = np.asarray(z_im, dtype=float)
    check_points(path, f, re_, im, line_numbers, row_name)
    cols = {k: np.asarray(v, dtype=float) for k, v in (columns or {}).items()}
    check_columns(path, cols, line_numbers, row_name)
    # a header value that is not a finite number is unknown, not a measurement
    metadata = {k: v for k, v in metadata.items() if not (isinstance(v, float) and not math.isfinite(v))}
    if "temperature_C" in metadata:
        metadata["temperature_C"] = check_temperature(path, metadata["temperature_C"],
                                                      metadata.get("temperature_source", "file"))
    z = re_ + 1j * im
    return ImportedSpectrum(f, z, Path(path), fmt, metadata, cols)
