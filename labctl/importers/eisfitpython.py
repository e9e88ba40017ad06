"""The three-header-line text format of the EISFitpython example data.

As in github.com/Sheyigold/EISFitpython ``EIS_Data/Example-3-4`` (Adediwura, Mathew,
Schmedt auf der Günne, J. Mater. Chem. A 12 (2024) 15847): line 1 the sample title (which
carries the temperature, e.g. ``s04147-140deg``), line 2 the fixed measurement values
(``Fixed value(s) :  AC Volt  [Vrms]=3.5000e-02``), line 3 the column names
(``Freq.[Hz]  Zs'[ohm]  Zs''[ohm]``), then whitespace-separated f, Z', Z'' with Z''
signed (negative for capacitive).
"""

from __future__ import annotations

import contextlib
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, parse_row, text_lines, to_float
from labctl.importers.spectrum import ImportedSpectrum, finish
from labctl.importers.validation import refuse_if_too_many

FORMAT = "eisfitpython"

_AMPLITUDE = re.compile(r"AC\s*Volt\s*\[Vrms\]\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)
# "s04147-140deg": the hyphen is a separator; a minus only counts after a space or at the start
_TEMPERATURE = re.compile(r"(^|\s)?(-?)(\d{1,6}(?:\.\d{1,6})?)\s*(?:deg|°C|degC)", re.IGNORECASE)


def looks_like_eisfitpython(lines: list[str]) -> bool:
    return len(lines) >= 3 and (
        lines[1].strip().lower().startswith("fixed value") or "zs'" in lines[2].lower()
    )


def read_eisfitpython(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImportedSpectrum:
    path = Path(path)
    lines = text_lines(path, max_bytes)
    head = [line for _, (_, line) in zip(range(3), lines, strict=False)]
    if len(head) < 3:
        raise SpectrumFileError(path, "header", "expected 3 header lines followed by data rows",
                                line=len(head) + 1)
    title, fixed, header = head
    if "freq" not in header.lower():
        raise SpectrumFileError(path, "column header", "expected a column header naming the frequency",
                                line=3, found=header, allowed="'Freq.[Hz]  Zs'[ohm]  Zs''[ohm]'")
    metadata: dict[str, Any] = {"title": title.strip(), "fixed_values": fixed.strip()}
    if m := _AMPLITUDE.search(fixed):
        with contextlib.suppress(ValueError):  # not a number after all: the line stays as text
            metadata["amplitude_V_rms"] = to_float(m.group(1))
    if m := _TEMPERATURE.search(title):
        negative = m.group(2) == "-" and m.group(1) is not None
        metadata["temperature_C"] = -float(m.group(3)) if negative else float(m.group(3))
        metadata["temperature_source"] = "sample title"

    values = [array("d"), array("d"), array("d")]
    numbers: list[int] = []
    for line_no, line in lines:
        text = line.strip()
        if text:
            row = parse_row(path, line_no, text.split(), 3, "whitespace-separated columns f, Z', Z''")
            for col, value in zip(values, row, strict=True):
                col.append(value)
            numbers.append(line_no)
            refuse_if_too_many(path, len(numbers), line_no)
    if not numbers:
        raise SpectrumFileError(path, "data", "no data rows after the 3 header lines", line=4,
                                allowed="whitespace-separated rows f, Z', Z''")
    freq, z_re, z_im = (np.array(col, dtype=float) for col in values)
    return finish(path, FORMAT, freq, z_re, z_im, numbers, metadata)
