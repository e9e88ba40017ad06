"""The lab file: parsing, clear errors, and safety limits refusing protocol parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import registry
from labctl.config import LabConfigError, load_lab
from labctl.params import ParameterError
from labctl.protocol import Cell

LAB = """
[defaults]
operator = "night shift"
cell = { area = 2.0, thickness = 150 }

[instruments.pstat]
driver = "emstat4"
resource = "/dev/ttyACM0"
options = { baudrate = 230400 }

[instruments.pstat.channels.1]
max_current = 1.0
voltage_min = -1.0
voltage_max = 4.5
max_temperature = 80
chamber = "oven"
cell = { thickness = 80, id = "MOF-17" }

[instruments.pstat.channels.2]

[instruments.oven]
driver = "espec"
resource = "tcp://127.0.0.1:10001"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_lab_file_parses(tmp_path):
    lab = load_lab(write(tmp_path, LAB))
    inst, ch = lab.channel("pstat")
    assert inst.driver == "emstat4" and inst.kind == "potentiostat" and inst.options == {"baudrate": 230400}
    assert ch.name == "1" and ch.chamber == "oven"
    assert ch.safety.max_current == pytest.approx(1e-3)
    assert (ch.safety.voltage_min, ch.safety.voltage_max, ch.safety.max_temperature) == (-1.0, 4.5, 80.0)
    assert ch.cell == {"thickness": 80.0, "id": "MOF-17"}
    assert lab.cell == {"area": 2.0, "thickness": 150.0} and lab.operator == "night shift"
    assert lab.channel("pstat:2")[1].safety.max_current is None
    assert lab.instruments["oven"].kind == "chamber"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (('driver = "emstat4"', 'driver = "emstat9"'), "instruments.pstat.driver: unknown driver 'emstat9'"),
        (("max_current = 1.0", "max_current = -1.0"), "channels.1.max_current: must be > 0"),
        (("max_current = 1.0", 'max_current = "lots"'), "channels.1.max_current: expected a number"),
        (("voltage_min = -1.0", "voltage_min = 5.0"), "voltage_min must be below voltage_max"),
        (('chamber = "oven"', 'chamber = "pstat"'), "'pstat' is not a configured chamber"),
        (("max_temperature = 80", "max_temp = 80"), "channels.1.max_temp: unknown key"),
        (('resource = "/dev/ttyACM0"', "resource = 5"), "instruments.pstat.resource: expected the address"),
        (("[defaults]", "[default]"), "unknown section [default]"),
        (("[defaults]", "[defaults"), "not valid TOML"),
    ],
)
def test_lab_file_errors_name_file_and_key(tmp_path, change, fragment):
    path = write(tmp_path, LAB.replace(*change))
    with pytest.raises(LabConfigError) as info:
        load_lab(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_unknown_channel_and_instrument(tmp_path):
    lab = load_lab(write(tmp_path, LAB))
    with pytest.raises(LabConfigError, match="no instrument named 'nosuch'"):
        lab.channel("nosuch")
    with pytest.raises(LabConfigError, match="has no channel '7'"):
        lab.channel("pstat:7")


CELL = Cell(type="li_li", area_cm2=2.0, thickness_um=100.0)


@pytest.mark.parametrize(
    ("protocol", "given", "param", "fragment"),
    [
        ("ccd", {}, "max", "needs 10 mA (5 mA/cm² × 2 cm²), above the channel's safety limit 1 mA"),
        ("lsv", {"max_current": "0.1"}, "upper", "drives the cell to 5 V, above the channel's safety limit 4.5 V"),
        ("li_cu_ce", {"plating_limit": "-2"}, "plating_limit", "below the channel's safety limit -1 V"),
        ("arrhenius", {}, "temperatures", "sets 90 °C (highest set point), above the channel's safety limit 80 °C"),
        ("cycling", {"rates": "0.1,1.0"}, "rates", "needs 2 mA"),
    ],
)
def test_safety_limits_refuse_parameters_before_the_run(tmp_path, protocol, given, param, fragment):
    lab = load_lab(write(tmp_path, LAB))
    safety = lab.channel("pstat")[1].safety
    proto = registry.get_protocol(protocol)
    values = proto.validate(given)
    with pytest.raises(ParameterError) as info:
        safety.check_demands(proto.demands_for(values, CELL))
    assert info.value.name == param
    assert fragment in str(info.value)
    assert "lab.toml: instruments.pstat.channels.1" in str(info.value)


def test_parameters_within_limits_pass(tmp_path):
    lab = load_lab(write(tmp_path, LAB))
    safety = lab.channel("pstat")[1].safety
    proto = registry.get_protocol("li_cu_ce")
    values = proto.validate({"j": "0.4"})  # 0.8 mA on 2 cm²: under 1 mA
    safety.check_demands(proto.demands_for(values, CELL))


def test_run_with_lab_refuses_unsafe_parameters_before_anything_runs(tmp_path):
    from labctl.runner import prepare_run

    lab = load_lab(write(tmp_path, LAB))
    out = tmp_path / "runs"
    with pytest.raises(ParameterError, match="parameter 'max'"):
        prepare_run("ccd", params={}, instrument="pstat", out_dir=out, lab=lab)
    assert not out.exists()


def test_configured_emulator_refuses_a_sweep_beyond_its_range_before_the_run(tmp_path):
    """An EmStat Pico (±1.7 V class) is asked for an LSV to 5 V: refused up front."""
    from drivers.sim import SimParams
    from drivers.sim.wire.emstat import serve_pico
    from labctl.runner import prepare_run

    with serve_pico(SimParams(), speed=100.0, cell_type="li_ss") as server:
        path = write(
            tmp_path,
            f"""
[instruments.pico]
driver = "emstat_pico"
resource = "{server.resource}"
options = {{ clock_speed = 100 }}
""",
        )
        lab = load_lab(path)
        out = tmp_path / "runs"
        with pytest.raises(ValueError, match=r"cannot run protocol 'lsv': sweep stop 5 V is outside the channel's"):
            prepare_run("lsv", params={"area": "1", "thickness": "100"}, instrument="pico", out_dir=out, lab=lab)
        assert not out.exists()
        with pytest.raises(ValueError, match="does not support ConstantCurrent steps"):
            prepare_run("li_cu_ce", params={"area": "1", "thickness": "100"}, instrument="pico", out_dir=out, lab=lab)
