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
