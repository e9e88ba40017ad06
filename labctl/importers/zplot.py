"""Scribner ZPlot / ZView ASCII files (``.z``).

Layout (as written by ZPlot 3.x): a first line ``ZPLOT2 ASCII``, a block of indented
``Key:   value`` settings, a tab-separated column header (``Freq(Hz)  Ampl  Bias  Time(Sec)
Z'(a)  Z''(b)  GD  Err  Range``), the line ``End Comments``, then one tab-separated row per
frequency. Z''(b) is the signed imaginary part (negative for capacitive), so Z = a + jb.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.spectrum import (
    ImportedSpectrum,
    SpectrumFormatError,
    finish,
    iso_datetime,
    parse_row,
    read_text,
)

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
        return float(value)
    except ValueError:
        return value


def read_zplot(path: str | Path) -> ImportedSpectrum:
    path = Path(path)
    lines = read_text(path)
    if not lines or not lines[0].strip().upper().startswith(MAGIC):
        raise SpectrumFormatError(path, f"a first line starting with {MAGIC!r} (ZPlot ASCII)", line=1,
                                  found=lines[0] if lines else "")
    metadata: dict[str, Any] = {}
    header: list[str] | None = None
    header_line = 0
    data_start: int | None = None
    for i, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if stripped.startswith("Freq(Hz)"):
            header = [c.strip() for c in re.split(r"\t+", stripped)]
            header_line = i
            continue
        if stripped == "End Comments" or (header is not None and stripped and _numeric_start(stripped)):
            data_start = i if stripped != "End Comments" else i + 1
            break
        key, sep, value = stripped.partition(":")
        if sep and key.strip() in _KEYS:
            metadata[_KEYS[key.strip()]] = _number(value.strip())
    if header is None:
        raise SpectrumFormatError(path, "a column header line starting with 'Freq(Hz)'")
    if data_start is None:
        raise SpectrumFormatError(path, "'End Comments' followed by data rows", line=header_line + 1)
    try:
        i_f, i_re, i_im = header.index("Freq(Hz)"), header.index("Z'(a)"), header.index("Z''(b)")
    except ValueError:
        raise SpectrumFormatError(path, "columns Freq(Hz), Z'(a) and Z''(b)", line=header_line,
                                  found="\t".join(header)) from None
    i_t = header.index("Time(Sec)") if "Time(Sec)" in header else None

    rows, numbers = [], []
    for line_no in range(data_start, len(lines) + 1):
        text = lines[line_no - 1].strip()
        if not text:
            continue
        rows.append(parse_row(path, line_no, text.split(), len(header), "tab-separated ZPlot columns"))
        numbers.append(line_no)
    data = np.array(rows, dtype=float).reshape(-1, len(header))
    if "Ampl" in header:  # the applied AC amplitude per point, in V
        metadata["amplitude_V"] = float(np.median(data[:, header.index("Ampl")]))
    elif isinstance(metadata.get("amplitude_mV"), float):
        metadata["amplitude_V"] = metadata["amplitude_mV"] * 1e-3
    declared = metadata.get("declared_points")
    if isinstance(declared, float) and declared != len(rows):
        # ZPlot writes the planned count; an interrupted sweep holds fewer rows.
        metadata["note"] = f"header declares {int(declared)} points, file holds {len(rows)}"
    if isinstance(metadata.get("date"), str):
        stamp = f"{metadata['date']} {metadata.get('time', '')}".strip()
        iso = iso_datetime(stamp, ("%m-%d-%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%m-%d-%Y", "%m/%d/%Y"))
        if iso:
            metadata["date_raw"], metadata["date"] = metadata["date"], iso
    columns = {"t": data[:, i_t]} if i_t is not None else {}
    if "Bias" in header:
        columns["E_dc"] = data[:, header.index("Bias")]
    return finish(path, FORMAT, data[:, i_f], data[:, i_re] + 1j * data[:, i_im], numbers, metadata, columns)


def _numeric_start(text: str) -> bool:
    return bool(re.match(r"^[-+]?(\d|\.\d)", text))
