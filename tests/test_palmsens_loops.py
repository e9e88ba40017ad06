"""The MethodSCRIPT emulator runs the measurement loops of the vendor's example scripts
(CV with nscans, SWV, DPV, NPV, ACV, LSP, PAD) and arrays, as the MethodSCRIPT manual v1.8
describes them. The scripts below follow the argument order of PalmSens' published examples
(``PalmSens/MethodSCRIPT_Examples``, Measurement_Loops); the packets are decoded here from
the manual's data-package format, not with the driver's decoder, so the emulator is checked
against the manual and not against our own driver."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.palmsens.errors import parse_error
from drivers.sim import SimParams
from drivers.sim.wire.emstat import serve_emstat4, serve_pico
from labctl.clock import VirtualClock
from tests.test_palmsens_emulator import Wire

pytestmark = pytest.mark.timeout(60)

PREFIXES = {"a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, " ": 1.0, "k": 1e3, "M": 1e6,
            "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "i": 1.0}


def decode(line: str) -> list[tuple[str, float]]:
    """``P`` + ``;``-separated items: type (2 letters), 7 hex digits offset by 2**27, prefix."""
    assert line.startswith("P"), line
    out = []
    for item in line[1:].split(";"):
        main = item.split(",")[0]
        out.append((main[:2], (int(main[2:9], 16) - 2**27) * PREFIXES[main[9]]))
    return out


def run(wire: Wire, *lines: str) -> tuple[str, list[list[tuple[str, float]]], list[str]]:
    """Send a script; its loop's M line, the decoded packets and every line received."""
    wire.script(*lines)
    received = wire.until_end(timeout=30.0)
    assert received[0] == "e", received
    header = next((line for line in received if line.startswith("M")), "")
    packets = [decode(line) for line in received if line.startswith("P")]
    return header, packets, received


@pytest.fixture
def es4():
    with serve_emstat4(SimParams(seed=11), clock=VirtualClock(), cell_type="li_li") as server:
        wire = Wire(server.resource)
        yield wire
        wire.close()


PREAMBLE = ("var p", "var c", "set_pgstat_chan 0", "set_pgstat_mode 3", "set_max_bandwidth 60",
            "set_range ba 50u", "set_autoranging ba 50n 2m")


def test_cv_with_nscans_sweeps_begin_vertex1_vertex2_back_n_times(es4):
    header, packets, received = run(
        es4, *PREAMBLE, "set_e 0", "cell_on",
        "meas_loop_cv p c 0 200m -200m 10m 100m nscans(2)",
        "  pck_start", "  pck_add p", "  pck_add c", "  pck_end", "endloop",
        "on_finished:", "  cell_off",
    )
    assert header == "M0005" and received[-1] == "*"
    potentials = np.array([pkt[0][1] for pkt in packets])
    assert {kind for pkt in packets for kind, _ in pkt} == {"da", "ba"}
    assert potentials.max() == pytest.approx(0.2, abs=0.011) and potentials.min() == pytest.approx(-0.2, abs=0.011)
    turns = np.count_nonzero(np.diff(np.sign(np.diff(potentials))) != 0)
    assert turns == 2 * 2  # two vertices per scan; scan 2 goes on upward from where scan 1 ended
    assert 2 * 80 * 0.95 <= len(packets) <= 2 * 80 * 1.05  # 0.8 V per scan in 10 mV steps


def test_swv_reports_difference_forward_and_reverse(es4):
    header, packets, _ = run(
        es4, "var p", "var c", "var f", "var r", "set_pgstat_mode 3", "set_range ba 30u", "set_e -100m", "cell_on",
        "meas_loop_swv p c f r -100m 100m 10m 15m 10",
        "  pck_start", "  pck_add p", "  pck_add c", "  pck_add f", "  pck_add r", "  pck_end", "endloop",
        "on_finished:", "  cell_off",
    )
    assert header == "M0002" and len(packets) == 21
    for (_, _), (_, diff), (_, forward), (_, reverse) in packets:
        assert diff == pytest.approx(forward - reverse, rel=1e-5, abs=1e-12)
        assert forward > reverse  # the forward pulse is 30 mV above the reverse one on the same cell
    assert [round(pkt[0][1], 3) for pkt in packets] == [round(-0.1 + 0.01 * k, 3) for k in range(21)]


@pytest.mark.parametrize(
    ("loop", "code", "points"),
    [
        ("meas_loop_dpv p c -50m 50m 10m 20m 5m 100m", "M0001", 11),
        ("meas_loop_npv p c -50m 50m 10m 20m 100m", "M0003", 11),
        ("meas_loop_pad p c 100m 300m 10m 50m 500m 3", "M0008", 10),
    ],
)
def test_pulse_techniques_give_one_point_per_step(es4, loop, code, points):
    header, packets, received = run(
        es4, *PREAMBLE, "set_e 0", "cell_on", loop,
        "  pck_start", "  pck_add p", "  pck_add c", "  pck_end", "endloop", "on_finished:", "  cell_off",
    )
    assert header == code and len(packets) == points and received[-1] == "*"


def test_acv_reports_dc_and_ac_response_with_impedance(es4):
    _, packets, _ = run(
        es4, "var dp", "var dc", "var ap", "var ac", "var zr", "var zi", "set_pgstat_mode 3", "set_e 0", "cell_on",
        "meas_loop_acv dp dc ap ac zr zi -20m 20m 10m 20m 10m 15",
        "  pck_start", "  pck_add dp", "  pck_add ac", "  pck_add zr", "  pck_add zi", "  pck_end", "endloop",
        "on_finished:", "  cell_off",
    )
    assert len(packets) == 5
    for (_, _), (kind, ac), (_, zr), (_, zi) in packets:
        assert kind == "ba" and zr > 0
        assert ac == pytest.approx(0.01 / abs(complex(zr, zi)), rel=1e-4)


def test_lsp_sweeps_the_current_and_the_pico_has_no_galvanostat(es4):
    _, packets, _ = run(
        es4, "var p", "var c", "set_pgstat_mode 6", "set_i 0", "cell_on",
        "meas_loop_lsp p c -100u 100u 20u 100u",
        "  pck_start", "  pck_add c", "  pck_add p", "  pck_end", "endloop", "on_finished:", "  cell_off",
    )
    currents = [pkt[0][1] for pkt in packets]
    assert [kind for kind, _ in packets[0]] == ["db", "ab"]
    assert currents == pytest.approx([-100e-6 + 20e-6 * k for k in range(11)])
    potentials = [pkt[1][1] for pkt in packets]
    assert potentials[0] < 0 < potentials[-1]  # a symmetric Li|Li cell polarises with the current's sign
    with serve_pico(SimParams(), clock=VirtualClock(), cell_type="ss") as pico:
        wire = Wire(pico.resource)
        wire.script("var p", "var c", "cell_on", "meas_loop_lsp p c -1u 1u 1u 1u", "endloop")
        reply = parse_error(wire.line())
        wire.close()
    assert reply is not None and reply.code == 0x001B and reply.line == 4


def test_arrays_store_index_and_read_back(es4):
    _, packets, received = run(
        es4, "var i", "var n", "var x", "array a 5i", "store_var i 0i ja",
        "loop i < 5i", "  copy_var i a[i]", "  mul_var a[i] 2i", "  add_var i 1i", "endloop",
        "array_get a 3i x", "array_set a 0i 7i", "store_var i 0i ja",
        "loop i < 5i", "  pck_start", "    pck_add a[i]", "  pck_end", "  add_var i 1i", "endloop",
        "pck_start", "  pck_add x", "pck_end",
        "send_string \"done here\"",
    )
    assert [pkt[0][1] for pkt in packets] == [7, 2, 4, 6, 8, 6]
    assert "Tdone here" in received


def test_array_index_out_of_bounds_is_a_runtime_error(es4):
    es4.script("var i", "array a 2i", "store_var i 2i ja", "copy_var i a[i]")
    assert es4.line() == "e"
    reply = parse_error(es4.line())  # a runtime error ends the script's output
    assert reply is not None and reply.line == 4 and reply.column is None


def test_a_script_refused_while_loading_names_line_and_column(es4):
    """The reply to ``e`` is the error, with the command letter, the line and the column."""
    es4.script("var a", "  store_var b 1 ja")
    reply = parse_error(es4.line())
    assert reply is not None and (reply.command, reply.line, reply.column) == ("e", 2, 3)


def test_the_emulators_share_no_code_with_the_drivers():
    """An emulator implements the instrument from its manual: importing the driver's encoder,
    model table or error codes would mirror the driver's mistakes on both sides of the wire."""
    import ast
    from pathlib import Path

    wire = Path(__file__).resolve().parents[1] / "drivers" / "sim" / "wire"
    allowed = ("drivers.sim", "drivers.kit")  # the physics and the shared SCPI/transport kit

    def is_driver(module: str) -> bool:
        return module.startswith("drivers.") and not module.startswith(allowed)

    for path in sorted(wire.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            assert not any(is_driver(m) for m in modules), f"{path.name} imports {modules}"
