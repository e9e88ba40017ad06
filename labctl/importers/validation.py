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


def _where(index: np.ndarray, line_numbers: Sequence[int] | None) -> tuple[int | None, str]:
    """The first bad line and a short list of the bad lines ("lines 80, 95 and 3 more")."""
    if line_numbers is None:
        points = ", ".join(str(int(i) + 1) for i in index[:_SHOWN_LINES])
        more = f" and {index.size - _SHOWN_LINES} more" if index.size > _SHOWN_LINES else ""
        return None, f"at point{'s' if index.size > 1 else ''} {points}{more}"
    lines = [int(line_numbers[int(i)]) for i in index[:_SHOWN_LINES]]
    more = f" and {index.size - _SHOWN_LINES} more" if index.size > _SHOWN_LINES else ""
    return lines[0], f"at line{'s' if index.size > 1 else ''} {', '.join(map(str, lines))}{more}"


def _refuse_points(
    path: Path, bad: np.ndarray, line_numbers: Sequence[int] | None, field: str, what: str, allowed: str,
    values: np.ndarray,
) -> None:
    index = np.flatnonzero(bad)
    if index.size == 0:
        return
    line, where = _where(index, line_numbers)
    raise SpectrumFileError(path, field, f"{what} ({values[index[0]]:g}) {where}", line=line, allowed=allowed)


def check_points(
    path: Path, freq: np.ndarray, z_re: np.ndarray, z_im: np.ndarray, line_numbers: Sequence[int] | None
) -> None:
    """Refuse the spectrum unless every point is a plausible measurement (see module doc)."""
    n = freq.size
    if n > MAX_POINTS:
        raise SpectrumFileError(path, "points", f"{n} impedance points", allowed=f"at most {MAX_POINTS}")
    f_range = f"finite, {FREQ_MIN_HZ:g} to {FREQ_MAX_HZ:g} Hz"
    z_range = f"finite, |value| <= {Z_MAX_OHM:g} Ohm"
    with np.errstate(all="ignore"):
        _refuse_points(path, ~np.isfinite(freq), line_numbers, "freq", "not a finite frequency", f_range, freq)
        _refuse_points(path, freq <= 0, line_numbers, "freq", "not a positive frequency", f_range, freq)
        _refuse_points(path, (freq < FREQ_MIN_HZ) | (freq > FREQ_MAX_HZ), line_numbers, "freq",
                       "outside any instrument's frequency range", f_range, freq)
        for name, part in (("Z'", z_re), ("Z''", z_im)):
            _refuse_points(path, ~np.isfinite(part), line_numbers, name, "not a finite impedance", z_range, part)
            _refuse_points(path, np.abs(part) > Z_MAX_OHM, line_numbers, name, "beyond any instrument's range",
                           z_range, part)
        magnitude = np.hypot(z_re, z_im)
        _refuse_points(path, magnitude < Z_MIN_OHM, line_numbers, "|Z|", "below any instrument's resolution",
                       f"|Z| >= {Z_MIN_OHM:g} Ohm (a zero row is not a measurement)", magnitude)
    if n < MIN_POINTS:
        raise SpectrumFileError(path, "points", f"{n} impedance point{'s' if n != 1 else ''}",
                                allowed=f"at least {MIN_POINTS} (three points define an arc)")
    order = np.argsort(freq, kind="stable")
    repeated = np.flatnonzero(np.diff(freq[order]) == 0)
    if repeated.size:
        first, second = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
        at = (f"lines {line_numbers[first]} and {line_numbers[second]}" if line_numbers is not None
              else f"points {first + 1} and {second + 1}")
        raise SpectrumFileError(
            path, "freq", f"{freq[first]:g} Hz measured twice ({at}): a second sweep or a duplicated block",
            line=None if line_numbers is None else int(line_numbers[second]), allowed="each frequency once per file",
        )
    span = float(freq.max() / freq.min())
    if span < MIN_SPAN_RATIO:
        raise SpectrumFileError(
            path, "freq", f"the sweep spans {freq.min():g} to {freq.max():g} Hz (a factor {span:.3g})",
            allowed=f"a span of at least a factor {MIN_SPAN_RATIO:g} (one decade)",
        )


def check_columns(path: Path, columns: Mapping[str, np.ndarray], line_numbers: Sequence[int] | None) -> None:
    """Refuse non-finite or absurd values in the per-point companion columns (t, E_dc, I_dc)."""
    with np.errstate(all="ignore"):
        for key, values in columns.items():
            unit, limit = COLUMN_LIMITS.get(key, ("", np.inf))
            allowed = f"finite, |value| <= {limit:g} {unit}".rstrip()
            _refuse_points(path, ~np.isfinite(values), line_numbers, key, "not a finite number", allowed, values)
            _refuse_points(path, np.abs(values) > limit, line_numbers, key, "beyond a plausible value", allowed,
                           values)


def temperature_or_none(
    path: Path, values: np.ndarray, line_numbers: Sequence[int] | None, *, field: str = "temperature"
) -> float | None:
    """The mean of a temperature column in °C; None when the column is a no-sensor
    placeholder (Gamry writes −327.67, below absolute zero). Refuses non-finite or
    impossible readings, which a sensor never writes."""
    low, high = TEMPERATURE_RANGE_C
    with np.errstate(all="ignore"):
        allowed = f"finite, {low:g} to {high:g} °C"
        _refuse_points(path, ~np.isfinite(values), line_numbers, field, "not a finite temperature", allowed, values)
        if values.size == 0 or np.any(values <= low):
            return None
        _refuse_points(path, values > high, line_numbers, field, "hotter than any cell", allowed, values)
        return float(np.mean(values))


def check_temperature(path: Path, value: float, source: str, line: int | None = None) -> float:
    """A single temperature in °C (from a header or title) if it is physically possible."""
    low, high = TEMPERATURE_RANGE_C
    if not (np.isfinite(value) and low < value <= high):
        raise SpectrumFileError(path, "temperature", f"{value:g} °C from the {source}", line=line,
                                allowed=f"{low:g} to {high:g} °C")
    return float(value)
