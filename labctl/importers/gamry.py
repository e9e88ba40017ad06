"""Gamry Framework data files (``.DTA``, EXPLAIN format).

Layout (Gamry Framework): first line ``EXPLAIN``; then one setting per line,
``NAME<tab>TYPE<tab>value<tab>label`` (e.g. ``VAC  QUANT  1.00000E+001  AC Voltage (mV rms)``);
tables start with ``NAME<tab>TABLE[<tab>rows]``, followed by a tab-indented column-name line,
a tab-indented units line and tab-indented data rows. The impedance is the ``ZCURVE`` table
with columns ``Freq``, ``Zreal``, ``Zimag`` (Zimag signed: negative for capacitive); an
``OCVCURVE`` table may come first. Locale settings can give a decimal comma.

Lines after the ZCURVE table are read too: settings or other tables may follow, but a second
``EXPLAIN`` header or a second ZCURVE table (a file concatenated with itself or another run)
is refused rather than ignored.
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, NUMBER_FORM, text_lines, to_float
from labctl.importers.spectrum import ImportedSpectrum, finish, iso_datetime
from labctl.importers.validation import refuse_if_too_many, temperature_or_none

FORMAT = "gamry"
MAGIC = "EXPLAIN"

_KEYS = {  # setting -> (metadata key, scale to SI or None for text)
    "TAG": ("tag", None),
    "TITLE": ("title", None),
    "DATE": ("date", None),
    "TIME": ("time", None),
    "PSTAT": ("potentiostat", None),
    "VDC": ("dc_bias_V", 1.0),
    "VAC": ("amplitude_V", 1e-3),  # mV rms in the file
    "AREA": ("area_cm2", 1.0),
    "EOC": ("ocp_V", 1.0),
    "FREQINIT": ("f_initial_Hz", 1.0),
    "FREQFINAL": ("f_final_Hz", 1.0),
    "PTSPERDEC": ("points_per_decade", 1.0),
}
_ROW_COUNT = re.compile(r"[0-9]{1,9}")
#: ZCURVE column -> key of the values kept (the rest of a row is only checked to be numbers).
_KEPT = {"Freq": "freq", "Zreal": "re", "Zimag": "im", "Time": "t", "Vdc": "E_dc", "Idc": "I_dc", "Temp": "temp"}


def _setting(metadata: dict[str, Any], parts: list[str]) -> None:
    key, scale = _KEYS[parts[0]]
    if scale is None:
        metadata[key] = parts[2].strip()
        return
    try:
        metadata[key] = to_float(parts[2], decimal_comma=True) * scale
    except ValueError:
        metadata[key] = parts[2].strip()


def read_dta(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImportedSpectrum:
    path = Path(path)
    lines = text_lines(path, max_bytes)
    first = next(lines, (1, ""))[1]
    if first.strip() != MAGIC:
        raise SpectrumFileError(path, "first line", "not a Gamry DTA file", line=1, found=first,
                                allowed=f"{MAGIC!r}")
    metadata: dict[str, Any] = {}
    table_at = None
    declared: int | None = None
    for line_no, line in lines:
        if line.startswith("\t") or not line.strip():
            continue
        parts = line.split("\t")
        if parts[0] == "ZCURVE" and len(parts) > 1 and parts[1] == "TABLE":
            table_at = line_no
            if len(parts) > 2 and _ROW_COUNT.fullmatch(parts[2].strip()):
                declared = int(parts[2])
            break
        if parts[0] in _KEYS and len(parts) > 2:
            _setting(metadata, parts)
    if table_at is None:
        raise SpectrumFileError(path, "ZCURVE", "no impedance table", allowed="a 'ZCURVE<tab>TABLE' line")
    names_line = next(lines, None)
    units_line = next(lines, None)
    if names_line is None or units_line is None:
        raise SpectrumFileError(path, "ZCURVE", "expected column-name and unit lines after ZCURVE TABLE",
                                line=table_at + 1)
    names = names_line[1].strip("\t ").split("\t")
    units = units_line[1].strip("\t ").split("\t")
    for col in ("Freq", "Zreal", "Zimag"):
        if col not in names:
            raise SpectrumFileError(path, "ZCURVE columns", "expected ZCURVE columns Freq, Zreal and Zimag",
                                    line=table_at + 1, found=names_line[1])
    metadata["column_units"] = dict(zip(names, units, strict=False))
    kept = {key: names.index(name) for name, key in _KEPT.items() if name in names}
    values: dict[str, array] = {key: array("d") for key in kept}
    numbers: list[int] = []
    after: tuple[int, str] | None = None
    for line_no, line in lines:
        if not line.startswith("\t"):
            after = (line_no, line)
            break  # end of the table
        fields = line.strip("\t ").split("\t")
        if len(fields) != len(names):
            raise SpectrumFileError(path, "ZCURVE row", f"expected {len(names)} tab-separated ZCURVE fields",
                                    line=line_no, found=line.strip(), allowed=f"{len(names)} fields per row")
        try:
            row = [to_float(x, decimal_comma=True) for x in fields]
        except ValueError:
            raise SpectrumFileError(path, "ZCURVE row", f"expected {len(names)} numbers in the ZCURVE row",
                                    line=line_no, found=line.strip(), allowed=NUMBER_FORM) from None
        for key, index in kept.items():
            values[key].append(row[index])
        numbers.append(line_no)
        refuse_if_too_many(path, len(numbers), line_no)
    if declared is not None and declared != len(numbers):
        raise SpectrumFileError(path, "ZCURVE", f"expected {declared} ZCURVE rows as declared", line=table_at,
                                found=f"{len(numbers)} rows")
    if after is not None:
        _check_rest(path, after, lines)
    if "date" in metadata:
        stamp = f"{metadata['date']} {metadata.get('time', '')}".strip()
        iso = iso_datetime(stamp, ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y"))
        if iso:
            metadata["date_raw"], metadata["date"] = metadata["date"], iso
    col = {key: np.array(v, dtype=float) for key, v in values.items()}
    if "temp" in col:
        temperature = temperature_or_none(path, col["temp"], numbers, field="Temp")  # -327.67: no sensor
        if temperature is not None:
            metadata["temperature_C"] = temperature
    columns = {key: col[key] for key in ("t", "E_dc", "I_dc") if key in col}
    return finish(path, FORMAT, col["freq"], col["re"], col["im"], numbers, metadata, columns)


def _check_rest(path: Path, first: tuple[int, str], lines: Any) -> None:
    """Whatever follows the ZCURVE table: more settings or tables are fine, a second file is not."""
    for line_no, line in _chain(first, lines):
        head = line.split("\t", 2)
        if line.strip() == MAGIC or (head[0] == "ZCURVE" and len(head) > 1 and head[1] == "TABLE"):
            raise SpectrumFileError(path, "content after ZCURVE", "a second DTA header or ZCURVE table",
                                    line=line_no, found=line, allowed="one ZCURVE table per file")


def _chain(first: tuple[int, str], rest: Any) -> Any:
    yield first
    yield from rest
