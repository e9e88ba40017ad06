"""Bounded reading of an imported file: its size is checked before a byte is read, text
arrives one line at a time with a cap on line length, and numbers are parsed strictly.

A spectrum file is kilobytes to a few megabytes (a 10 000-point EC-Lab export with 20
columns is about 4 MB). Anything far larger is not a spectrum — a wrong file, a disk image,
a valid file followed by gigabytes of zeros — and is refused from ``stat`` in microseconds
instead of being read into memory. The limit is a keyword (``max_bytes``) of every reader
and of ``load_spectrum``, so a test or an unusual file can raise it.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from labctl.importers.errors import SpectrumFileError

#: Largest file any importer reads (64 MiB): about 15× the largest real export we know of.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Longest text line (characters). Vendor header and data lines are well under 4 KiB.
MAX_LINE_CHARS = 16 * 1024
#: Most lines one text file may hold, bounding the work and memory of a reader.
MAX_LINES = 1_000_000

#: What a data field may hold, for error messages.
NUMBER_FORM = "decimal numbers such as -1.5E+03 (a decimal comma where the export uses one)"
# C0 control characters other than tab (line endings are consumed by the reader) and DEL:
# none occur in a vendor text export, so they mean binary content (zeros, junk, UTF-16).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# characters of decimal numbers, nan and inf(inity): with these alone float() takes nothing
# but a decimal number (no underscores, no non-ASCII digits, no hex)
_NUMBER_CHARS = re.compile(r"[ 0-9eE+\-.nNaAiIfFtTyY]*")
_ROW_CHARS = re.compile(r"[ \t0-9eE+\-.nNaAiIfFtTyY;]*")


def checked_size(path: Path, max_bytes: int = MAX_FILE_BYTES) -> int:
    """The size of the regular file ``path``, refusing a non-regular or an over-large file
    before anything is read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise SpectrumFileError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SpectrumFileError(path, "file", "is not a regular file", allowed="a regular file")
    if info.st_size > max_bytes:
        raise SpectrumFileError(
            path, "size", f"{info.st_size} bytes is far more than an impedance spectrum holds",
            allowed=f"at most {max_bytes} bytes (max_bytes)",
        )
    return info.st_size


def read_head(path: Path, n: int, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The first ``n`` bytes of the file, after the size check."""
    checked_size(path, max_bytes)
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise SpectrumFileError(path, "file", f"cannot be read ({exc.strerror or exc})") from None


def _decode(text: str) -> str:
    """One line read as latin-1 (which never fails), re-read as UTF-8 where it is valid
    UTF-8: instrument software writes cp1252/latin-1 (µ, °, ²) more often than UTF-8."""
    raw = text.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text


def text_lines(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line, without its line ending (``\\n``, ``\\r\\n`` or
    ``\\r``), read incrementally. Refuses an over-large file, an over-long line, UTF-16 text
    and binary content (control bytes such as appended zeros), naming the line."""
    checked_size(path, max_bytes)
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise SpectrumFileError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    with raw, io.TextIOWrapper(raw, encoding="latin-1", newline=None) as fh:
        total = 0
        line_no = 0
        while True:
            try:
                chunk = fh.readline(MAX_LINE_CHARS + 1)
            except OSError as exc:  # a disk or network-share error in mid-file
                raise SpectrumFileError(path, "file", f"cannot be read ({exc.strerror or exc})",
                                        line=line_no + 1) from None
            if not chunk:
                return
            line_no += 1
            total += len(chunk)
            if line_no > MAX_LINES:
                raise SpectrumFileError(path, "lines", f"more than {MAX_LINES} lines", line=line_no,
                                        allowed=f"at most {MAX_LINES} lines")
            if total > max_bytes:  # the file grew after the size check
                raise SpectrumFileError(path, "size", "the file grows while it is read", line=line_no,
                                        allowed=f"at most {max_bytes} bytes (max_bytes)")
            text = chunk[:-1] if chunk.endswith("\n") else chunk
            if len(text) > MAX_LINE_CHARS:
                raise SpectrumFileError(path, "line", f"longer than {MAX_LINE_CHARS} characters", line=line_no,
                                        allowed=f"text lines of at most {MAX_LINE_CHARS} characters")
            if line_no == 1:
                if text.startswith(("\xff\xfe", "\xfe\xff")):
                    raise SpectrumFileError(path, "encoding", "UTF-16 text", line=1,
                                            allowed="UTF-8, latin-1 or cp1252 text")
                text = text.removeprefix("\xef\xbb\xbf")  # a UTF-8 byte-order mark
            bad = _CONTROL.search(text)
            if bad is not None:
                raise SpectrumFileError(
                    path, "content", f"binary byte 0x{ord(bad.group()):02x} at column {bad.start() + 1}",
                    line=line_no, allowed="text: printable characters and tabs",
                )
            yield line_no, _decode(text)


def to_float(token: str, *, decimal_comma: bool = False) -> float:
    """A decimal number (``1.5``, ``-2E+003``, ``nan``, ``inf``; with ``decimal_comma`` also
    ``1,5``). Stricter than ``float()`` alone, which also takes ``1_0`` and non-ASCII digits.
    Raises ValueError; non-finite values are left to the physical checks, which name the rule
    they break."""
    if decimal_comma:
        token = token.replace(",", ".")
    if _NUMBER_CHARS.fullmatch(token) is None:
        raise ValueError(f"not a decimal number: {token!r}")
    return float(token)


def to_floats(text: str, sep: str | None, *, decimal_comma: bool = False) -> list[float]:
    """Every field of a row as a number (ValueError if one is not). One character-class
    match for the whole row, then C-level ``float`` per field: an EC-Lab row of 18 columns
    costs a few microseconds."""
    if decimal_comma:
        text = text.replace(",", ".")
    if _ROW_CHARS.fullmatch(text) is None:
        raise ValueError("not a row of decimal numbers")
    return [float(f) for f in text.split(sep)]


def parse_row(
    path: Path, line_no: int, fields: list[str], n_expected: int, what: str, *, decimal_comma: bool = False
) -> list[float]:
    """``n_expected`` numbers from one data row, or a SpectrumFileError naming the line."""
    if len(fields) != n_expected:
        raise SpectrumFileError(path, "row", f"expected {n_expected} {what}, got {len(fields)}", line=line_no,
                                found="\t".join(fields), allowed=f"rows of {n_expected} fields")
    try:
        return [to_float(f, decimal_comma=decimal_comma) for f in fields]
    except ValueError:
        raise SpectrumFileError(path, "row", f"expected {n_expected} numbers ({what})", line=line_no,
                                found="\t".join(fields), allowed=f"rows of {n_expected} fields") from None
