"""Physical checks every imported spectrum passes, whatever its format.

A parsed number is not yet a measurement: a corrupted or hand-edited file can hold a
frequency of 1e-300 Hz (which alone moved a fitted σ from 0.31 to 0.47 S/cm), ``inf`` or
1e308 Ω, a negative frequency or a zero row. Such points are refused with their line
numbers rather than dropped, because silently analysing part of a file gives a wrong number
that looks right.

Limits (stated so a user can tell a real measurement from a broken file):

- frequency 1 µHz – 100 MHz. Frequency-response analysers and potentiostats span 10 µHz
  (Solartron 1260A, BioLogic VMP-300, Gamry Reference 3000 data sheets) to tens of MHz
  (Solartron 1260A: 32 MHz; Novocontrol Alpha-A: 20 MHz), so the limits leave a margin of
  10× on each side;
- |Z'| and |Z''| at most 1e15 Ω (dielectric analysers reach 1e14 Ω), |Z| at least 1 nΩ
  (potentiostats resolve µΩ on large cells); a point of exactly 0 Ω is a blank row;
- at least 3 points (three points define the arc a conductivity is read from) and a span of
  at least one decade (fewer cannot separate bulk, grain-boundary and electrode processes);
- each frequency once: a repeated frequency means a second sweep or a duplicated block in
  one file, which is not one spectrum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.importers.errors import SpectrumFileError

FREQ_MIN_HZ = 1e-6
FREQ_MAX_HZ = 1e8
Z_MAX_OHM = 1e15
Z_MIN_OHM = 1e-9
MIN_POINTS = 3
MAX_POINTS = 100_000
MIN_SPAN_RATIO = 10.0
#: Per-point companion columns: (unit, largest magnitude that is still a measurement).
COLUMN_LIMITS: dict[str, tuple[str, float]] = {
    "t": ("s", 1e9),  # 30 years
    "E_dc": ("V", 1e3),
    "I_dc": ("A", 1e3),
}
TEMPERATURE_RANGE_C = (-273.15, 2000.0)
_SHOWN_LINES = 4


@dataclass(frozen=True)
class _Rows:
    """Where the points of one file came from, to name the bad ones: line numbers of a text
    file or record numbers of a binary one (``name``), or None for plain point indices."""

    path: Path
    numbers: Sequence[int] | None
    name: str = "line"

    def label(self, index: Sequence[int], total: int) -> tuple[int | None, str]:
        """The ``FILE:LINE`` line (text files only) and "lines 80, 95 and 3 more"."""
        if self.numbers is None:
            shown, name = [int(i) + 1 for i in index[:_SHOWN_LINES]], "point"
        else:
            shown, name = [int(self.numbers[int(i)]) for i in index[:_SHOWN_LINES]], self.name
        more = f" and {total - len(shown)} more" if total > len(shown) else ""
        text = f"{name}{'s' if total > 1 else ''} {', '.join(map(str, shown))}{more}"
        return (shown[0] if name == "line" else None), text

    def refuse(self, bad: np.ndarray, field: str, what: str, allowed: str, values: np.ndarray) -> None:
        """Raise for the points where ``bad`` is set, naming the first few."""
        index = np.flatnonzero(bad)
        if index.size:
            line, where = self.label(index, int(index.size))
            raise SpectrumFileError(self.path, field, f"{what} ({values[index[0]]:g}) at {where}", line=line,
                                    allowed=allowed)


def refuse_if_too_many(path: Path, n_points: int, line: int | None = None) -> None:
    """Stop reading as soon as a file holds more points than a spectrum can, instead of
    parsing tens of megabytes first."""
    if n_points > MAX_POINTS:
        raise SpectrumFileError(path, "points", f"more than {MAX_POINTS} impedance points", line=line,
                                allowed=f"at most {MAX_POINTS}")


def check_points(
    path: Path, freq: np.ndarray, z_re: np.ndarray, z_im: np.ndarray, line_numbers: Sequence[int] | None,
    row_name: str = "line",
) -> None:
    """Refuse the spectrum unless every point is a plausible measurement (see module doc).
    ``line_numbers`` say where each point came from (``row_name``: "line" or "record")."""
    rows = _Rows(path, line_numbers, row_name)
    n = freq.size
    refuse_if_too_many(path, n)
    f_range = f"finite, {FREQ_MIN_HZ:g} to {FREQ_MAX_HZ:g} Hz"
    z_range = f"finite, |value| <= {Z_MAX_OHM:g} Ohm"
    with np.errstate(all="ignore"):
        rows.refuse(~np.isfinite(freq), "freq", "not a finite frequency", f_range, freq)
        rows.refuse(freq <= 0, "freq", "not a positive frequency", f_range, freq)
        rows.refuse((freq < FREQ_MIN_HZ) | (freq > FREQ_MAX_HZ), "freq", "outside any instrument's frequency range",
                    f_range, freq)
        for name, part in (("Z'", z_re), ("Z''", z_im)):
            rows.refuse(~np.isfinite(part), name, "not a finite impedance", z_range, part)
            rows.refuse(np.abs(part) > Z_MAX_OHM, name, "beyond any instrument's range", z_range, part)
        magnitude = np.hypot(z_re, z_im)
        rows.refuse(magnitude < Z_MIN_OHM, "|Z|", "below any instrument's resolution",
                    f"|Z| >= {Z_MIN_OHM:g} Ohm (a zero row is not a measurement)", magnitude)
    if n < MIN_POINTS:
        raise SpectrumFileError(path, "points", f"{n} impedance point{'s' if n != 1 else ''}",
                                allowed=f"at least {MIN_POINTS} (three points define an arc)")
    order = np.argsort(freq, kind="stable")
    repeated = np.flatnonzero(np.diff(freq[order]) == 0)
    if repeated.size:
        pair = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
        _, where = rows.label(pair, 2)
        line = rows.label(pair[1:], 1)[0]  # the repeat, not the original
        raise SpectrumFileError(
            path, "freq", f"{freq[pair[0]]:g} Hz measured twice ({where}): a second sweep or a duplicated block",
            line=line, allowed="each frequency once per file",
        )
    span = float(freq.max() / freq.min())
    if span < MIN_SPAN_RATIO:
        raise SpectrumFileError(
            path, "freq", f"the sweep spans {freq.min():g} to {freq.max():g} Hz (a factor {span:.3g})",
            allowed=f"a span of at least a factor {MIN_SPAN_RATIO:g} (one decade)",
        )


def check_columns(
    path: Path, columns: Mapping[str, np.ndarray], line_numbers: Sequence[int] | None, row_name: str = "line"
) -> None:
    """Refuse non-finite or absurd values in the per-point companion columns (t, E_dc, I_dc)."""
    rows = _Rows(path, line_numbers, row_name)
    with np.errstate(all="ignore"):
        for key, values in columns.items():
            unit, limit = COLUMN_LIMITS.get(key, ("", np.inf))
            allowed = f"finite, |value| <= {limit:g} {unit}".rstrip()
            rows.refuse(~np.isfinite(values), key, "not a finite number", allowed, values)
            rows.refuse(np.abs(values) > limit, key, "beyond a plausible value", allowed, values)


def temperature_or_none(
    path: Path, values: np.ndarray, line_numbers: Sequence[int] | None, *, field: str = "temperature",
    row_name: str = "line",
) -> float | None:
    """The mean of a temperature column in °C; None when the column is a no-sensor
    placeholder (Gamry writes −327.67, below absolute zero). Refuses non-finite or
    impossible readings, which a sensor never writes."""
    rows = _Rows(path, line_numbers, row_name)
    low, high = TEMPERATURE_RANGE_C
    allowed = f"finite, {low:g} to {high:g} °C"
    with np.errstate(all="ignore"):
        rows.refuse(~np.isfinite(values), field, "not a finite temperature", allowed, values)
        if values.size == 0 or np.any(values <= low):
            return None
        rows.refuse(values > high, field, "hotter than any cell", allowed, values)
        return float(np.mean(values))


def check_temperature(path: Path, value: float, source: str, line: int | None = None) -> float:
    """A single temperature in °C (from a header or title) if it is physically possible."""
    low, high = TEMPERATURE_RANGE_C
    if not (np.isfinite(value) and low < value <= high):
        raise SpectrumFileError(path, "temperature", f"{value:g} °C from the {source}", line=line,
                                allowed=f"{low:g} to {high:g} °C")
    return float(value)
