"""The MethodSCRIPT wire emulator (drivers.sim.wire.emstat), talked to with raw
pyserial over its pseudo-terminal: the command set, the script interpreter, the
measurement loops on the cell physics, aborts and injected faults."""

from __future__ import annotations

import time

import numpy as np
import pytest
import serial

from drivers.palmsens.encoding import decode_packet
from drivers.palmsens.models import EMSTAT4_HR
from drivers.palmsens.script import Compiler
from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import context, drive
from drivers.sim.wire.emstat import serve_emstat4, serve_pico
from labctl.clock import VirtualClock
from labctl.steps import ConstantCurrent, Limits

pytestmark = pytest.mark.timeout(60)


class Wire:
    """A raw serial client: write lines, read lines with a deadline."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, timeout=0.05)
        self.buffer = b""

    def send(self, *lines: str) -> None:
        self.port.write("".join(line + "\n" for line in lines).encode())

    def line(self, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no line within {timeout} s (have {self.buffer!r})")
            self.buffer += self.port.read(max(1, self.port.in_waiting))
        raw, _, self.buffer = self.buffer.partition(b"\n")
        return raw.decode()

    def until_end(self, timeout: float = 10.0) -> list[str]:
        """Lines up to (not including) the empty line that ends a script."""
        out = []
        while (line := self.line(timeout)) != "":
            out.append(line)
        return out

    def script(self, *lines: str) -> None:
        self.send("e", *lines, "")

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def es4():
    with serve_emstat4(SimParams(), speed=200.0, cell_type="li_li") as server:
        wire = Wire(server.resource)
        yield server, wire
        wire.close()


def test_identification_and_idle_commands(es4) -> None:
    server, wire = es4
    wire.send("t")
    assert wire.line() == "tes4_hr1400#Mar 12 2024 10:00:00"
    assert wire.line() == "R*"
    wire.send("i", "v", "Z", "q", "tx")
    assert [wire.line() for _ in range(5)] == ["iSIMES4HR00000", "v0108", "Z!0006", "q!0003", "t!0003"]
    assert server.device.received[:2] == ["t", "i"]


def test_pico_identifies_itself_and_refuses_galvanostatic_loops() -> None:
    with serve_pico(SimParams(seed=7), speed=100.0, cell_type="ss") as server:
        wire = Wire(server.resource)
        wire.send("t", "i")
        assert wire.line().startswith("tespico1600#") and wire.line() == "R*"
        assert wire.line() == "iSIMESPICO00007"
        wire.script("var e", "var i", "set_i 1m", "cell_on", "  meas_loop_cp e i 1m 1 10", "endloop")
        assert wire.line() == "e!001B: Line 5, Col 3"
        wire.close()


def test_interpreter_variables_arithmetic_and_flow_control(es4) -> None:
    _, wire = es4
    wire.script(
        "var a",
        "var b",
        "store_var a 5i ja",
        "store_var b 0i ja",
        "add_var a 2i",
        "mul_var a 3i",
        "sub_var a 1i",
        "div_var a 4i",
        "pck_start",
        "pck_add a",
        "pck_end",
        "loop b < 10i",
        "  add_var b 1i",
        "  if b == 2i",
        "    pck_start",
        "    pck_add b",
        "    pck_end",
        "  elseif b >= 4i",
        "    breakloop",
        "  else",
        "    copy_var b a",
        "  endif",
        "endloop",
        "pck_start",
        "pck_add b",
        "pck_add a",
        "pck_end",
    )
    assert wire.line() == "e"
    assert wire.until_end() == ["Pja8000005i", "L", "Pja8000002i", "+", "Pja8000004i;ja8000003i"]


def test_load_then_run(es4) -> None:
    _, wire = es4
    wire.send("l", "var a", "store_var a 42i ja", "pck_start", "pck_add a", "pck_end", "")
    assert wire.line() == "l"
    wire.send("r")
    assert wire.line() == "r"
    assert wire.until_end() == ["Pja800002Ai"]


@pytest.mark.parametrize(
    ("lines", "reply"),
    [
        (["var a", "set_e nonsense"], "e!4001: Line 2, Col 1"),
        (["var a", "  if a < 1", "endloop"], "e!4001: Line 3, Col 1"),
        (["meas_loop_ocp x 1 1", "endloop"], "e!4001: Line 1, Col 1"),
    ],
)
def test_bad_scripts_are_refused_with_line_and_column(es4, lines, reply) -> None:
    server, wire = es4
    wire.script(*lines)
    assert wire.line() == reply
    assert not server.device.running


def test_runtime_errors_skip_on_finished(es4) -> None:
    server, wire = es4
    wire.script("var a", "store_var a 1i ja", "div_var a 0i", "on_finished:", "cell_off")
    assert wire.line() == "e" and wire.line() == "!0028: Line 3"
    wire.script("var e", "cell_on", "meas_loop_ocp e 1 1", "endloop")
    assert wire.line() == "e" and wire.line() == "!0014: Line 3"  # OCP needs the cell off
    assert server.device.cell_on  # nothing switched it off


def test_ocp_loop_streams_packets_on_the_sample_grid(es4) -> None:
    _, wire = es4
    wire.script(
        "var e",
        "var t",
        "timer_start",
        "cell_off",
        "meas_loop_ocp e 1 5",
        "  timer_get t",
        "  pck_start",
        "  pck_add t",
        "  pck_add e",
        "  pck_end",
        "endloop",
    )
    assert wire.line() == "e"
    out = wire.until_end()
    assert out[0] == "M000B" and out[-1] == "*"
    packets = [decode_packet(line) for line in out[1:-1]]
    t = np.array([p[0].value for p in packets])
    e = np.array([p[1].value for p in packets])
    assert [p[0].type for p in packets] == ["eb"] * 6 and [p[1].type for p in packets] == ["ab"] * 6
    assert np.diff(t) == pytest.approx(np.ones(5), abs=1e-6)  # samples at 0, 1, ... 5 s of cell time
    assert np.all(np.abs(e) < 1e-3)  # a symmetric Li cell at rest
    assert [p[1].status for p in packets] == [0] * 6


def test_cutoff_stops_the_cell_where_the_simulator_does() -> None:
    """Plate a little Li on Cu, strip it to 1.0 V with the driver's own scripts: the
    stripped charge equals the physics simulator's for the same steps."""
    params = SimParams(ce=0.95)
    plate = ConstantCurrent(current=-1e-3, limits=Limits(max_charge=0.36, max_time=1000), sample_period=5.0)
    strip = ConstantCurrent(current=1e-3, limits=Limits(voltage_above=1.0, max_time=1000), sample_period=5.0)
    sim = SimChannel(params, "li_cu", VirtualClock())
    ctx = context(sim)
    drive(sim, plate, ctx)
    truth = drive(sim, strip, ctx)
    # The instrument runs on a clock of its own that only its loops advance: the wall
    # time the host takes between scripts (on a loaded machine, anything) is no cell time.
    with serve_emstat4(params, clock=VirtualClock(), cell_type="li_cu") as server:
        wire = Wire(server.resource)
        compiler = Compiler(EMSTAT4_HR)
        results = []
        for step in (plate, strip):
            wire.send(compiler.compile(step).text().rstrip("\n"), "")
            assert wire.line() == "e"
            results.append(wire.until_end())
        wire.close()
    out = results[1]
    rows = [decode_packet(line) for line in out if line.startswith("P")]
    assert rows[-1][0].type == "ja" and rows[-1][0].value == 1  # code 1: voltage above
    samples = rows[:-1]
    t_end, e_end = samples[-1][0].value, samples[-1][1].value
    assert e_end == pytest.approx(1.0, abs=1e-6)  # stopped on the cutoff itself
    assert t_end == pytest.approx(truth.data["t"][-1] - truth.data["t"][0], rel=2e-3)
    assert truth.outcome.end_reason.value == "voltage_above"
    assert not server.device.cell_on  # on_finished: cell_off


def test_z_aborts_a_running_loop_and_runs_on_finished(es4) -> None:
    server, wire = es4
    wire.script(
        "var e",
        "var i",
        "set_e 10m",
        "cell_on",
        "meas_loop_ca e i 10m 1 100000",
        "  pck_start",
        "  pck_add e",
        "  pck_add i",
        "  pck_end",
        "endloop",
        "pck_start",
        "pck_add e",
        "pck_end",
        "on_finished:",
        "cell_off",
    )
    assert wire.line() == "e" and wire.line() == "M0007"
    first = decode_packet(wire.line())
    assert first[1].type == "ba" and first[1].range is not None
    assert server.device.cell_on
    wire.send("Z")
    rest = wire.until_end()
    assert "Z" in rest and rest[-1] == "*"  # the loop is wound up, the line after it is skipped
    assert not server.device.cell_on  # on_finished ran
    wire.send("Z")
    assert wire.line() == "Z!0006"


def test_injected_error_code_and_overload(es4) -> None:
    server, wire = es4
    loop = [
        "var e",
        "var i",
        "set_e 0",
        "cell_on",
        "meas_loop_ca e i 0 1 100",
        "  pck_start",
        "  pck_add i",
        "  pck_end",
    ]
    server.device.inject_overload(after_packets=2)
    wire.script(*loop, "  if i > 1", "    breakloop", "  endif", "endloop")
    assert wire.line() == "e" and wire.line() == "M0007"
    status = [decode_packet(wire.line())[0].status for _ in range(4)]
    assert status == [0, 0, 2, 2]  # OVERLOAD from the third packet on
    wire.send("Z")
    wire.until_end()
    server.device.clear_faults()
    server.device.inject_error(code=0x0032, after_packets=3)
    wire.script(*loop, "endloop", "on_finished:", "cell_off")
    assert wire.line() == "e" and wire.line() == "M0007"
    lines = [wire.line() for _ in range(4)]
    assert lines[:3] == [ln for ln in lines[:3] if ln.startswith("Pba")] and lines[3] == "!0032: Line 5"
    assert server.device.cell_on  # a runtime error skips on_finished: the cell is left on


def test_a_dropped_link_unpowers_the_instrument(es4) -> None:
    server, wire = es4
    wire.script("var e", "var i", "set_e 0", "cell_on", "meas_loop_ca e i 0 1 100000", "endloop")
    assert wire.line() == "e" and wire.line() == "M0007"
    assert server.device.cell_on
    server.faults.drop_after_sends = 0
    wire.send("Z")  # the reply to this is the send that finds the link dropped
    deadline = time.monotonic() + 2.0
    while server.device.cell_on and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.device.cell_on and server.device.wait_idle(2.0)
    server.reconnect()
    wire.buffer = b""
    wire.port.reset_input_buffer()
    wire.send("v")
    assert wire.line() == "v0108"
