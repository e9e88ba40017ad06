"""Driver options: declared once (drivers.kit.options), parsed strictly, refused when the lab file loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from drivers.kit.options import DriverOptions, OptionError, option
from labctl import registry
from labctl.cli import main
from labctl.clock import VirtualClock

#: driver, resource, a good options table, a misspelled key, an out-of-range (key, value, allowed fragment)
FAMILIES = [
    ("emstat4", "/dev/ttyACM0", "{ timeout = 2.0, baudrate = 230400 }", "tiemout", ("timeout", "-1", "> 0 s")),
    ("nexus", "/dev/ttyACM1", '{ overload = "error" }', "overlaod", ("overload", '"ignore"', "compliance, error")),
    ("emstat_pico", "/dev/ttyACM2", "{ ocp_seconds = 1 }", "ocp_second", ("pgstat_channel", "-1", ">= 0")),
    ("keithley2450", "TCPIP::10.0.0.5::5025::SOCKET", "{ nplc = 0.1 }", "complaince_voltage", ("nplc", "20", "0.01")),
    ("keithley2400", "GPIB0::24::INSTR", "{ reset = false }", "nplcs", ("compliance_current", "2.0", "1.05 A")),
    ("e4980a", "TCPIP::10.0.0.6::5025::SOCKET", '{ aperture = "long" }', "apperture", ("averages", "300", "1 to 256")),
    ("espec", "tcp://10.0.0.7:10001", "{ address = 1 }", "adress", ("timeout", "0", "> 0 s")),
    ("eurotherm", "modbus-tcp://10.0.0.8:502", "{ decimals = 2 }", "decimal", ("decimals", "7", "0 to 3")),
]


def lab_file(tmp_path: Path, driver: str, resource: str, options: str) -> Path:
    path = tmp_path / "lab.toml"
    path.write_text(f'[instruments.pstat]\ndriver = "{driver}"\nresource = "{resource}"\noptions = {options}\n')
    return path


def list_instruments(path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["instruments", "list", "--lab", str(path), "--json"])
    return result.exit_code, result.stdout, result.stderr


def test_every_driver_declares_its_options() -> None:
    assert set(registry.DRIVER_OPTIONS) == set(registry.DRIVERS)
    for driver in registry.DRIVERS:
        cls = registry.driver_options(driver)
        assert issubclass(cls, DriverOptions)
        assert cls.parse({}) == cls()  # every option has a default a lab can run with
        for key, default, allowed, help_text in cls.describe():
            assert key and allowed and help_text, (driver, key, default)


@pytest.mark.parametrize(("driver", "resource", "good", "typo", "bad"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_lab_file_options_are_checked_when_it_loads(tmp_path, driver, resource, good, typo, bad) -> None:
    code, out, err = list_instruments(lab_file(tmp_path, driver, resource, good))
    assert code == 0, err
    assert '"instrument": "pstat"' in out

    path = lab_file(tmp_path, driver, resource, f"{{ {typo} = 1 }}")
    code, out, err = list_instruments(path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    known = ", ".join(registry.driver_options(driver).declared())
    assert lines[0] == f"error: {path}: instruments.pstat.options.{typo}: unknown option (allowed: {known})"

    key, value, allowed = bad
    code, out, err = list_instruments(lab_file(tmp_path, driver, resource, f"{{ {key} = {value} }}"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"instruments.pstat.options.{key}: " in lines[0]
    assert allowed in lines[0] and "Traceback" not in err


def test_the_example_message_for_a_misspelled_timeout(tmp_path) -> None:
    path = lab_file(tmp_path, "emstat4", "/dev/ttyACM0", "{ tiemout = 2 }")
    _, _, err = list_instruments(path)
    expected = f"error: {path}: instruments.pstat.options.tiemout: unknown option (allowed: timeout, baudrate, "
    assert err.startswith(expected)


@pytest.mark.parametrize("driver", sorted(registry.DRIVERS))
def test_factories_refuse_what_the_lab_file_refuses(driver) -> None:
    """The driver's factory parses with the same declarations (nothing is ignored)."""
    with pytest.raises(OptionError, match=r"unknown .* option tiemout"):
        registry.driver_factory(driver)("TCPIP::127.0.0.1::1::SOCKET", {"tiemout": 1}, VirtualClock())


@dataclass(frozen=True)
class Demo(DriverOptions):
    family: ClassVar[str] = "demo"

    timeout: float = option(1.0, "float", "reply timeout", unit="s", above=0)
    count: int = option(3, "int", "how many", minimum=1, maximum=10)
    mode: str = option("fast", "choice", "speed", choices=("fast", "slow"))
    flag: bool = option(True, "bool", "a switch")
    limit: float | None = option(None, "float", "optional limit", unit="V", minimum=0)
    setpoint: float | None = option(25.0, "float", "a default a lab may switch off", unit="°C", optional=True)


def test_parsing_is_strict_and_typed() -> None:
    opts = Demo.parse({"timeout": "2.5", "count": "0x4", "mode": "SLOW", "flag": "off", "setpoint": "none"})
    assert opts == Demo(timeout=2.5, count=4, mode="slow", flag=False, limit=None, setpoint=None)
    assert Demo.parse({"limit": None}).limit is None
    assert Demo.parse({"count": 7.0}).count == 7
    cases = [
        ({"timeout": 0}, "demo option timeout=0.0 is out of range (allowed: a number > 0 s)"),
        ({"timeout": "nan"}, "demo option timeout=nan is out of range"),
        ({"count": 2.5}, "demo option count=2.5 is not a number (allowed: a whole number from 1 to 10)"),
        ({"count": True}, "demo option count=True is not a number"),
        ({"mode": "medium"}, "demo option mode='medium' is not allowed (allowed: one of fast, slow)"),
        ({"flag": "maybe"}, "demo option flag='maybe' is not allowed (allowed: true or false)"),
        ({"timeout": None}, "demo option timeout=None is not a number"),
        ({"limit": -1}, "demo option limit=-1.0 is out of range (allowed: a number >= 0 V)"),
        ({"limit": "none"}, "demo option limit='none' is not a number"),
        ({"setpoint": "hot"}, "demo option setpoint='hot' is not a number (allowed: a number °C (or none))"),
        ({"tiemout": 1}, "unknown demo option tiemout (allowed: timeout, count, mode, flag, limit, setpoint)"),
    ]
    for given, message in cases:
        with pytest.raises(OptionError) as info:
            Demo.parse(given)
        assert str(info.value).startswith(message), (given, str(info.value))
        assert info.value.key == next(iter(given))


@pytest.mark.parametrize("driver", ["keithley2450", "keithley2400"])
def test_a_sourcemeter_has_one_channel(tmp_path, driver) -> None:
    """The runner hands the lab file's channel name to the driver: refused at load, not at run."""
    path = tmp_path / "lab.toml"
    head = f'[instruments.smu]\ndriver = "{driver}"\nresource = "GPIB0::24::INSTR"\n'
    path.write_text(head + "[instruments.smu.channels.2]\n")
    code, out, err = list_instruments(path)
    assert code == 2 and out == ""
    assert err.strip() == f"error: {path}: instruments.smu.channels.2: '2' is not allowed (allowed: one of 1)"
    path.write_text(head + "[instruments.smu.channels.1]\n")
    assert list_instruments(path)[0] == 0


@pytest.mark.parametrize("driver", [family[0] for family in FAMILIES])
def test_instruments_drivers_lists_every_declared_option(driver):
    result = CliRunner().invoke(main, ["instruments", "drivers", driver], terminal_width=400)
    assert result.exit_code == 0, result.stderr
    for key in registry.driver_options(driver).declared():
        assert key in result.stdout


def test_instruments_drivers_refuses_an_unknown_driver_in_one_line():
    result = CliRunner().invoke(main, ["instruments", "drivers", "potentiostat9000"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "known: " in result.stderr
