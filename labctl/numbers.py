"""The one way user text becomes a number.

Python's ``float()``/``int()`` are too lenient for input that sets currents
and temperatures: they accept ``1_0`` (read as 10), non-ASCII digits such as
``'١٠'``, ``nan``/``inf`` and surrounding Unicode whitespace. A typo must be an
error, not a different number, so every place that reads a number from the
command line, the lab file or an option value calls ``parse_number``: ASCII
digits only, an optional sign, an optional decimal point and an optional
exponent (``-1.5e-3``, ``+2``, ``.5``, ``5.``), nothing else.
"""

from __future__ import annotations

import math
import re

#: Longer text is refused before conversion (``int()`` of a 5000-digit string
#: is slow and refused by Python anyway; no lab value needs 100 characters).
MAX_NUMBER_CHARS = 100

#: The whole grammar. ``[0-9]`` rather than ``\d``: ``\d`` matches any Unicode digit.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NON_FINITE = {
    "nan": math.nan,
    "+nan": math.nan,
    "-nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "-inf": -math.inf,
}

NUMBER_SYNTAX = "ASCII digits with optional sign, decimal point and exponent, e.g. -1.5e-3"


class NumberSyntaxError(ValueError):
    """Text that is not a number in the strict grammar (the message says why)."""


def parse_number(text: str, *, integer: bool = False, allow_non_finite: bool = False) -> float | int:
    """``text`` as a float (or an int with ``integer=True``), strictly.

    ``integer=True`` accepts any whole number in the grammar (``7``, ``7.0``,
    ``1e3``) and returns an ``int``. ``nan``/``inf`` are refused unless
    ``allow_non_finite``; so is a value that overflows to infinity (``1e999``).
    Raises NumberSyntaxError (a ValueError) with a one-line reason.
    """
    if not isinstance(text, str):
        raise NumberSyntaxError(f"expected text, got {type(text).__name__}")
    stripped = text.strip(" \t")
    if len(stripped) > MAX_NUMBER_CHARS:
        raise NumberSyntaxError(f"longer than {MAX_NUMBER_CHARS} characters")
    if allow_non_finite and not integer and stripped.lower() in _NON_FINITE:
        return _NON_FINITE[stripped.lower()]
    if integer and _INTEGER.fullmatch(stripped):
        return int(stripped)
    if not _NUMBER.fullmatch(stripped):
        raise NumberSyntaxError(f"{text!r} is not a number ({NUMBER_SYNTAX})")
    value = float(stripped)
    if not math.isfinite(value):
        raise NumberSyntaxError(f"{text!r} is too large")
    if integer:
        if not value.is_integer():
            raise NumberSyntaxError(f"{text!r} is not a whole number")
        return int(value)
    return value
