"""Command-line numbers (--speed, --sim, --option, --port, --temperatures) are read
strictly and bounded, and bad ones stop the command before anything is written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from labctl.cli import _option_value, main
from labctl.instruments import instrument_clock
from labctl.params import ParameterError
from labctl.speed import SPEED_MAX, SPEED_MIN, parse_speed, parse_speed_factor


def invoke(args: list[str]):
    return CliRunner().invoke(main, args)


def assert_usage_error(result, fragment: str) -> None:
    assert result.exit_code == 2, (result.output, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("text", ["max", "MAX", "fastest"])
def test_speed_max_is_virtual_time(text):
    assert parse_speed(text) is None


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("0.001", SPEED_MIN), ("1e7", SPEED_MAX), ("250", 250.0)])
def test_speed_within_bounds(text, value):
    assert parse_speed(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1e-300", "1e-300 is out of range (allowed: max, or a number from 0.001 to 1e+07, × real time)"),
        ("0", "0 is out of range"),
        ("-5", "-5 is out of range"),
        ("1e8", "1e+08 is out of range"),
        ("1_0", "cannot read '1_0'"),
        ("١٠", "cannot read"),
        ("nan", "cannot read 'nan'"),
        ("fast", "cannot read 'fast'"),
    ],
)
def test_speed_out_of_bounds_or_unreadable(text, fragment):
    with pytest.raises(ParameterError) as info:
        parse_speed(text)
    assert info.value.name == "speed" and fragment in str(info.value)


def test_clock_speed_option_is_bounded_too():
    assert instrument_clock({"clock_speed": "100"}).speed == 100.0
    assert instrument_clock({}).speed == 1.0
    for bad in (1e-300, "1_0", True, [2]):
        with pytest.raises(ParameterError, match="parameter 'clock_speed'"):
            instrument_clock({"clock_speed": bad})
    with pytest.raises(ParameterError, match="parameter 'factor'"):
        parse_speed_factor(0, "factor")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--speed", "1e-300"], "parameter 'speed': 1e-300 is out of range"),
        (["--speed", "1_0"], "parameter 'speed': cannot read '1_0'"),
        (["-p", "amplitude=1_0"], "parameter 'amplitude': cannot read '1_0'"),
        (["-p", "amplitude=١٠"], "parameter 'amplitude': cannot read"),
        (["--sim", "sigma=1_0e-4"], "sim parameter sigma='1_0e-4' is not a number"),
        (["--sim", "seed=٣"], "sim parameter seed='٣' is not a number"),
    ],
)
def test_run_refuses_lenient_numbers_before_writing(tmp_path, args, fragment):
    out = tmp_path / "runs"
    result = invoke(["run", "eis", "-q", "--out", str(out), *args])
    assert_usage_error(result, fragment)
    assert not out.exists()


def test_run_refuses_a_list_longer_than_the_cap(tmp_path):
    out = tmp_path / "runs"
    temperatures = ",".join(["25"] * 1001)
    result = invoke(["run", "arrhenius", "-q", "--out", str(out), "-p", f"temperatures={temperatures}"])
    assert_usage_error(result, "parameter 'temperatures': 1001 values given, at most 1000")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--speed", "0"], "parameter 'speed': 0 is out of range"),
        (["--speed", "1e-300"], "parameter 'speed': 1e-300 is out of range"),
        (["--speed", "1_0"], "parameter 'speed': cannot read '1_0'"),
        (["--port", "8_080"], "parameter 'port': cannot read '8_080'"),
        (["--port", "٨٠"], "parameter 'port': cannot read"),
        (["--port", "70000"], "parameter 'port': 70000 is out of range"),
    ],
)
def test_sim_server_refuses_lenient_or_unbounded_numbers(args, fragment):
    assert_usage_error(invoke(["sim-server", "--model", "keithley2450", *args]), fragment)


def test_option_values_are_numbers_only_in_the_strict_grammar():
    assert _option_value("10") == 10 and isinstance(_option_value("10"), int)
    assert _option_value("2.5e3") == 2500.0
    assert _option_value("true") is True
    for text in ("1_0", "١٠", "nan", "espec"):
        assert _option_value(text) == text  # stays text: the emulator refuses it by name


def test_analyze_temperatures_are_read_strictly(tmp_path):
    spectra = []
    for i in range(2):
        path = tmp_path / f"s{i}.csv"
        path.write_text("freq,z_re,z_im\n1000,10,-1\n100,11,-2\n")
        spectra.append(str(path))
    result = invoke(["analyze", "arrhenius", *spectra, "--temperatures", "25,4_0", "-p", "thickness=100"])
    assert_usage_error(result, "parameter 'temperatures': cannot read '25,4_0'")


def test_run_summary_prints_paths_as_text_not_markup(tmp_path):
    out = tmp_path / "[/bold]runs"
    result = CliRunner().invoke(main, ["run", "eis", "-q", "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "completed" in result.stderr and "[/bold]runs" in result.stderr
