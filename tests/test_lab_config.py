"""The lab file: parsing, clear errors, and safety limits refusing protocol parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl import registry
from labctl.config import LabConfigError, load_lab
from labctl.params import ParameterError
from labctl.protocol import Cell

KNOWN_DRIVERS = ", ".join(sorted(registry.DRIVERS))

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


# --- structure: every key, every type, one line naming file and key path -------------------

PSTAT = '[instruments.pstat]\ndriver = "emstat4"\nresource = "/dev/ttyACM0"\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("instruments = 5", "instruments: expected a table of instruments like [instruments.pstat], got an integer"),
        ("defaults = 3", "defaults: expected a table like [defaults], got an integer"),
        (
            'instruments = { pstat = "emstat4" }',
            "instruments.pstat: expected a table with driver and resource, got a string",
        ),
        (PSTAT + "channels = [1, 2]", "instruments.pstat.channels: expected a table of channels, got an array"),
        (PSTAT + "channels = { 1 = 5 }", "instruments.pstat.channels.1: expected a table of the channel's limits"),
        (
            PSTAT + "options = [1]",
            "instruments.pstat.options: expected a table like { baudrate = 230400 }, got an array",
        ),
        (
            PSTAT + 'resorce = "x"',
            "instruments.pstat.resorce: unknown key (allowed: channels, driver, options, resource)",
        ),
        (
            PSTAT + "[instruments.pstat.channels.1]\nmax_curent = 1",
            "channels.1.max_curent: unknown key (allowed: cell,",
        ),
        (
            PSTAT + "[instruments.pstat.channels.1]\ncell = { aera = 1 }",
            "channels.1.cell.aera: unknown key (allowed: area,",
        ),
        ('[defaults]\nopertor = "x"', "defaults.opertor: unknown key (allowed: cell, operator)"),
        (
            "[defaults]\ncell = { thicknes = 2 }",
            "defaults.cell.thicknes: unknown key (allowed: area, cathode, id, loading, notes, specific_capacity",
        ),
        (
            "[defaults]\ncell = 2",
            "defaults.cell: expected a table like { area = 2.0, thickness = 100 }, got an integer",
        ),
        ("[defaults]\noperator = 5", "defaults.operator: expected a string, got an integer"),
        ("[defaults]\ncell = { id = 17 }", "defaults.cell.id: expected a string, got an integer"),
        ('[instruments.pstat]\nresource = "x"', f"instruments.pstat.driver: missing (known: {KNOWN_DRIVERS})"),
        ('[instruments.pstat]\ndriver = 5\nresource = "x"', "instruments.pstat.driver: unknown driver 5 (known:"),
        ('[instruments.pstat]\ndriver = "emstat4"', "instruments.pstat.resource: expected the address"),
        (
            '[instruments."a:b"]\ndriver = "emstat4"\nresource = "x"',
            "instruments.\"a:b\": instrument name 'a:b' is not",
        ),
        (PSTAT + '[instruments.pstat.channels." "]', "channels.\" \": channel name ' ' is not allowed"),
        (PSTAT + "[instruments.pstat.channels.1]\nchamber = 5", "channels.1.chamber: expected the name of a chamber"),
        ('[instruments.sim]\ndriver = "emstat4"\nresource = "x"', "instruments.sim: 'sim' is reserved"),
        ("[defaults\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 10)"),
        ("a = " + "[" * 2000 + "]" * 2000, "not valid TOML: arrays or tables nested too deeply"),
    ],
)
def test_structure_errors_name_the_key_path_and_what_is_allowed(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(LabConfigError) as info:
        load_lab(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert fragment in message


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("[defaults]\ncell = { area = -2, thickness = 100 }", "defaults.cell.area: must be > 0, got -2"),
        ("[defaults]\ncell = { area = 1e9 }", "defaults.cell.area: 1e+09 cm² is out of range (allowed: a number from"),
        ("[defaults]\ncell = { thickness = 1e12 }", "defaults.cell.thickness: 1e+12 µm is out of range"),
        ('[defaults]\ncell = { area = "1_0" }', "defaults.cell.area: expected a number, got '1_0' (allowed:"),
        ('[defaults]\ncell = { area = "١٠" }', "defaults.cell.area: expected a number, got"),
        ("[defaults]\ncell = { area = nan }", "defaults.cell.area: expected a finite number, got nan"),
        ("[defaults]\ncell = { area = true }", "defaults.cell.area: expected a number, got a boolean"),
        (PSTAT + "[instruments.pstat.channels.1]\ncell = { area = 0 }", "channels.1.cell.area: must be > 0"),
        (PSTAT + "[instruments.pstat.channels.1]\nmax_current = 1e12", "max_current: 1e+12 mA is out of range"),
        (PSTAT + "[instruments.pstat.channels.1]\nmax_current = " + "9" * 400, "max_current: expected a finite"),
        (PSTAT + "[instruments.pstat.channels.1]\nvoltage_max = 1e4", "voltage_max: 10000 V is out of range"),
        (PSTAT + '[instruments.pstat.channels.1]\nvoltage_min = "-1_0"', "voltage_min: expected a number, got '-1_0'"),
        (PSTAT + "[instruments.pstat.channels.1]\nmax_temperature = 5000", "max_temperature: 5000 °C is out of range"),
        (
            PSTAT + "[instruments.pstat.channels.1]\nvoltage_min = 2\nvoltage_max = 1",
            "channels.1: voltage_min must be below voltage_max (got 2 V and 1 V)",
        ),
        (
            PSTAT + "options = { clock_speed = 1e-300 }",
            "options.clock_speed: 1e-300 is out of range (allowed: a number",
        ),
        (PSTAT + 'options = { clock_speed = "1_0" }', "options.clock_speed: cannot read '1_0'"),
    ],
)
def test_numbers_get_the_declared_parameter_checks(tmp_path, setting, fragment):
    path = write(tmp_path, setting)
    with pytest.raises(LabConfigError) as info:
        load_lab(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)


def test_lab_geometry_uses_the_protocols_own_ranges(tmp_path):
    """The lab file's cell defaults accept exactly what `-p area=…`/`-p thickness=…` accept."""
    from labctl.protocol import GEOMETRY_PARAMS

    for param in GEOMETRY_PARAMS:
        ok = load_lab(write(tmp_path, f"[defaults]\ncell = {{ {param.name} = {param.maximum!r} }}"))
        assert ok.cell == {param.name: param.maximum}
        for bad in (param.maximum * 1.001, param.minimum * 0.999):
            with pytest.raises(LabConfigError, match=f"defaults.cell.{param.name}: .* is out of range"):
                load_lab(write(tmp_path, f"[defaults]\ncell = {{ {param.name} = {bad!r} }}"))
            with pytest.raises(ParameterError):
                param.parse(repr(bad))


def test_numbers_as_strict_strings_and_a_bom_are_accepted(tmp_path):
    path = tmp_path / "lab.toml"
    text = PSTAT + 'options = { clock_speed = "50" }\n[instruments.pstat.channels.A]\nmax_current = "2.5"\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    inst, ch = load_lab(path).channel("pstat:A")
    assert ch.safety.max_current == pytest.approx(2.5e-3)
    assert inst.options == {"clock_speed": 50.0}


def test_a_non_utf8_file_says_where(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_bytes(b'[defaults]\noperator = "Jos\xe9"\n')
    with pytest.raises(LabConfigError) as info:
        load_lab(path)
    assert str(info.value) == (f"{path}: not UTF-8 text: byte 0xe9 at line 2, column 16 (save the lab file as UTF-8)")


def test_a_huge_file_is_refused_without_parsing(tmp_path):
    from labctl.config import MAX_LAB_FILE_BYTES

    path = write(tmp_path, "# x\n" * (MAX_LAB_FILE_BYTES // 4 + 1))
    with pytest.raises(LabConfigError, match="larger than 1024 KiB"):
        load_lab(path)
    with pytest.raises(LabConfigError, match="is a folder"):
        load_lab(tmp_path)


# --- the CLI: every command that reads a lab file says `error: …` and exits 2 ------------


def _cli(args: list[str]):
    from click.testing import CliRunner

    from labctl.cli import main

    return CliRunner().invoke(main, args)


BAD_LABS = {
    "instruments-int": b"instruments = 5\n",
    "channels-array": PSTAT.encode() + b"channels = [1, 2]\n",
    "not-utf8": b'[defaults]\noperator = "\xff\xfe"\n',
    "not-toml": b"[instruments.pstat\n",
    "negative-area": b"[defaults]\ncell = { area = -1, thickness = 100 }\n",
    "typo": PSTAT.encode() + b"[instruments.pstat.channels.1]\nmax_curent = 1\n",
}


@pytest.mark.parametrize("name", sorted(BAD_LABS))
@pytest.mark.parametrize(
    "command",
    [
        ["instruments", "list"],
        ["instruments", "list", "--json"],
        ["instruments", "identify", "pstat"],
        ["run", "eis", "--instrument", "pstat"],
        ["run", "eis", "--instrument", "sim"],
    ],
)
def test_every_lab_reading_command_exits_2_with_one_error_line(tmp_path, name, command):
    path = tmp_path / "lab.toml"
    path.write_bytes(BAD_LABS[name])
    out = tmp_path / "runs"
    extra = ["--out", str(out), "-q"] if command[0] == "run" else []
    result = _cli([*command, "--lab", str(path), *extra])
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert result.stdout == ""
    assert not out.exists()


def test_identify_refuses_options_the_driver_cannot_read_when_the_file_loads(tmp_path):
    path = write(
        tmp_path, '[instruments.lcr]\ndriver = "e4980a"\nresource = "tcp://127.0.0.1:9"\noptions = { timeout = [1] }'
    )
    result = _cli(["instruments", "identify", "lcr", "--lab", str(path)])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: instruments.lcr.options.timeout: "), lines
    assert "allowed:" in lines[0]


def test_lab_text_is_shown_as_text_not_markup(tmp_path):
    """A resource like '[/bold]' is printed as written (rich would raise MarkupError on it)."""
    path = write(tmp_path, '[instruments.pstat]\ndriver = "emstat4"\nresource = "[/bold]COM[red]1"')
    from click.testing import CliRunner

    from labctl.cli import main

    result = CliRunner().invoke(main, ["instruments", "list", "--lab", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "[/bold]COM[red]1" in result.stdout


def test_identify_calls_a_resource_the_driver_cannot_use_bad_input(tmp_path):
    path = write(tmp_path, '[instruments.oven]\ndriver = "eurotherm"\nresource = "TCPIP::oven::SOCKET"')
    result = _cli(["instruments", "identify", "oven", "--lab", str(path)])
    assert result.exit_code == 2, (result.stderr, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: instruments.oven.resource: "), result.stderr
