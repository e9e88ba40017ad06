"""Scribner ZPlot / ZView ASCII files (``.z``).

Layout (as written by ZPlot 3.x): a first line ``ZPLOT2 ASCII``, a block of indented
``Key:   value`` settings, a tab-separated column header (``Freq(Hz)  Ampl  Bias  Time(Sec)
Z'(a)  Z''(b)  GD  Err  Range``), the line ``End Comments``, then one tab-separated row per
frequency. Z''(b) is the signed imaginary part (negative for capacitive), so Z = a + jb.
"""

from __future__ import annotations

import math
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, parse_row, text_lines, to_float
from labctl.importers.spectrum import ImportedSpectrum, finish, iso_datetime
from labctl.importers.validation import refuse_if_too_many

FORMAT = "zplot"
MAGIC = "ZPLOT"

_KEYS = {  # settings worth keeping -> metadata key
    "Experiment Type": "experiment",
    "Date": "date",
    "Time": "time",
    "Open Circuit Potential (V)": "ocp_V",
    "Potential-DC": "dc_bias_V",
    "Potential-AC": "amplitude_mV",
    "Surface Area": "area_cm2",
    "Data Points": "declared_points",
    "Measured Data, ZPlot": "software_version",
}


def _number(value: str) -> Any:
    try:
        return to_float(value)
    except ValueError:
        return value


def read_zplot(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImportedSpectrum:
    path = Path(path)
    lines = text_lines(path, max_bytes)
    first = next(lines, (1, ""))[1]
    if not first.strip().upper().startswith(MAGIC):
        raise SpectrumFileError(path, "first line", "not a ZPlot ASCII file", line=1, found=first,
                                allowed=f"a first line starting with {MAGIC!r}")
    metadata: dict[str, Any] = {}
    header: list[str] | None = None
    header_line = 0
    pending: tuple[int, str] | None = None  # a data row that ended the header
    for line_no, line in lines:
        stripped = line.strip()
        if stripped.startswith("Freq(Hz)"):
            header = [c.strip() for c in re.split(r"\t+", stripped)]
            header_line = line_no
            continue
        if stripped == "End Comments":
            break
        if header is not None and stripped and _numeric_start(stripped):
            pending = (line_no, line)
            break
        key, sep, value = stripped.partition(":")
        if sep and key.strip() in _KEYS:
            metadata[_KEYS[key.strip()]] = _number(value.strip())
    else:
        if header is None:
            raise SpectrumFileError(path, "column header", "no line starting with 'Freq(Hz)'",
                                    allowed="a ZPlot column header 'Freq(Hz) ... Z'(a) Z''(b) ...'")
        raise SpectrumFileError(path, "data", "no 'End Comments' line followed by data rows", line=header_line + 1,
                                allowed="'End Comments' then tab-separated rows")
    if header is None:
        raise SpectrumFileError(path, "column header", "no line starting with 'Freq(Hz)' before the data",
                                allowed="a ZPlot column header 'Freq(Hz) ... Z'(a) Z''(b) ...'")
    try:
        i_f, i_re, i_im = header.index("Freq(Hz)"), header.index("Z'(a)"), header.index("Z''(b)")
    except ValueError:
        raise SpectrumFileError(path, "column header", "expected columns Freq(Hz), Z'(a) and Z''(b)",
                                line=header_line, found="\t".join(header)) from None
    wanted = {"freq": i_f, "re": i_re, "im": i_im}
    for name, key in (("Time(Sec)", "t"), ("Bias", "E_dc"), ("Ampl", "ampl")):
        if name in header:
            wanted[key] = header.index(name)
    values: dict[str, array] = {key: array("d") for key in wanted}
    numbers: list[int] = []
    rows = [pending] if pending is not None else []
    for line_no, line in _chain(rows, lines):
        text = line.strip()
        if not text:
            continue
        row = parse_row(path, line_no, text.split(), len(header), "tab-separated ZPlot columns")
        for key, index in wanted.items():
            values[key].append(row[index])
        numbers.append(line_no)
        refuse_if_too_many(path, len(numbers), line_no)
    data = {key: np.array(col, dtype=float) for key, col in values.items()}
    if "ampl" in data and data["ampl"].size and np.all(np.isfinite(data["ampl"])):
        metadata["amplitude_V"] = float(np.median(data["ampl"]))  # the applied AC amplitude per point, in V
    elif isinstance(metadata.get("amplitude_mV"), float):
        metadata["amplitude_V"] = metadata["amplitude_mV"] * 1e-3
    declared = metadata.get("declared_points")
    if isinstance(declared, float) and math.isfinite(declared) and declared != len(numbers):
        # ZPlot writes the planned count; an interrupted sweep holds fewer rows.
        metadata["note"] = f"header declares {declared:g} points, file holds {len(numbers)}"
    if isinstance(metadata.get("date"), str):
        stamp = f"{metadata['date']} {metadata.get('time', '')}".strip()
        iso = iso_datetime(stamp, ("%m-%d-%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%m-%d-%Y", "%m/%d/%Y"))
        if iso:
            metadata["date_raw"], metadata["date"] = metadata["date"], iso
    columns = {key: data[key] for key in ("t", "E_dc") if key in data}
    return finish(path, FORMAT, data["freq"], data["re"], data["im"], numbers, metadata, columns)


def _chain(first: list[tuple[int, str]], rest: Any) -> Any:
    yield from first
    yield from rest


def _numeric_start(text: str) -> bool:
    return bool(re.match(r"^[-+]?(\d|\.\d)", text))
