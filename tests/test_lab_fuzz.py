"""Fuzzing the lab file: whatever bytes or TOML structure a user points ``--lab`` at,
``labctl instruments list`` and ``labctl run eis`` either work or exit 2 with exactly
one ``error:`` line, no traceback, and no run file.

Structures are drawn around the real schema (known keys, typos, wrong types, numbers
in and out of range, lenient number spellings) so most examples get deep into the
validation, plus raw random bytes and byte-level mutations of a valid file. The
drivers drawn are ones that can never start an EIS run (SMUs without impedance, an
LCR meter whose 20 Hz floor refuses the default sweep, chambers), so a valid lab
never opens a port: ``run eis --instrument NAME`` must stop with exit 2 before any
hardware is touched, and ``--instrument sim`` must complete.
"""

from __future__ import annotations

import json
import math
import signal
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labctl.cli import main

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# --- a small TOML writer (inline tables only: any nesting is one line) ---------------------


def toml_key(key: str) -> str:
    return toml_string(key)


def toml_string(text: str) -> str:
    # JSON escapes are TOML basic-string escapes; DEL must be escaped in TOML too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items())


# --- structures around the schema ---------------------------------------------------------

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
lenient_numbers = st.sampled_from(["10", "2.5", "1_0", "١٠", "nan", "inf", "-1e-3", "1e400", "0x10", " 5 "])
numberish = st.one_of(
    st.floats(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0.5, 1.0, 2.5, 100.0, 150, 1e-5, 4.5, -1.0]),
    lenient_numbers,
    st.booleans(),
)
scalar = st.one_of(numberish, text, st.booleans())
anything = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6
)


def keys_and(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), text)


cell = st.dictionaries(keys_and(["area", "thickness", "id", "type", "notes", "aera"]), numberish | text, max_size=4)
channel = st.fixed_dictionaries(
    {},
    optional={
        "max_current": numberish,
        "voltage_min": numberish,
        "voltage_max": numberish,
        "max_temperature": numberish,
        "chamber": st.sampled_from(["oven", "lcr", "nosuch"]) | anything,
        "cell": cell | anything,
        "max_curent": numberish,
    },
)
options = st.dictionaries(
    keys_and(["clock_speed", "timeout", "averages", "aperture", "baudrate", "colour"]), numberish | anything, max_size=3
)
instrument = st.fixed_dictionaries(
    {},
    optional={
        "driver": st.sampled_from(["keithley2450", "keithley2400", "e4980a", "espec", "eurotherm", "emstat9"])
        | anything,
        "resource": st.sampled_from(["tcp://127.0.0.1:9", "", "COM1", "[/bold]", "[red]x"]) | anything,
        "options": options | anything,
        "channels": st.dictionaries(keys_and(["1", "2", "A", "a:b"]), channel | anything, max_size=2) | anything,
        "resorce": text,
    },
)
instruments = st.dictionaries(keys_and(["lcr", "smu", "oven", "sim", "a:b", ""]), instrument | anything, max_size=3)
defaults = st.fixed_dictionaries({}, optional={"operator": text | anything, "cell": cell | anything, "opertor": text})
any_lab = st.fixed_dictionaries(
    {},
    optional={
        "defaults": defaults | anything,
        "instruments": instruments | anything,
        "instrumnets": anything,
    },
)

# Mostly-valid labs: in-range values, so the fuzz also reaches the paths after loading.
good_cell = st.fixed_dictionaries(
    {}, optional={"area": st.floats(0.01, 100.0), "thickness": st.floats(1.0, 1000.0), "id": text}
)
good_channel = st.fixed_dictionaries(
    {},
    optional={
        "max_current": st.floats(0.01, 100.0),
        "voltage_min": st.floats(-5.0, 0.0),
        "voltage_max": st.floats(0.1, 5.0),
        "max_temperature": st.floats(0.0, 200.0),
        "chamber": st.just("oven"),
        "cell": good_cell,
    },
)
good_instrument = st.fixed_dictionaries(
    {"driver": st.sampled_from(["keithley2450", "keithley2400", "e4980a"]), "resource": st.just("tcp://127.0.0.1:9")},
    optional={
        "channels": st.dictionaries(st.sampled_from(["1", "2", "A"]), good_channel | channel, max_size=2),
        "options": st.fixed_dictionaries({}, optional={"timeout": st.floats(0.5, 10.0)}),
    },
)
good_lab = st.fixed_dictionaries(
    {
        "instruments": st.dictionaries(st.sampled_from(["lcr", "smu", "pstat"]), good_instrument, max_size=2).map(
            lambda found: {**found, "oven": {"driver": "espec", "resource": "tcp://127.0.0.1:9"}}
        )
    },
    optional={
        "defaults": st.fixed_dictionaries(
            {},
            optional={
                "operator": text,
                "cell": st.fixed_dictionaries({"area": st.just(1.0), "thickness": st.just(100)}),
            },
        )
    },
)
lab = st.one_of(good_lab, any_lab)

VALID = (
    b'[defaults]\noperator = "fuzz"\ncell = { area = 1.0, thickness = 100 }\n'
    b'[instruments.lcr]\ndriver = "e4980a"\nresource = "tcp://127.0.0.1:9"\noptions = { timeout = 2 }\n'
    b'[instruments.lcr.channels.1]\nmax_current = 5\nvoltage_min = -1\nvoltage_max = 2\nchamber = "oven"\n'
    b'[instruments.oven]\ndriver = "espec"\nresource = "tcp://127.0.0.1:9"\n'
)


@st.composite
def mutated_valid(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if action == "flip":
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


# --- the property -------------------------------------------------------------------------


def invoke(args: list[str]):
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return CliRunner().invoke(main, args)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def check_outcome(result, allowed: set[int], out: Path | None = None) -> None:
    where = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (repr(result.exception), where)
    assert "Traceback" not in result.stderr + result.stdout, where
    assert result.exit_code in allowed, where
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        if out is not None:
            assert not out.exists(), where
    elif out is not None:
        assert len(list(out.glob("*.h5"))) == 1, where


def exercise(content: bytes, names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lab.toml"
        path.write_bytes(content)
        listed = invoke(["instruments", "list", "--lab", str(path)])
        check_outcome(listed, {0, 2})
        event(f"instruments list: exit {listed.exit_code}")
        check_outcome(invoke(["instruments", "list", "--json", "--lab", str(path)]), {0, 2})
        out = Path(folder) / "runs"
        sim = invoke(["run", "eis", "-q", "--lab", str(path), "--instrument", "sim", "--out", str(out)])
        check_outcome(sim, {0, 2}, out)
        event(f"run --instrument sim: exit {sim.exit_code}")
        for name in names[:2]:
            hardware_out = Path(folder) / f"runs-{len(name)}"
            args = ["run", "eis", "-q", "--lab", str(path), "--instrument", name, "--out", str(hardware_out)]
            hardware = invoke(args)
            check_outcome(hardware, {2}, hardware_out)
            reason = "lab file refused" if str(path) in hardware.stderr else hardware.stderr[7:50]
            event(f"run --instrument NAME: {reason}")


def instrument_names(data: dict[str, Any]) -> list[str]:
    tables = data.get("instruments")
    return [name for name in tables if isinstance(name, str) and name] if isinstance(tables, dict) else []


@SETTINGS
@given(lab)
def test_random_lab_structures(data):
    exercise(toml_document(data).encode("utf-8"), instrument_names(data))


@SETTINGS
@given(st.binary(max_size=300) | mutated_valid())
def test_random_bytes(content):
    exercise(content, ["lcr", "oven", "lcr:1"])


def test_the_seed_file_is_valid_and_refused_for_eis_before_any_hardware():
    """The fuzz's starting point really is a valid lab whose instruments cannot run EIS."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lab.toml"
        path.write_bytes(VALID)
        listed = invoke(["instruments", "list", "--json", "--lab", str(path)])
        assert listed.exit_code == 0 and {r["instrument"] for r in json.loads(listed.stdout)} == {"lcr", "oven"}
        out = Path(folder) / "runs"
        lcr = invoke(["run", "eis", "-q", "--lab", str(path), "--instrument", "lcr", "--out", str(out)])
        check_outcome(lcr, {2}, out)
        assert "0.1 Hz outside the channel's 20..2e+06 Hz" in lcr.stderr
        sim = invoke(["run", "eis", "-q", "--lab", str(path), "--instrument", "sim", "--out", str(out)])
        check_outcome(sim, {0}, out)
