"""BioLogic EC-Lab ASCII exports (``.mpt``).

Layout (EC-Lab "Export as text"): line 1 ``EC-Lab ASCII FILE`` (BT-Lab writes ``BT-Lab``),
line 2 ``Nb header lines : N``; lines 3..N−1 are the settings text; line N holds the
tab-separated column names; data follow. Impedance columns are ``freq/Hz``, ``Re(Z)/Ohm`` and
``-Im(Z)/Ohm`` — BioLogic stores −Im(Z), so the sign is flipped here. Numbers may carry a
decimal comma in some locales.

EC-Lab writes rows with a frequency of exactly 0 for the non-impedance parts of a linked
technique (an OCV period before a PEIS); those are skipped and counted in the metadata.
Every other row must be an impedance point: a negative or NaN frequency is refused, not
dropped.
"""

from __future__ import annotations

import contextlib
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, NUMBER_FORM, text_lines, to_float, to_floats
from labctl.importers.spectrum import ImportedSpectrum, finish, iso_datetime
from labctl.importers.validation import refuse_if_too_many, temperature_or_none

FORMAT = "biologic-mpt"
MAGICS = ("EC-Lab ASCII FILE", "BT-Lab ASCII FILE")

_NB_HEADER = re.compile(r"^Nb header lines\s*:\s*([0-9]{1,6})\s*$")
_SETTINGS = {  # "key : value" lines of the header -> metadata
    "Acquisition started on": "date",
    "Device": "device",
    "Run on channel": "channel",
    "Electrode surface area": "area",
}
#: column name -> key of the values kept, with the factor to SI
_KEPT = {
    "time/s": ("t", 1.0),
    "<Ewe>/V": ("E_dc", 1.0),
    "<I>/mA": ("I_dc", 1e-3),
    "Temperature/°C": ("temp", 1.0),
    "Temperature/ºC": ("temp", 1.0),
    "cycle number": ("cycle", 1.0),
}
_MAX_CYCLE = 1e9


def read_mpt(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImportedSpectrum:
    path = Path(path)
    lines = text_lines(path, max_bytes)
    first = next(lines, (1, ""))[1]
    if first.strip() not in MAGICS:
        raise SpectrumFileError(path, "first line", "not an EC-Lab text export", line=1, found=first,
                                allowed=" or ".join(repr(m) for m in MAGICS))
    second = next(lines, (2, ""))[1]
    m = _NB_HEADER.match(second.strip())
    if m is None:
        raise SpectrumFileError(path, "Nb header lines", "expected 'Nb header lines : <number>'", line=2,
                                found=second)
    n_header = int(m.group(1))
    if n_header < 3:
        raise SpectrumFileError(path, "Nb header lines", f"{n_header} header lines", line=2,
                                allowed="at least 3 (magic, count, column names)")
    settings: list[str] = []
    names_line = ""
    for line_no, line in lines:
        if line_no == n_header:
            names_line = line
            break
        settings.append(line)
    else:
        raise SpectrumFileError(path, "Nb header lines", f"the file ends before header line {n_header}", line=2,
                                found=second)
    names = names_line.rstrip("\t ").split("\t")
    try:
        i_f, i_re = names.index("freq/Hz"), names.index("Re(Z)/Ohm")
    except ValueError:
        raise SpectrumFileError(path, "column header", "expected columns 'freq/Hz' and 'Re(Z)/Ohm'",
                                line=n_header, found=names_line) from None
    if "-Im(Z)/Ohm" in names:
        i_im, sign = names.index("-Im(Z)/Ohm"), -1.0
    elif "Im(Z)/Ohm" in names:
        i_im, sign = names.index("Im(Z)/Ohm"), 1.0
    else:
        raise SpectrumFileError(path, "column header", "expected a column '-Im(Z)/Ohm'", line=n_header,
                                found=names_line)

    metadata = _header_metadata(path, settings)
    kept = {"freq": (i_f, 1.0), "re": (i_re, 1.0), "im": (i_im, sign)}
    for name, (key, factor) in _KEPT.items():
        if name in names and key not in kept:
            kept[key] = (names.index(name), factor)
    values: dict[str, array] = {key: array("d") for key in kept}
    numbers: list[int] = []
    skipped = 0
    for line_no, line in lines:
        text = line.rstrip("\t ")
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(names):
            raise SpectrumFileError(path, "row", f"expected {len(names)} tab-separated fields as in the column header",
                                    line=line_no, found=text, allowed=f"{len(names)} fields per row")
        try:
            row = to_floats(text, "\t", decimal_comma=True)
        except ValueError:
            raise SpectrumFileError(path, "row", f"expected {len(names)} numbers", line=line_no, found=text,
                                    allowed=NUMBER_FORM) from None
        if row[i_f] == 0.0:
            skipped += 1  # a non-impedance part of a linked technique
            continue
        for key, (index, factor) in kept.items():
            values[key].append(row[index] * factor)
        numbers.append(line_no)
        refuse_if_too_many(path, len(numbers), line_no)
    if skipped:
        metadata["skipped_rows_without_frequency"] = skipped
    col = {key: np.array(v, dtype=float) for key, v in values.items()}
    if "temp" in col and col["temp"].size:
        temperature = temperature_or_none(path, col["temp"], numbers)
        if temperature is not None:
            metadata["temperature_C"] = temperature
    if "cycle" in col and col["cycle"].size:
        cycles = col["cycle"]
        with np.errstate(all="ignore"):
            bad = np.flatnonzero(~np.isfinite(cycles) | (np.abs(cycles) > _MAX_CYCLE))
        if bad.size:
            raise SpectrumFileError(path, "cycle number", f"{cycles[bad[0]]:g} is not a cycle count",
                                    line=numbers[int(bad[0])], allowed=f"finite, 0 to {_MAX_CYCLE:g}")
        metadata["cycles"] = sorted({int(c) for c in cycles})
    metadata["column_names"] = names
    columns = {key: col[key] for key in ("t", "E_dc", "I_dc") if key in col}
    return finish(path, FORMAT, col["freq"], col["re"], col["im"], numbers, metadata, columns)


def _header_metadata(path: Path, lines: list[str]) -> dict[str, Any]:
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
            with contextlib.suppress(ValueError):
                meta["area_cm2"] = to_float(m.group(1), decimal_comma=True)
    return meta
