"""MethodSCRIPT number formats: script literals, packet values, metadata.

Written from the PalmSens MethodSCRIPT manual (v1.8, 2025): §"Script
format"/"Variables" for literals and §"Data packages" / appendix C (variable
types) for what the instrument sends back. Shared by the driver (which writes
literals and decodes packets) and the wire emulator (which does the reverse),
so both sides of the wire agree by construction and the tests pin the bytes.

* A script literal is an integer with an optional SI-prefix letter
  (``100m``, ``-5``, ``200k``; the manual has no decimal point); ``i`` marks a
  plain integer (``11i``).
* A packet variable is 2 letters of type, 7 hex digits and one SI-prefix
  character: value = (int(hex, 16) − 2**27) × prefix (a space = no prefix,
  ``i`` = integer). ``     nan`` (8 characters) replaces digits and prefix
  for an invalid reading. Metadata follow after commas: ``1X`` status flags,
  ``2XX`` current/potential range code, ``4X`` noise level.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: SI prefix letter -> factor (the space means "no prefix").
SI_PREFIXES: dict[str, float] = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
#: Prefix letters from the finest to the coarsest (packet encoding picks the finest that fits).
_FINEST_FIRST = sorted(SI_PREFIXES, key=SI_PREFIXES.__getitem__)
#: Literal suffixes from the coarsest to the finest ("" = a bare integer, no letter).
_COARSEST_FIRST = ("E", "P", "T", "G", "M", "k", "", "m", "u", "n", "p", "f", "a")

#: Offset of the 7-hex-digit packet value (0x8000000): raw 0 reads as −2**27.
PACKET_OFFSET = 2**27
PACKET_MAX = 2**27 - 1
NAN_FIELD = "     nan"

#: Status bits of the ``1X`` metadata (manual §"Metadata").
STATUS_TIMING_ERROR = 0x1
STATUS_OVERLOAD = 0x2
STATUS_UNDERLOAD = 0x4
STATUS_OVERLOAD_WARNING = 0x8
STATUS_NAMES = {
    STATUS_TIMING_ERROR: "timing error",
    STATUS_OVERLOAD: "overload",
    STATUS_UNDERLOAD: "underload",
    STATUS_OVERLOAD_WARNING: "overload warning",
}

#: The variable types this package uses (appendix C of the manual lists all of them).
VAR_TYPES: dict[str, tuple[str, str]] = {
    "aa": ("unknown", ""),
    "ab": ("WE vs RE potential", "V"),
    "ba": ("WE current", "A"),
    "cc": ("Z real", "ohm"),
    "cd": ("Z imaginary", "ohm"),
    "da": ("applied potential", "V"),
    "db": ("applied current", "A"),
    "dc": ("applied frequency", "Hz"),
    "eb": ("time", "s"),
    "ja": ("misc. generic 1", ""),
}

_LITERAL_RE = re.compile(r"^([+-]?)(\d+)([afpnumkMGTPE]?|i)$")
_TYPE_RE = re.compile(r"^[a-z]{2}$")
#: Digits after the kind of each metadata item: 1X status, 2XX range, 4X noise.
_META_DIGITS = {"1": 1, "2": 2, "4": 1}
_HEX = set("0123456789ABCDEFabcdef")


class EncodingError(ValueError):
    """Text that is not a MethodSCRIPT number or packet variable."""


# --- script literals ---------------------------------------------------------------


def format_literal(value: float, *, digits: int = 8) -> str:
    """``value`` as a script literal: integer mantissa + the coarsest exact prefix.

    The value is first rounded to ``digits`` significant digits (8 keeps
    nanovolt resolution at 10 mV and picoamps at 1 mA) so the same float
    always gives the same text; the mantissa stays below 2**31.
    """
    if not math.isfinite(value):
        raise EncodingError(f"cannot write {value!r} in a script")
    if value == 0:
        return "0"
    rounded = float(f"{value:.{digits - 1}e}")
    finest = None
    for letter in _COARSEST_FIRST:
        factor = SI_PREFIXES[letter] if letter else 1.0
        mantissa = rounded / factor
        whole = round(mantissa)
        if abs(whole) >= 2**31:
            break
        if whole != 0 and abs(mantissa - whole) <= 1e-9 * abs(mantissa):
            return f"{whole}{letter}"
        finest = letter
    if finest is None or round(rounded / (SI_PREFIXES[finest] if finest else 1.0)) == 0:
        raise EncodingError(f"cannot write {value!r} as an integer with an SI prefix")
    # More digits than a 31-bit mantissa holds: keep as many as fit.
    return f"{round(rounded / (SI_PREFIXES[finest] if finest else 1.0))}{finest}"


def format_int(value: int) -> str:
    """An integer literal (``11i``)."""
    return f"{int(value)}i"


def parse_literal(text: str) -> tuple[float, bool]:
    """A script literal -> (value, is_integer). Raises EncodingError."""
    match = _LITERAL_RE.match(text)
    if match is None:
        raise EncodingError(f"{text!r} is not a MethodSCRIPT number (integer + optional SI prefix)")
    sign, digits, suffix = match.groups()
    mantissa = int(digits) * (-1 if sign == "-" else 1)
    if suffix == "i":
        return float(mantissa), True
    return mantissa * (SI_PREFIXES[suffix] if suffix else 1.0), False


# --- packet values -----------------------------------------------------------------


def encode_value(value: float, *, integer: bool = False) -> str:
    """The 8 characters after the type: 7 hex digits + prefix (or ``     nan``)."""
    if integer:
        raw = int(value)
        if abs(raw) > PACKET_MAX:
            raise EncodingError(f"integer {raw} does not fit a packet variable")
        return f"{raw + PACKET_OFFSET:07X}i"
    if not math.isfinite(value):
        return NAN_FIELD
    if value == 0:
        return f"{PACKET_OFFSET:07X} "
    for letter in _FINEST_FIRST:
        mantissa = round(value / SI_PREFIXES[letter])
        if abs(mantissa) <= PACKET_MAX:
            return f"{mantissa + PACKET_OFFSET:07X}{letter}"
    raise EncodingError(f"{value!r} is too large for a packet variable")


def decode_value(field: str) -> float:
    """Inverse of ``encode_value``."""
    if field == NAN_FIELD:
        return math.nan
    if len(field) != 8 or not set(field[:7]) <= _HEX:
        raise EncodingError(f"{field!r} is not 7 hex digits and a prefix")
    letter = field[7]
    raw = int(field[:7], 16) - PACKET_OFFSET
    if letter == "i":
        return float(raw)
    if letter not in SI_PREFIXES:
        raise EncodingError(f"{letter!r} is not an SI prefix")
    return raw * SI_PREFIXES[letter]


@dataclass(frozen=True)
class PacketVar:
    """One variable of a data packet with its metadata (None when not sent)."""

    type: str
    value: float
    status: int | None = None
    range: int | None = None
    noise: int | None = None

    @property
    def overload(self) -> bool:
        return bool(self.status and self.status & STATUS_OVERLOAD)

    @property
    def timing_error(self) -> bool:
        return bool(self.status and self.status & STATUS_TIMING_ERROR)

    def status_text(self) -> str:
        if not self.status:
            return "ok"
        return " | ".join(name for bit, name in STATUS_NAMES.items() if self.status & bit)


def encode_var(var: PacketVar, *, integer: bool = False) -> str:
    """``ba7F0BDF9u,12,20F``: type, value and the metadata that are set."""
    if not _TYPE_RE.match(var.type):
        raise EncodingError(f"{var.type!r} is not a two-letter variable type")
    text = var.type + encode_value(var.value, integer=integer)
    if var.status is not None:
        text += f",1{var.status:X}"
    if var.range is not None:
        text += f",2{var.range:02X}"
    if var.noise is not None:
        text += f",4{var.noise:X}"
    return text


def encode_packet(variables: list[tuple[PacketVar, bool]]) -> str:
    """A whole ``P`` line (without the newline); each entry is (variable, is_integer)."""
    return "P" + ";".join(encode_var(v, integer=i) for v, i in variables)


def decode_var(token: str) -> PacketVar:
    """One ``;``-separated token of a packet. Raises EncodingError."""
    if len(token) < 10 or not _TYPE_RE.match(token[:2]):
        raise EncodingError(f"{token!r} is not a packet variable")
    value = decode_value(token[2:10])
    status = rng = noise = None
    rest = token[10:]
    if rest:
        if not rest.startswith(","):
            raise EncodingError(f"unexpected {rest!r} after the value in {token!r}")
        for meta in rest[1:].split(","):
            if not meta or not set(meta) <= _HEX:
                raise EncodingError(f"bad metadata {meta!r} in {token!r}")
            kind, body = meta[0], meta[1:]
            if kind in _META_DIGITS and len(body) != _META_DIGITS[kind]:
                raise EncodingError(f"metadata {meta!r} should have {_META_DIGITS[kind]} digit(s) in {token!r}")
            if kind == "1":
                status = int(body, 16)
            elif kind == "2":
                rng = int(body, 16)
            elif kind == "4":
                noise = int(body, 16)
            # other metadata kinds (newer firmware) are skipped, not errors
    return PacketVar(token[:2], value, status, rng, noise)


def decode_packet(line: str) -> tuple[PacketVar, ...]:
    """A ``P`` line -> its variables. Raises EncodingError."""
    if not line.startswith("P") or len(line) < 11:
        raise EncodingError(f"{line!r} is not a data packet")
    return tuple(decode_var(token) for token in line[1:].split(";"))
