"""Gamry Framework data files (``.DTA``, EXPLAIN format).

Layout (Gamry Framework): first line ``EXPLAIN``; then one setting per line,
``NAME<tab>TYPE<tab>value<tab>label`` (e.g. ``VAC  QUANT  1.00000E+001  AC Voltage (mV rms)``);
tables start with ``NAME<tab>TABLE[<tab>rows]``, followed by a tab-indented column-name line,
a tab-indented units line and tab-indented data rows. The impedance is the ``ZCURVE`` table
with columns ``Freq``, ``Zreal``, ``Zimag`` (Zimag signed: negative for capacitive); an
``OCVCURVE`` table may come first. Locale settings can give a decimal comma.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.spectrum import (
    ImportedSpectrum,
    SpectrumFormatError,
    finish,
    iso_datetime,
    read_text,
    to_float,
)

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


def read_dta(path: str | Path) -> ImportedSpectrum:
    path = Path(path)
    lines = read_text(path)
    if not lines or lines[0].strip() != MAGIC:
        raise SpectrumFormatError(path, f"first line {MAGIC!r} (Gamry DTA)", line=1, found=lines[0] if lines else "")
    metadata: dict[str, Any] = {}
    table_at = None
    declared: int | None = None
    for i, line in enumerate(lines[1:], start=2):
        if line.startswith("\t") or not line.strip():
            continue
        parts = line.split("\t")
        if parts[0] == "ZCURVE" and len(parts) > 1 and parts[1] == "TABLE":
            table_at = i
            if len(parts) > 2 and parts[2].strip().isdigit():
                declared = int(parts[2])
            break
        if parts[0] in _KEYS and len(parts) > 2:
            key, scale = _KEYS[parts[0]]
            if scale is None:
                metadata[key] = parts[2].strip()
            else:
                try:
                    metadata[key] = to_float(parts[2], decimal_comma=True) * scale
                except ValueError:
                    metadata[key] = parts[2].strip()
    if table_at is None:
        raise SpectrumFormatError(path, "a 'ZCURVE<tab>TABLE' line (impedance table)")
    if table_at + 2 > len(lines):
        raise SpectrumFormatError(path, "column-name and unit lines after ZCURVE TABLE", line=len(lines))
    names = lines[table_at].strip("\t ").split("\t")
    units = lines[table_at + 1].strip("\t ").split("\t")
    for col in ("Freq", "Zreal", "Zimag"):
        if col not in names:
            raise SpectrumFormatError(path, "ZCURVE columns Freq, Zreal and Zimag", line=table_at + 1,
                                      found=lines[table_at])
    metadata["column_units"] = dict(zip(names, units, strict=False))

    rows, numbers = [], []
    for line_no in range(table_at + 3, len(lines) + 1):
        line = lines[line_no - 1]
        if not line.startswith("\t"):
            break  # end of the table
        fields = line.strip("\t\r ").split("\t")
        if len(fields) != len(names):
            raise SpectrumFormatError(path, f"{len(names)} tab-separated ZCURVE fields", line=line_no,
                                      found=line.strip())
        try:
            rows.append([to_float(x, decimal_comma=True) for x in fields])
        except ValueError:
            raise SpectrumFormatError(path, f"{len(names)} numbers in the ZCURVE row", line=line_no,
                                      found=line.strip()) from None
        numbers.append(line_no)
    if declared is not None and declared != len(rows):
        raise SpectrumFormatError(path, f"{declared} ZCURVE rows as declared", line=table_at,
                                  found=f"{len(rows)} rows")
    if "date" in metadata:
        stamp = f"{metadata['date']} {metadata.get('time', '')}".strip()
        iso = iso_datetime(stamp, ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y"))
        if iso:
            metadata["date_raw"], metadata["date"] = metadata["date"], iso
    data = np.array(rows, dtype=float).reshape(-1, len(names))
    col = {n: data[:, names.index(n)] for n in names}
    columns = {}
    for name, key in (("Time", "t"), ("Vdc", "E_dc"), ("Idc", "I_dc")):
        if name in col:
            columns[key] = col[name]
    if "Temp" in col and np.all(col["Temp"] > -273.0):  # Gamry writes -327.67 without a sensor
        metadata["temperature_C"] = float(np.mean(col["Temp"]))
    return finish(path, FORMAT, col["Freq"], col["Zreal"] + 1j * col["Zimag"], numbers, metadata, columns)
