"""Plain delimited text: frequency, Z', Z'' per row.

Accepts comma, semicolon, tab or whitespace separators, an optional header (any leading
non-numeric lines; ``#`` comment lines anywhere) and a decimal comma when the separator is a
semicolon or a tab (European spreadsheet exports). With a header, columns are found by name
(``freq``/``f``, ``Z'``/``Re``/``Zreal``, ``Z''``/``Im``/``Zimag``); a name starting with a
minus (``-Z''``, ``-Im(Z)/Ohm``) marks a stored −Z'' and is flipped. Without a header the first
three columns are f, Z', Z''; Z'' is then taken as signed unless ``imag_sign`` says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labctl.importers.spectrum import ImportedSpectrum, SpectrumFormatError, finish, read_text, to_float

FORMAT = "csv"

ImagSign = Literal["auto", "signed", "negated"]


def _split(text: str, sep: str | None) -> list[str]:
    return [t.strip() for t in (text.split(sep) if sep else text.split())]


def _is_numeric_row(text: str) -> bool:
    return bool(re.match(r"^\s*[-+]?(\d|\.\d)", text))


def _separator(text: str) -> str | None:
    for sep in (";", "\t", ","):
        if sep in text:
            return sep
    return None  # whitespace


def _find(names: list[str], patterns: tuple[str, ...]) -> int | None:
    for i, name in enumerate(names):
        key = name.lower().replace(" ", "")
        if any(re.search(p, key) for p in patterns):
            return i
    return None


def read_delimited(path: str | Path, *, imag_sign: ImagSign = "auto") -> ImportedSpectrum:
    """``imag_sign``: "auto" (header decides; signed when there is none), "signed" (the
    column is Im Z), or "negated" (the column is −Im Z)."""
    path = Path(path)
    lines = read_text(path)
    header: list[str] | None = None
    first_data = None
    for i, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if _is_numeric_row(text):
            first_data = i
            break
        header = [h.strip().strip('"') for h in _split(text, _separator(text))]
    if first_data is None:
        raise SpectrumFormatError(path, "rows of numbers f, Z', Z''", line=len(lines) or 1,
                                  found=lines[-1] if lines else "")
    sep = _separator(lines[first_data - 1])
    decimal_comma = sep in (";", "\t") and "," in lines[first_data - 1]

    i_f, i_re, i_im = 0, 1, 2
    negated = imag_sign == "negated"
    if header is not None:
        f = _find(header, (r"^freq", r"^f\b", r"^f\[", r"^f\(", r"hz"))
        re_ = _find(header, (r"^z'(?!')", r"^re", r"zreal", r"^z_re", r"real"))
        im = _find(header, (r"z''", r"^-?im", r"zimag", r"^z_im", r"imag"))
        if None not in (f, re_, im):
            i_f, i_re, i_im = f, re_, im  # type: ignore[assignment]
            if imag_sign == "auto":
                negated = header[i_im].lstrip().startswith("-")
    n_cols = max(i_f, i_re, i_im) + 1

    freq, zr, zi, numbers = [], [], [], []
    what = f"at least {n_cols} numbers separated by {sep or 'whitespace'!r}"
    for line_no in range(first_data, len(lines) + 1):
        text = lines[line_no - 1].strip()
        if not text or text.startswith("#"):
            continue
        fields = _split(text, sep)
        try:
            if len(fields) < n_cols:
                raise ValueError
            values = [to_float(fields[k], decimal_comma=decimal_comma) for k in (i_f, i_re, i_im)]
        except ValueError:
            raise SpectrumFormatError(path, what, line=line_no, found=text) from None
        freq.append(values[0])
        zr.append(values[1])
        zi.append(values[2])
        numbers.append(line_no)
    imag = -np.array(zi) if negated else np.array(zi)
    metadata: dict[str, Any] = {
        "separator": sep or "whitespace",
        "decimal_comma": decimal_comma,
        "header": header,
        "imag_column": "-Im(Z) (flipped)" if negated else "Im(Z)",
    }
    return finish(path, FORMAT, freq, np.array(zr) + 1j * imag, numbers, metadata)
