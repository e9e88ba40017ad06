"""Steps compiled to MethodSCRIPT (drivers.palmsens.script), byte for byte, and the
script parser (drivers.palmsens.syntax) the emulator uses."""

from __future__ import annotations

import pytest

from drivers.palmsens.models import EMSTAT4_HR, EMSTAT_PICO, NEXUS
from drivers.palmsens.script import CompileError, Compiler
from drivers.palmsens.syntax import Block, ScriptSyntaxError, parse_script
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Impedance, Limits, Rest, VoltageSweep

ES4 = Compiler(EMSTAT4_HR)

CP_SCRIPT = """e
var ew
var iw
var tm
var code
store_var code 0i ja
set_pgstat_chan 0
set_pgstat_mode 6
set_max_bandwidth 1
set_range ab 6
set_autoranging ab 6 6
set_range ba 1m
set_autoranging ba 1m 1m
set_i -500u
cell_on
timer_start
meas_loop_cp ew iw -500u 10 3600
  timer_get tm
  pck_start
  pck_add tm
  pck_add ew
  pck_add iw
  pck_end
  if ew <= -1
    store_var code 2i ja
    breakloop
  endif
endloop
pck_start
pck_add code
pck_end
on_finished:
cell_off

"""


def test_galvanostatic_step_with_charge_and_voltage_cutoffs_byte_exact() -> None:
    step = ConstantCurrent(
        current=-5e-4, limits=Limits(max_charge=1.8, voltage_below=-1.0, max_time=10800), sample_period=10
    )
    plan = ES4.compile(step)
    assert plan.text() == CP_SCRIPT
    # The charge limit is the loop's run time Q/|I| (3600 s < 10800 s): a natural end is CHARGE.
    assert plan.run_time == pytest.approx(3600.0)
    assert plan.natural_reason is EndReason.CHARGE
    # Everything is enforced on the instrument: nothing is left for the host.
    assert plan.host_limits == Limits()
    assert plan.technique == "cp" and not plan.keeps_cell_on


def test_time_limited_galvanostatic_step_ends_by_time() -> None:
    plan = ES4.compile(ConstantCurrent(current=1e-3, limits=Limits(max_charge=100.0, max_time=60.0)))
    assert plan.run_time == 60.0 and plan.natural_reason is EndReason.TIME


def test_potentiostatic_hold_current_cutoffs_and_host_steadiness() -> None:
    step = ConstantVoltage(
        voltage=0.01,
        vs_ocv=True,
        limits=Limits(max_time=3600, current_below=1e-6, current_above=2e-3, steady_slope=1e-9, max_charge=0.5),
    )
    plan = ES4.compile(step, ocv_ref=0.00123)
    lines = [line.strip() for line in plan.lines]
    assert "set_e 11230u" in lines and "meas_loop_ca ew iw 11230u 1 3600" in lines
    body = "\n".join(lines[lines.index("meas_loop_ca ew iw 11230u 1 3600") :])
    # |I| below: both bounds nested; |I| above: either sign.
    assert "if iw <= 1u\nif iw >= -1u\nstore_var code 3i ja\nbreakloop\nendif\nendif" in body
    assert "if iw >= 2m\nstore_var code 4i ja\nbreakloop\nendif" in body
    assert "if iw <= -2m\nstore_var code 4i ja\nbreakloop\nendif" in body
    # Steadiness and a potentiostatic charge are the host's.
    assert plan.host_limits == Limits(steady_slope=1e-9, max_charge=0.5)
    # The hold is kept after the script (no cell_off): an EIS under the same bias continues it.
    assert "on_finished:" not in lines and plan.keeps_cell_on
    assert plan.set_potential == pytest.approx(0.01123)


def test_hold_vs_ocv_without_a_reference_measures_it_on_the_instrument() -> None:
    plan = ES4.compile(ConstantVoltage(voltage=0.01, vs_ocv=True, limits=Limits(max_time=600)))
    lines = [line.strip() for line in plan.lines]
    start = lines.index("meas_loop_ocp ocp 100m 500m")
    assert lines[start - 1] == "cell_off"
    after = lines[lines.index("endloop", start) + 1 :]
    assert after[:4] == ["copy_var ocp edc", "add_var edc 10m", "set_e edc", "cell_on"]
    assert "meas_loop_ca ew iw edc 1 599500m" in lines  # the OCP time comes off the run time
    assert plan.pre_ocp and plan.ocv_offset == 0.01 and plan.set_potential is None


def test_sweep_from_ocv_with_current_cutoff() -> None:
    step = VoltageSweep(start="ocv", stop=5.0, rate=1e-3, sample_period=1.0, limits=Limits(current_above=5e-3))
    plan = ES4.compile(step)
    lines = [line.strip() for line in plan.lines]
    assert "set_e ocp" in lines and "meas_loop_lsv ew iw ocp 5 1m 1m" in lines
    assert lines[-2:] == ["on_finished:", "cell_off"]
    assert plan.natural_reason is EndReason.COMPLETED and plan.pre_ocp


def test_sweep_time_limit_uses_the_timer() -> None:
    plan = ES4.compile(VoltageSweep(start=3.0, stop=4.0, rate=1e-3, limits=Limits(max_time=100)))
    assert "if tm >= 100" in [line.strip() for line in plan.lines]
    assert plan.host_limits.max_time is None


def test_rest_is_an_ocp_loop_with_the_cell_off() -> None:
    plan = ES4.compile(Rest(duration=60, sample_period=1, limits=Limits(voltage_above=1.0, max_time=30)))
    lines = [line.strip() for line in plan.lines]
    assert lines[lines.index("timer_start") - 1] == "cell_off"
    assert "meas_loop_ocp ew 1 30" in lines and "if ew >= 1" in lines
    assert plan.natural_reason is EndReason.TIME  # 30 s < the 60 s duration
    assert ES4.compile(Rest(duration=60)).natural_reason is EndReason.COMPLETED


def test_impedance_at_ocp_and_under_bias() -> None:
    at_ocp = ES4.compile(Impedance(f_start=1e5, f_stop=0.1, points_per_decade=10, amplitude=0.01))
    lines = [line.strip() for line in at_ocp.lines]
    assert "meas_loop_eis fr zr zi 10m 100k 100m 61i edc" in lines
    assert lines.index("set_pgstat_mode 3") > lines.index("copy_var ocp edc")
    assert not at_ocp.keeps_cell_on and lines[-1] == "cell_off"
    biased = ES4.compile(Impedance(f_start=1e5, f_stop=0.1, amplitude=0.01, bias=0.01), ocv_ref=0.002)
    lines = [line.strip() for line in biased.lines]
    assert "meas_loop_eis fr zr zi 10m 100k 100m 61i 12m" in lines
    assert biased.keeps_cell_on and "on_finished:" not in lines and not biased.pre_ocp


def test_a_continued_sweep_skips_the_measured_points() -> None:
    step = Impedance(f_start=1e5, f_stop=0.1, points_per_decade=10, skip_points=20)
    lines = [line.strip() for line in ES4.compile(step).lines]
    assert "meas_loop_eis fr zr zi 10m 1k 100m 41i edc" in lines  # two decades done


def test_galvanostatic_impedance_on_the_nexus() -> None:
    plan = Compiler(NEXUS).compile(Impedance(mode="galvanostatic", amplitude=1e-5, bias=0.0))
    lines = [line.strip() for line in plan.lines]
    assert "meas_loop_geis fr zr zi 10u 100k 100m 61i 0" in lines and "set_pgstat_mode 6" in lines


def test_pico_has_no_galvanostat_and_a_narrow_window() -> None:
    pico = Compiler(EMSTAT_PICO)
    with pytest.raises(CompileError, match="no galvanostat"):
        pico.compile(ConstantCurrent(current=1e-4, limits=Limits(max_time=10)))
    with pytest.raises(CompileError, match="no galvanostatic impedance"):
        pico.compile(Impedance(mode="galvanostatic"))
    with pytest.raises(CompileError, match="outside"):
        pico.compile(VoltageSweep(start="ocv", stop=5.0))
    with pytest.raises(CompileError, match="exceeds"):
        ES4.compile(ConstantCurrent(current=0.5, limits=Limits(max_time=10)))


STEPS = [
    Rest(duration=10),
    ConstantCurrent(current=1e-4, limits=Limits(max_time=60, voltage_above=1.0, voltage_below=-1.0)),
    ConstantVoltage(voltage=0.5, limits=Limits(max_time=60, current_below=1e-6, current_above=1e-2)),
    ConstantVoltage(voltage=0.01, vs_ocv=True, limits=Limits(steady_slope=1e-9)),
    VoltageSweep(start="ocv", stop=4.0, limits=Limits(current_above=1e-3, voltage_above=3.9, max_time=10)),
    VoltageSweep(start=0.0, stop=-1.0, rate=1e-2),
    Impedance(),
    Impedance(bias=0.01, limits=Limits(max_time=100)),
    Impedance(mode="galvanostatic", bias=1e-4, amplitude=1e-5),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.kind)
def test_every_compiled_script_parses(step) -> None:
    program = parse_script(list(ES4.compile(step).lines))
    loops = [n for n in program.main if isinstance(n, Block) and n.head.name.startswith("meas_loop_")]
    assert loops, "one measurement loop at least"
    assert {"code", "tm"} <= program.variables


# --- the parser --------------------------------------------------------------------------


def test_parser_builds_blocks_and_on_finished() -> None:
    program = parse_script(
        [
            "var a  # a comment",
            "store_var a 1i ja",
            "loop a < 5i",
            "  add_var a 1i",
            "  if a == 3i",
            "    breakloop",
            "  elseif a > 10",
            "    abort",
            "  else",
            "    wait 1m",
            "  endif",
            "endloop",
            "on_finished:",
            "cell_off",
        ]
    )
    loop = program.main[2]
    assert isinstance(loop, Block) and loop.head.name == "loop"
    branch = loop.body[1]
    assert isinstance(branch, Block) and [h.name for h, _ in branch.branches] == ["elseif", "else"]
    assert [c.name for c in program.on_finished] == ["cell_off"]


@pytest.mark.parametrize(
    ("lines", "line", "column", "match"),
    [
        (["var a", "frobnicate a"], 2, 1, "unknown command"),
        (["store_var b 1 ja"], 1, 1, "not declared"),
        (["var a", "  set_e 1.5"], 2, 3, "not a number"),
        (["var a", "loop a < 1", "endif"], 3, 1, "ends a loop"),
        (["var a", "if a < 1"], 2, 1, "never closed"),
        (["breakloop"], 1, 1, "outside a loop"),
        (["var e", "var i", "meas_loop_ocp e 1 1", "meas_loop_ocp e 1 1", "endloop", "endloop"], 4, 1, "nested"),
        (["var a", "if a <> 1", "endif"], 2, 1, "op in"),
        (["var var"], 1, 1, "not a valid variable name"),
        (["set_e"], 1, 1, "takes 1 arguments"),
        (["else"], 1, 1, "outside an if"),
    ],
)
def test_parser_errors_point_at_line_and_column(lines, line, column, match) -> None:
    with pytest.raises(ScriptSyntaxError, match=match) as info:
        parse_script(lines)
    assert (info.value.line, info.value.column, info.value.code) == (line, column, 0x4001)
