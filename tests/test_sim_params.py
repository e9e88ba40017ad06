"""SimParams (the simulator's truth) and the SimChannel's identity."""

from __future__ import annotations

import dataclasses
import json

import pytest

import labctl
from drivers.sim import CELL_TYPES, SimChannel, SimParams
from labctl.clock import VirtualClock
from labctl.steps import STEP_TYPES, Impedance

BRIEF_DEFAULTS = {
    "sigma": 3.3e-4,
    "ea": 0.35,
    "thickness": 100.0,
    "area": 1.0,
    "temperature": 25.0,
    "r_series": 0.25,
    "seed": 0,
    "t_plus": 0.4,
    "esw": 4.5,
    "ccd": 1.0,
    "ce": 0.98,
    "cell": "auto",
    "noise": 0.003,
}


def test_headline_defaults_and_every_field_described() -> None:
    p = SimParams()
    for name, value in BRIEF_DEFAULTS.items():
        assert getattr(p, name) == value, name
    specs = SimParams.specs()
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(SimParams)]
    for s in specs:
        assert s.help, s.name
        if s.choices is None:
            assert s.low <= s.default <= s.high, s.name
            assert isinstance(s.unit, str)
        else:
            assert s.default in s.choices


def test_from_strings_parses_numbers_ints_and_choices() -> None:
    p = SimParams.from_strings({"sigma": "1e-4", "seed": "7", "cell": "LI_CU", " short_kind ": "soft"})
    assert p.sigma == 1e-4 and p.seed == 7 and isinstance(p.seed, int)
    assert p.cell == "li_cu" and p.short_kind == "soft"
    assert SimParams.from_strings({}) == SimParams()


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"sigma": "2"}, r"sigma=2\.0 S/cm is out of range 1e-09\.\.1 S/cm"),
        ({"ce": "0.3"}, r"ce=0\.3 .*0\.5\.\.1"),
        ({"thickness": "abc"}, r"thickness='abc' is not a number; allowed 1\.\.10000 µm"),
        ({"seed": "1.5"}, r"seed=.*must be an integer"),
        ({"cell": "lipo"}, r"cell='lipo' is not allowed: one of auto, ss, li_li"),
        ({"sigmaa": "1"}, r"unknown sim parameter 'sigmaa'; known: .*sigma"),
    ],
)
def test_from_strings_names_the_field_and_its_range(values: dict[str, str], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        SimParams.from_strings(values)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="t_plus"):
        SimParams(t_plus=1.0)
    with pytest.raises(ValueError, match="seed"):
        SimParams(seed=True)


def test_as_dict_is_json_and_round_trips_through_strings() -> None:
    p = SimParams(sigma=2e-5, seed=3, cell="li_li", short_kind="soft")
    d = p.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert SimParams.from_strings({k: str(v) for k, v in d.items()}) == p
    assert p.cell_info() == {"type": "li_li", "area_cm2": 1.0, "thickness_um": 100.0}


def test_channel_identity_capabilities_and_cell_info() -> None:
    ch = SimChannel(SimParams(seed=7, area=2.0, thickness=500.0), "li_cu", VirtualClock())
    info = ch.identify()
    assert (info.driver, info.model, info.serial, info.firmware) == (
        "sim",
        "labctl physics simulator",
        "SIM-7",
        labctl.__version__,
    )
    assert ch.capabilities.step_kinds == frozenset(STEP_TYPES)
    assert ch.capabilities.impedance_modes == {"potentiostatic", "galvanostatic"}
    assert ch.capabilities.refusal(Impedance(mode="galvanostatic")) is None
    info = ch.cell_info()
    assert {k: info[k] for k in ("type", "area_cm2", "thickness_um")} == {
        "type": "li_cu",
        "area_cm2": 2.0,
        "thickness_um": 500.0,
    }
    assert info["ocv_V"] == pytest.approx(ch.params.ocv_bare)  # bare Cu against Li: no Li on the working electrode yet
    assert ch.output_on is False


def test_cell_type_must_be_resolved() -> None:
    with pytest.raises(ValueError, match="auto"):
        SimChannel(SimParams(), "auto", VirtualClock())
    assert SimChannel(SimParams(cell="full"), "auto", VirtualClock()).cell_type == "full"
    assert set(CELL_TYPES) == {"ss", "li_li", "li_ss", "li_cu", "full", "short"}


def test_specs_serve_the_cli_table_and_truth_is_json() -> None:
    spec = SimParams.spec("seed")
    assert spec.allowed == "0..4294967295 (whole number)"
    assert SimParams.spec("sigma").describe_default() == "0.00033"
    assert SimParams.spec("short_kind").allowed == "one of hard, soft"
    ch = SimChannel(SimParams(), "li_li", VirtualClock())
    truth = ch.truth()
    assert json.loads(json.dumps(truth))["model"]["r_bulk"] == pytest.approx(100e-4 / 3.3e-4)
