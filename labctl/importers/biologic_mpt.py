"""BioLogic EC-Lab ASCII exports (``.mpt``).

Layout (EC-Lab "Export as text"): line 1 ``EC-Lab ASCII FILE`` (BT-Lab writes ``BT-Lab``),
line 2 ``Nb header lines : N``; lines 3..N−1 are the settings text; line N holds the
tab-separated column names; data follow. Impedance columns are ``freq/Hz``, ``Re(Z)/Ohm`` and
``-Im(Z)/Ohm`` — BioLogic stores −Im(Z), so the sign is flipped here. Numbers may carry a
decimal comma in some locales.
"""

from __future__ import annotations

import contextlib
import re
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

FORMAT = "biologic-mpt"
MAGICS = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")

_NB_HEADER = re.compile(r"^Nb header lines\s*:\s*(\d+)\s*$")
_SETTINGS = {  # "key : value" lines of the header -> metadata
    "Acquisition started on": "date",
    "Device": "device",
    "Run on channel": "channel",
    "Electrode surface area": "area",
}


def read_mpt(path: str | Path) -> ImportedSpectrum:
    path = Path(path)
    lines = read_text(path)
    if not lines or lines[0].strip() not in MAGICS:
        raise SpectrumFormatError(path, f"first line {MAGICS[0]!r}", line=1, found=lines[0] if lines else "")
    m = _NB_HEADER.match(lines[1].strip()) if len(lines) > 1 else None
    if m is None:
        raise SpectrumFormatError(path, "'Nb header lines : <number>'", line=2,
                                  found=lines[1] if len(lines) > 1 else "")
    n_header = int(m.group(1))
    if n_header < 3 or n_header > len(lines):
        raise SpectrumFormatError(path, f"a header of 3..{len(lines)} lines (file length)", line=2,
                                  found=lines[1])
    names = lines[n_header - 1].rstrip("\t ").split("\t")
    try:
        i_f, i_re = names.index("freq/Hz"), names.index("Re(Z)/Ohm")
    except ValueError:
        raise SpectrumFormatError(path, "columns 'freq/Hz' and 'Re(Z)/Ohm' in the column header",
                                  line=n_header, found=lines[n_header - 1]) from None
    if "-Im(Z)/Ohm" in names:
        i_im, sign = names.index("-Im(Z)/Ohm"), -1.0
    elif "Im(Z)/Ohm" in names:
        i_im, sign = names.index("Im(Z)/Ohm"), 1.0
    else:
        raise SpectrumFormatError(path, "a column '-Im(Z)/Ohm'", line=n_header, found=lines[n_header - 1])

    metadata = _header_metadata(lines[2 : n_header - 1])
    rows, numbers = [], []
    for line_no in range(n_header + 1, len(lines) + 1):
        text = lines[line_no - 1].rstrip("\t ")
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(names):
            raise SpectrumFormatError(path, f"{len(names)} tab-separated fields as in the column header",
                                      line=line_no, found=text)
        try:
            rows.append([to_float(x, decimal_comma=True) for x in fields])
        except ValueError:
            raise SpectrumFormatError(path, f"{len(names)} numbers", line=line_no, found=text) from None
        numbers.append(line_no)
    data = np.array(rows, dtype=float).reshape(-1, len(names))

    # EC-Lab writes rows with freq = 0 for non-impedance parts of a technique sequence
    is_eis = data[:, i_f] > 0
    if not np.all(is_eis):
        metadata["skipped_rows_without_frequency"] = int(np.sum(~is_eis))
    data = data[is_eis]
    numbers = [n for n, keep in zip(numbers, is_eis, strict=True) if keep]

    columns: dict[str, np.ndarray] = {}
    for name, key, factor in (("time/s", "t", 1.0), ("<Ewe>/V", "E_dc", 1.0), ("<I>/mA", "I_dc", 1e-3)):
        if name in names:
            columns[key] = data[:, names.index(name)] * factor
    for name in ("Temperature/°C", "Temperature/ºC"):
        if name in names and data.size:
            metadata["temperature_C"] = float(np.mean(data[:, names.index(name)]))
    if "cycle number" in names and data.size:
        metadata["cycles"] = sorted({int(c) for c in data[:, names.index("cycle number")]})
    metadata["column_names"] = names
    z = data[:, i_re] + 1j * sign * data[:, i_im]
    return finish(path, FORMAT, data[:, i_f], z, numbers, metadata, columns)


def _header_metadata(lines: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if "technique" not in meta and line and ":" not in line and not raw.startswith("\t"):
            meta["technique"] = line  # e.g. "Potentio Electrochemical Impedance Spectroscopy"
        key, sep, value = line.partition(" : ")
        if sep and key.strip() in _SETTINGS:
            meta[_SETTINGS[key.strip()]] = value.strip()
        # fixed-width parameter table, e.g. "Va (mV)             20.0"
        if line.startswith("Va (mV)"):
            with contextlib.suppress(ValueError):
                meta["amplitude_V"] = to_float(line.split()[-1], decimal_comma=True) * 1e-3
    if "date" in meta:  # EC-Lab writes MM/DD/YYYY
        iso = iso_datetime(meta["date"], ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S.%f", "%m/%d/%Y"))
        if iso:
            meta["date_raw"], meta["date"] = meta["date"], iso
    if "area" in meta:
        m = re.match(r"([-+0-9.,eE]+)\s*cm", meta["area"])
        if m:
            meta["area_cm2"] = to_float(m.group(1), decimal_comma=True)
    return meta
