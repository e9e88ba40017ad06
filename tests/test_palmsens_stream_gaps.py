"""No silent data loss on MethodSCRIPT: a line the serial link loses or corrupts is
recorded, as a warning with its count in a time-limited hold, as an
``instrument_fault`` (and a failed run) where the data cannot do without it.

End to end: the real driver, the engine and a run file, against the pty emulator
with its transport faults armed at a chosen reply. Driver and emulator share one
``VirtualClock`` (lockstep), so which line is lost, and the cell time of every
sample, do not depend on the host's speed."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.palmsens import create_emstat4
from drivers.palmsens.models import EMSTAT4_HR
from drivers.palmsens.script import Compiler
from drivers.palmsens.stream_check import LostData, StreamCheck
from drivers.sim import SimParams
from drivers.sim.wire.emstat import serve_emstat4
from drivers.sim.wire.faults import FaultPlan
from labctl.clock import VirtualClock
from labctl.engine import Engine, RunOutcome, RunState
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Impedance, Limits, Step, VoltageSweep
from labctl.storage import RunFileWriter, open_run

pytestmark = pytest.mark.timeout(120)

HOLD = ConstantVoltage(voltage=0.01, limits=Limits(max_time=100.0), sample_period=1.0)


def one_step(step: Step) -> Protocol:
    def plan(values: Any, cell: Cell) -> Generator[Step, Any, dict[str, Any]]:
        result = yield step
        return {"n": len(result.data), "message": result.message}

    return Protocol(
        name="one_step",
        version="1",
        title="one step",
        cell_type="li_li",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({step.kind}),
    )


@dataclass
class Ran:
    outcome: RunOutcome
    file_status: str
    file_steps: list[tuple[str, str, int]]  # (end_reason, message, rows) as the run file has them
    cell_on: bool


def run_step(
    tmp_path: Path, step: Step, arm: Callable[[Any, int, Any], None] | None = None, cell_type: str = "li_li"
) -> Ran:
    """Run ``step`` alone; ``arm(faults, base, server)`` arms faults, ``base`` being the
    reply count when the engine starts."""
    clock = VirtualClock()
    with serve_emstat4(SimParams(), clock=clock, cell_type=cell_type) as server:
        channel = create_emstat4(server.resource, {"timeout": 5.0}, clock)
        channel.open()
        base = server.faults.sends
        if arm is not None:
            arm(server.faults, base, server)
        path = tmp_path / f"run-{base}-{id(arm)}.h5"
        writer = RunFileWriter(path)
        try:
            outcome = Engine(channel, sinks=[writer]).run(one_step(step), {"x": 1.0}, Cell(cell_type, 1.0, 100.0))
        finally:
            writer.close()
        assert server.device.wait_idle(10.0)
        cell_on = server.device.cell_on
    with open_run(path) as rf:
        status = rf.status
        steps = [
            (str(s.end_reason), s.message, len(s.spectrum) if s.spectrum is not None else s.n_rows) for s in rf.steps
        ]
    return Ran(outcome, status, steps, cell_on)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> int:
    """The reply number (counted from the engine's start) of a step's first data packet:
    after the engine's opening exchanges, the script's 'e' and the loop's 'M....' line.
    Learnt from a fault-free run with a probe on the emulator's replies, so the tests
    lose exactly the line they mean whatever the engine exchanges before the step."""
    seen: list[int] = []

    def probe(faults: Any, base: int, server: Any) -> None:
        def look() -> bool:
            if server.device.packets_sent == 1 and not seen:  # this send carries packet 1
                seen.append(faults.sends - 1 - base)
            return False  # never "took effect": called again at every reply

        faults.arm(FaultPlan("instrument-error", "always"), look)

    run_step(tmp_path_factory.mktemp("probe"), HOLD, probe)
    assert seen, "the probe never saw a data packet"
    return seen[0]


def data_reply(k: int, first: int) -> Callable[[Any, int, Any], None]:
    """Lose the reply that carries the k-th data packet (0-based) of the step."""

    def arm(faults: Any, base: int, server: Any) -> None:
        faults.arm(FaultPlan("no-reply", "reply", float(base + first + k)))

    return arm


def test_the_first_data_reply_is_where_the_tests_think(tmp_path: Path, first: int) -> None:
    """Losing data packet k of a 1 s hold makes a 2 s gap after script time k - 1."""
    ran = run_step(tmp_path, HOLD, data_reply(10, first))
    assert "between samples: 2 s gap at script time 9 s" in ran.outcome.results["message"]


@pytest.mark.parametrize("k", [3, 37, 71, 98])
def test_a_lost_sample_in_a_timed_hold_is_a_warning_with_its_count(tmp_path: Path, k: int, first: int) -> None:
    ran = run_step(tmp_path, HOLD, data_reply(k, first))
    assert ran.outcome.status is RunState.COMPLETED, ran.outcome.error
    assert ran.outcome.results["n"] == 100  # 101 samples on 0..100 s, one lost
    step_reason, message, rows = ran.file_steps[-1]
    assert step_reason == "time" and rows == 100
    assert "data loss: 1 sample lost" in message and f"script time {k - 1} s" in message
    assert ran.outcome.steps[-1].message == message  # the same warning in the result and the file


def test_several_lost_samples_are_all_counted(tmp_path: Path, first: int) -> None:
    def arm(faults: Any, base: int, server: Any) -> None:
        for k in (20, 21, 22, 60):
            faults.arm(FaultPlan("no-reply", "reply", float(base + first + k)))

    ran = run_step(tmp_path, HOLD, arm)
    assert ran.outcome.status is RunState.COMPLETED
    assert ran.outcome.results["n"] == 97
    assert "data loss: 4 samples lost" in ran.file_steps[-1][1]
    assert "4 s gap at script time 19 s" in ran.file_steps[-1][1]


def test_a_fault_free_hold_has_no_warning(tmp_path: Path) -> None:
    ran = run_step(tmp_path, HOLD)
    assert ran.outcome.results["n"] == 101
    assert "data loss" not in ran.file_steps[-1][1]


def test_a_lost_sample_in_a_cutoff_controlled_loop_is_an_instrument_fault(tmp_path: Path, first: int) -> None:
    """Plating until a voltage cutoff: the lost line could have been the one that met
    it; the step ends instrument_fault, the run fails saying why, the cell is off."""
    plate = ConstantCurrent(
        current=-1e-3, limits=Limits(max_time=200.0, voltage_below=-5.0, voltage_above=5.0), sample_period=1.0
    )
    ran = run_step(tmp_path, plate, data_reply(30, first))
    assert ran.outcome.status is RunState.FAILED
    assert "cp script lost data" in ran.outcome.error and "1 sample lost" in ran.outcome.error
    assert ran.file_status == "failed"
    reason, message, rows = ran.file_steps[-1]
    assert reason == EndReason.INSTRUMENT_FAULT.value and "lost data" in message
    assert rows == 31  # what did arrive is kept: samples 0..29 and 31
    assert not ran.cell_on


def test_a_skipped_impedance_point_is_an_instrument_fault(tmp_path: Path, first: int) -> None:
    eis = Impedance(f_start=1e5, f_stop=1.0, points_per_decade=5, bias_vs_ocv=False, bias=0.0)
    freqs = Compiler(EMSTAT4_HR).compile(eis).frequencies
    ok = run_step(tmp_path, eis, cell_type="ss")
    assert ok.outcome.status is RunState.COMPLETED, ok.outcome.error
    spectrum = ok.outcome.steps[-1].spectrum
    assert spectrum is not None and len(spectrum) == len(freqs) == 26
    ran = run_step(tmp_path, eis, data_reply(12, first), cell_type="ss")
    assert ran.outcome.status is RunState.FAILED
    assert f"skipped {freqs[12]:.6g} Hz" in ran.outcome.error
    reason, message, rows = ran.file_steps[-1]
    assert reason == "instrument_fault" and "1 impedance point lost" in message
    assert rows == 13  # the points that did arrive are kept (12 before the hole, 1 after)
    assert not ran.cell_on


def test_a_garbled_data_line_fails_the_run_and_says_so(tmp_path: Path, first: int) -> None:
    def arm(faults: Any, base: int, server: Any) -> None:
        faults.arm(FaultPlan("garbled", "reply", float(base + first + 40)))

    ran = run_step(tmp_path, HOLD, arm)
    assert ran.outcome.status is RunState.FAILED and "garbled reply" in ran.outcome.error
    reason, message, rows = ran.file_steps[-1]
    assert reason == "instrument_fault" and "garbled reply" in message
    assert rows == 40  # the samples before the garbled line are kept


# --- the check itself, on synthetic streams ------------------------------------------------
def check_for(step: Step) -> StreamCheck:
    return StreamCheck.for_plan(Compiler(EMSTAT4_HR).compile(step, ocv_ref=0.0))


@pytest.mark.parametrize("seed", range(5))
def test_gaps_are_counted_exactly_over_random_losses(seed: int) -> None:
    rng = np.random.default_rng(seed)
    check = check_for(HOLD)
    lost = set(rng.choice(np.arange(1, 100), size=int(rng.integers(1, 8)), replace=False).tolist())
    for k in range(101):
        if k not in lost:
            check.sample(float(k))
    check.end(natural=True)
    assert check.lost == len(lost)
    assert not check.strict and check.summary().startswith(f"data loss: {len(lost)} sample")


@pytest.mark.parametrize("first_at", ["start", "end"])
def test_trailing_loss_is_found_for_either_sampling_convention(first_at: str) -> None:
    """An instrument may sample at the start or the end of each interval."""
    offset = 0.0 if first_at == "start" else 1.0
    complete = check_for(HOLD)
    for k in range(101 if first_at == "start" else 100):
        complete.sample(offset + k)
    complete.end(natural=True)
    assert complete.lost == 0
    short = check_for(HOLD)
    for k in range(98 if first_at == "start" else 97):
        short.sample(offset + k)
    short.end(natural=True)
    assert short.lost == 3 and "after the last sample" in short.summary()


def test_a_sweep_short_of_its_end_lost_its_last_samples() -> None:
    sweep = VoltageSweep(start=3.0, stop=3.1, rate=1e-3, sample_period=1.0)  # 1 mV steps
    complete = check_for(sweep)
    for k in range(101):
        complete.sample(float(k), 3.0 + k * 1e-3)
    complete.end(natural=True)
    assert complete.lost == 0
    short = check_for(sweep)
    for k in range(96):
        short.sample(float(k), 3.0 + k * 1e-3)
    short.end(natural=True)  # no cutoff on this sweep: a warning
    assert short.lost == 5 and "sweep stopped at 3.095 V" in short.summary()


def test_a_lost_sweep_end_through_the_emulator_fails_the_run(tmp_path: Path, first: int) -> None:
    """The last data lines of a sweep (its highest potentials: the onset region) are lost.
    One lost end sample is within the tolerance (an instrument may stop one step short of
    the end potential: the check never invents a loss), three are not."""
    sweep = VoltageSweep(  # 51 samples, ended by a current cutoff if the cell ran away (as lsv's)
        start=0.0, stop=0.05, rate=1e-3, sample_period=1.0, limits=Limits(current_above=0.1)
    )
    ok = run_step(tmp_path, sweep)
    assert ok.outcome.status is RunState.COMPLETED, ok.outcome.error
    assert ok.outcome.results["n"] == 51

    def arm(faults: Any, base: int, server: Any) -> None:
        for k in (48, 49, 50):
            faults.arm(FaultPlan("no-reply", "reply", float(base + first + k)))

    ran = run_step(tmp_path, sweep, arm)
    assert ran.outcome.status is RunState.FAILED
    assert "3 samples lost" in ran.outcome.error and "sweep stopped at 0.047" in ran.outcome.error
    assert ran.file_steps[-1][0] == "instrument_fault" and not ran.cell_on


def test_a_loop_ended_by_a_cutoff_is_not_short() -> None:
    check = check_for(ConstantCurrent(current=1e-3, limits=Limits(max_time=100.0), sample_period=1.0))
    for k in range(40):
        check.sample(float(k))
    check.end(natural=False)
    assert check.lost == 0


def test_impedance_points_are_matched_to_the_sweep() -> None:
    eis = Impedance(f_start=1e5, f_stop=1.0, points_per_decade=5, bias_vs_ocv=False)
    check = check_for(eis)
    freqs = check.frequencies
    assert check.strict and len(freqs) == 26 and math.isclose(freqs[0], 1e5) and math.isclose(freqs[-1], 1.0)
    for f in freqs[:5]:
        check.point(f * 1.001)  # instruments round their frequencies a little
    with pytest.raises(LostData, match="skipped"):
        check.point(freqs[6])
    garbled = check_for(eis)
    with pytest.raises(LostData, match="not the next expected"):
        garbled.point(7.3e7)
    truncated = check_for(eis)
    for f in freqs[:-2]:
        truncated.point(f)
    with pytest.raises(LostData, match="missing the last"):
        truncated.end(natural=True)
