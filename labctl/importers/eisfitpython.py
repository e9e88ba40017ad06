"""The three-header-line text format of the EISFitpython example data.

As in github.com/Sheyigold/EISFitpython ``EIS_Data/Example-3-4`` (Adediwura, Mathew,
Schmedt auf der Günne, J. Mater. Chem. A 12 (2024) 15847): line 1 the sample title (which
carries the temperature, e.g. ``s04147-140deg``), line 2 the fixed measurement values
(``Fixed value(s) :  AC Volt  [Vrms]=3.5000e-02``), line 3 the column names
(``Freq.[Hz]  Zs'[ohm]  Zs''[ohm]``), then whitespace-separated f, Z', Z'' with Z''
signed (negative for capacitive).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.spectrum import ImportedSpectrum, SpectrumFormatError, finish, parse_row, read_text

FORMAT = "eisfitpython"

_AMPLITUDE = re.compile(r"AC\s*Volt\s*\[Vrms\]\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)
# "s04147-140deg": the hyphen is a separator; a minus only counts after a space or at the start
_TEMPERATURE = re.compile(r"(^|\s)?(-?)(\d+(?:\.\d+)?)\s*(?:deg|°C|degC)", re.IGNORECASE)


def looks_like_eisfitpython(lines: list[str]) -> bool:
    return len(lines) >= 3 and (
        lines[1].strip().lower().startswith("fixed value") or "zs'" in lines[2].lower()
    )


def read_eisfitpython(path: str | Path) -> ImportedSpectrum:
    path = Path(path)
    lines = read_text(path)
    if len(lines) < 4:
        raise SpectrumFormatError(path, "3 header lines followed by data rows", line=len(lines) + 1)
    header = lines[2]
    if "freq" not in header.lower():
        raise SpectrumFormatError(path, "a column header naming the frequency ('Freq.[Hz] ...')",
                                  line=3, found=header)
    metadata: dict[str, Any] = {"title": lines[0].strip(), "fixed_values": lines[1].strip()}
    if m := _AMPLITUDE.search(lines[1]):
        metadata["amplitude_V_rms"] = float(m.group(1))
    if m := _TEMPERATURE.search(lines[0]):
        negative = m.group(2) == "-" and m.group(1) is not None
        metadata["temperature_C"] = -float(m.group(3)) if negative else float(m.group(3))
        metadata["temperature_source"] = "sample title"

    rows, numbers = [], []
    for line_no in range(4, len(lines) + 1):
        text = lines[line_no - 1].strip()
        if text:
            rows.append(parse_row(path, line_no, text.split(), 3, "whitespace-separated columns f, Z', Z''"))
            numbers.append(line_no)
    data = np.array(rows, dtype=float).reshape(-1, 3)
    return finish(path, FORMAT, data[:, 0], data[:, 1] + 1j * data[:, 2], numbers, metadata)
