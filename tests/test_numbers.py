"""The strict number grammar every piece of user text goes through."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.numbers import MAX_NUMBER_CHARS, NumberSyntaxError, parse_number


@pytest.mark.parametrize(
    ("text", "value"),
    [("10", 10.0), ("-1.5e-3", -1.5e-3), ("+2", 2.0), (".5", 0.5), ("5.", 5.0), (" 7 ", 7.0), ("1E3", 1000.0)],
)
def test_plain_numbers_are_read(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "1_0",  # float() reads 10
        "١٠",  # Arabic-Indic digits: float() reads 10
        "１０",  # fullwidth digits
        "nan",
        "inf",
        "-Infinity",
        "1e999",  # overflows to inf
        "0x10",
        "1,5",
        "",
        " ",
        "1 0",
        "e5",
        "1e",
        "--1",
        "\u00a010",  # no-break space: float() strips it
        "1" * (MAX_NUMBER_CHARS + 1),
    ],
)
def test_lenient_forms_are_refused(text):
    with pytest.raises(NumberSyntaxError):
        parse_number(text)
    with pytest.raises(NumberSyntaxError):
        parse_number(text, integer=True)


def test_integers():
    assert parse_number("7", integer=True) == 7 and isinstance(parse_number("7", integer=True), int)
    assert parse_number("1e3", integer=True) == 1000
    assert parse_number("4294967295", integer=True) == 2**32 - 1
    with pytest.raises(NumberSyntaxError, match="not a whole number"):
        parse_number("2.5", integer=True)
    with pytest.raises(NumberSyntaxError):
        parse_number("nan", integer=True, allow_non_finite=True)


def test_non_finite_only_when_a_field_allows_it():
    assert math.isnan(parse_number("nan", allow_non_finite=True))
    assert parse_number("-inf", allow_non_finite=True) == -math.inf
    with pytest.raises(NumberSyntaxError):
        parse_number("inf")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_round_trips_through_its_repr(x):
    assert parse_number(repr(x)) == x


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_every_integer_round_trips(n):
    assert parse_number(str(n), integer=True) == n


@given(st.text(max_size=12))
def test_whatever_is_accepted_is_plain_ascii_and_means_what_float_means(text):
    try:
        value = parse_number(text)
    except NumberSyntaxError:
        return
    core = text.strip(" \t")
    assert core.isascii() and "_" not in core
    assert set(core) <= set("0123456789+-.eE")
    assert value == float(core) and math.isfinite(value)
