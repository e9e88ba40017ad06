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
from array import array
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, NUMBER_FORM, text_lines, to_float
from labctl.importers.spectrum import ImportedSpectrum, finish
from labctl.importers.validation import refuse_if_too_many

FORMAT = "csv"

ImagSign = Literal["auto", "signed", "negated"]
IMAG_SIGNS = ("auto", "signed", "negated")


def _split(text: str, sep: str | None) -> list[str]:
    return [t.strip() for t in (text.split(sep) if sep else text.split())]


def _is_numeric_row(text: str) -> bool:
    """A data row starts with a number; ``nan`` or ``inf`` count too, so that such a row is
    refused by the physical checks instead of being taken for a header and skipped."""
    if re.match(r"^\s*[-+]?(\d|\.\d)", text):
        return True
    first = re.split(r"[;\t,\s]", text.strip(), maxsplit=1)[0]
    try:
        to_float(first)
    except ValueError:
        return False
    return True


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


def read_delimited(
    path: str | Path, *, imag_sign: ImagSign = "auto", max_bytes: int = MAX_FILE_BYTES
) -> ImportedSpectrum:
    """``imag_sign``: "auto" (header decides; signed when there is none), "signed" (the
    column is Im Z), or "negated" (the column is −Im Z)."""
    path = Path(path)
    if imag_sign not in IMAG_SIGNS:
        raise SpectrumFileError(path, "imag_sign", f"unknown sign convention {imag_sign!r}",
                                allowed=", ".join(IMAG_SIGNS))
    lines = text_lines(path, max_bytes)
    header: list[str] | None = None
    first: tuple[int, str] | None = None
    last = (0, "")
    for line_no, line in lines:
        last = (line_no, line)
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if _is_numeric_row(text):
            first = (line_no, line)
            break
        header = [h.strip().strip('"') for h in _split(text, _separator(text))]
    if first is None:
        raise SpectrumFileError(path, "data", "expected rows of numbers f, Z', Z''", line=last[0] or 1,
                                found=last[1])
    sep = _separator(first[1])
    decimal_comma = sep in (";", "\t") and "," in first[1]

    i_f, i_re, i_im = 0, 1, 2
    negated = imag_sign == "negated"
    if header is not None:
        f = _find(header, (r"^freq", r"^f\b", r"^f\[", r"^f\(", r"hz"))
        re_ = _find(header, (r"^z'(?!')", r"^re", r"zreal", r"^z_re", r"real"))
        im = _find(header, (r"z''", r"^-?im", r"zimag", r"^z_im", r"imag"))
        if f is not None and re_ is not None and im is not None:
            i_f, i_re, i_im = f, re_, im
            if imag_sign == "auto":
                negated = header[i_im].lstrip().startswith("-")
    n_cols = max(i_f, i_re, i_im) + 1

    values = [array("d"), array("d"), array("d")]
    numbers: list[int] = []
    what = f"at least {n_cols} numbers separated by {sep or 'whitespace'!r}"
    for line_no, line in _chain(first, lines):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = _split(text, sep)
        try:
            if len(fields) < n_cols:
                raise ValueError
            row = [to_float(fields[k], decimal_comma=decimal_comma) for k in (i_f, i_re, i_im)]
        except ValueError:
            raise SpectrumFileError(path, "row", f"expected {what}", line=line_no, found=text,
                                    allowed=NUMBER_FORM) from None
        for col, value in zip(values, row, strict=True):
            col.append(value)
        numbers.append(line_no)
        refuse_if_too_many(path, len(numbers), line_no)
    freq, z_re, z_im = (np.array(col, dtype=float) for col in values)
    metadata: dict[str, Any] = {
        "separator": sep or "whitespace",
        "decimal_comma": decimal_comma,
        "header": header,
        "imag_column": "-Im(Z) (flipped)" if negated else "Im(Z)",
    }
    return finish(path, FORMAT, freq, z_re, -z_im if negated else z_im, numbers, metadata)


def _chain(first: tuple[int, str], rest: Any) -> Any:
    yield first
    yield from rest
