"""Parameters: conversion, ranges, unknown names, error messages that name the field."""

from __future__ import annotations

import pytest

from labctl.params import Param, ParameterError, parse_assignments, validate

PARAMS = (
    Param("thickness", 100.0, "µm", "electrolyte thickness", minimum=1, maximum=5000),
    Param("points", 10, "", "points per decade", minimum=1, maximum=100, kind="int"),
    Param("temperatures", (25.0, 40.0), "°C", "set points", minimum=-40, maximum=150, kind="floats"),
    Param("method", "threshold", "", "onset method", kind="choice", choices=("threshold", "tangent")),
    Param("vtf", False, "", "also fit VTF", kind="bool"),
)


def test_defaults_and_conversion():
    values = validate(PARAMS, {"thickness": "120", "points": "20", "temperatures": "-20,0,25", "vtf": "yes"})
    assert values == {
        "thickness": 120.0,
        "points": 20,
        "temperatures": (-20.0, 0.0, 25.0),
        "method": "threshold",
        "vtf": True,
    }


@pytest.mark.parametrize(
    ("given", "name", "fragment"),
    [
        ({"thickness": "-5"}, "thickness", "-5 µm is out of range (allowed: a number from 1 to 5000 µm)"),
        ({"thickness": "abc"}, "thickness", "cannot read 'abc'"),
        ({"thickness": "nan"}, "thickness", "out of range"),
        ({"points": "2.5"}, "points", "cannot read '2.5'"),
        ({"temperatures": "25,200"}, "temperatures", "200 °C is out of range"),
        ({"method": "magic"}, "method", "allowed: one of threshold, tangent"),
        ({"vtf": "maybe"}, "vtf", "true or false"),
        ({"thicknes": "5"}, "thicknes", "unknown parameter for demo (known: method, points"),
    ],
)
def test_errors_name_the_parameter_and_the_allowed_range(given, name, fragment):
    with pytest.raises(ParameterError) as info:
        validate(PARAMS, given, context="demo")
    assert info.value.name == name
    assert f"parameter '{name}'" in str(info.value)
    assert fragment in str(info.value)


def test_assignments():
    assert parse_assignments(["a=1", " b = x=y "], "-p") == {"a": "1", "b": "x=y"}
    with pytest.raises(ParameterError, match="expected -p name=value"):
        parse_assignments(["novalue"], "-p")
    with pytest.raises(ParameterError, match="given twice"):
        parse_assignments(["a=1", "a=2"], "-p")


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({"thickness": "1_0"}, "thickness"),  # float() would read 10
        ({"thickness": "١٠"}, "thickness"),  # float() would read 10
        ({"thickness": "inf"}, "thickness"),
        ({"thickness": "1e999"}, "thickness"),
        ({"points": "1_0"}, "points"),
        ({"points": "٢٠"}, "points"),
        ({"temperatures": "25,4_0"}, "temperatures"),
        ({"temperatures": "25,٤٠"}, "temperatures"),
        ({"temperatures": "25,nan"}, "temperatures"),
    ],
)
def test_numbers_are_read_strictly(given, name):
    with pytest.raises(ParameterError) as info:
        validate(PARAMS, given)
    assert info.value.name == name
    assert "allowed:" in str(info.value)


def test_python_values_are_checked_like_text():
    """Values from a lab file, the GUI or a stored run: booleans are not numbers."""
    assert validate(PARAMS, {"thickness": 120, "points": 20.0, "temperatures": [10, 20.5]})["temperatures"] == (
        10.0,
        20.5,
    )
    for given in ({"thickness": True}, {"points": 2.5}, {"temperatures": [25, True]}, {"temperatures": 25}):
        with pytest.raises(ParameterError, match="cannot read"):
            validate(PARAMS, given)


def test_a_huge_whole_number_is_out_of_range_not_a_crash():
    with pytest.raises(ParameterError, match="out of range"):
        validate(PARAMS, {"points": "9" * 60})


def test_lists_are_capped():
    from labctl.params import MAX_LIST_ITEMS

    wide = Param("temperatures", (25.0,), "°C", "set points", minimum=-40, maximum=150, kind="floats")
    assert len(wide.parse(",".join(["25"] * MAX_LIST_ITEMS))) == MAX_LIST_ITEMS
    with pytest.raises(ParameterError, match=f"{MAX_LIST_ITEMS + 1} values given, at most {MAX_LIST_ITEMS}"):
        wide.parse(",".join(["25"] * (MAX_LIST_ITEMS + 1)))
    with pytest.raises(ParameterError, match=f"at most {MAX_LIST_ITEMS}"):
        wide.parse([25.0] * (MAX_LIST_ITEMS + 1))


def test_the_list_cap_is_stated_in_the_allowed_values():
    from labctl.params import MAX_LIST_ITEMS

    assert f"a list of 1 to {MAX_LIST_ITEMS} numbers, each from -40 to 150 °C" == PARAMS[2].allowed
