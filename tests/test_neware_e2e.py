"""Neware BTS end to end: Engine → NewareChannel → TCP → BTS server emulator → cell physics.

Two channels of one BTS server run a CC-CV cycle at once, each in its own thread
with its own run file (as the queue runs them). Checked: every record the
emulated cycler stored is in the run file, once, with the cycler's own time
stamps (a constant offset between the instrument clock and run time); the run
file filled live; a link dropped in the middle of a step comes back and the gap
is downloaded; each fault ends the job on its channel with a clear reason and
the channel off, while the other channel completes untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drivers.neware.channel import create
from drivers.sim import SimParams
from drivers.sim.wire.neware_bts import serve
from labctl.clock import VirtualClock
from labctl.engine import RunState
from labctl.storage import open_run
from tests.cycler_runs import BlockCounter, run_channels

pytestmark = pytest.mark.timeout(120)

A, B = "27-1-1", "27-1-2"


def start(tmp_path: Path, names: list[str]) -> tuple[object, dict[str, VirtualClock]]:
    clocks = {n: VirtualClock() for n in names}
    server = serve(SimParams(), channels=4, channel_clocks=clocks)  # type: ignore[arg-type]
    return server, clocks


def factory(server: object, tmp_path: Path, **extra: object):
    def make(name: str, clock: VirtualClock):
        opts = {"channel": name, "timeout": 2.0, "reconnect_attempts": 2, "reconnect_wait": 1.0}
        opts["step_dir"] = str(tmp_path)
        return create(server.resource, {**opts, **extra}, clock)  # type: ignore[attr-defined]

    return make


def check_complete(server: object, name: str, path: Path) -> None:
    """Every record of every test the cycler ran for this job is in the run file, once,
    stamped with the instrument's time (run time = instrument time − one offset)."""
    cell = server.cell(name)  # type: ignore[attr-defined]
    with open_run(path) as rf:
        data = rf.samples()
        steps = rf.steps
    assert len(cell.tests) == len(steps) == 5
    records = [r for test in cell.tests for r in test]
    assert len(data) == len(records)
    assert np.array_equal(np.round(data["E"], 6), np.round([r.voltage for r in records], 6))
    assert np.allclose(data["I"], [r.current for r in records], atol=1e-8)
    offset = np.array([r.abs_time for r in records]) - data["t"]
    assert np.ptp(offset) < 2e-3, "time stamps must be the instrument's (one offset for the whole run)"
    assert np.all(np.diff(data["t"]) >= 0)


def test_two_channels_complete_a_cycle_with_every_record_and_a_link_drop_healed(tmp_path: Path) -> None:
    server, clocks = start(tmp_path, [A, B])
    counters = {A: BlockCounter(), B: BlockCounter()}
    try:
        server.inject(A, "drop-link", after=12)  # type: ignore[attr-defined]  # in the CC charge
        runs = run_channels(factory(server, tmp_path), [A, B], clocks, tmp_path, sinks=lambda n: [counters[n]])
        for name, run in runs.items():
            assert run.outcome.status == RunState.COMPLETED, run.outcome.error
            res = run.outcome.results
            assert res["ends"] == ["voltage_above", "current_below", "voltage_below"]
            assert 0.95 < res["discharge_C"] / res["charge_C"] <= 1.0
            check_complete(server, name, run.path)
            for k in (1, 4):  # CC charge and discharge: the cycler's capacity, signed, in C
                d = run.outcome.steps[k].data
                assert d["Q"][-1] == pytest.approx(np.trapezoid(d["I"], d["t"]), rel=1e-3)
            cv = run.outcome.steps[2].data  # a decaying current: the trapezoid overestimates
            assert 0.95 * np.trapezoid(cv["I"], cv["t"]) < cv["Q"][-1] < np.trapezoid(cv["I"], cv["t"])
            assert counters[name].blocks[1] > 10, "the CC step must reach the run file in many blocks (live)"
            assert not server.cell(name).output_on  # type: ignore[attr-defined]
        assert runs[A].channel.reconnects >= 1 and runs[B].channel.reconnects == 0
        assert not list(tmp_path.glob("*.xml")), "step files are removed once their test ended"
    finally:
        server.stop()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "after", "reason"),
    [
        ("no-reply", 10, r"no reply to (inquire|download)"),
        ("garbled", 10, r"(does not parse|unterminated reply)"),
        ("drop-link", 10, r"link lost, 2 reconnections failed"),
        ("alarm", 10, r"alarm \(.*\); the cycler stopped the test"),
    ],
)
def test_a_fault_ends_the_job_on_its_channel_only(tmp_path: Path, kind: str, after: int, reason: str) -> None:
    server, clocks = start(tmp_path, [A, B])
    try:
        if kind == "drop-link":
            for _ in range(3):  # longer than the driver's 2 reconnections, then the link is back
                server.inject(A, kind, after=after)  # type: ignore[attr-defined]
                after = 0
        else:
            server.inject(A, kind, after=after)  # type: ignore[attr-defined]
        runs = run_channels(factory(server, tmp_path), [A, B], clocks, tmp_path)
        failed = runs[A].outcome
        assert failed.status == RunState.FAILED
        assert failed.error is not None
        import re

        assert re.search(reason, failed.error), failed.error
        cell = server.cell(A)  # type: ignore[attr-defined]
        assert cell.status in ("stop", "protect") and not cell.output_on, "the faulty channel must be off"
        with open_run(runs[A].path) as rf:
            assert rf.status == "failed" and re.search(reason, rf.error)
        assert runs[B].outcome.status == RunState.COMPLETED, runs[B].outcome.error
        check_complete(server, B, runs[B].path)
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_pause_stops_the_test_and_resume_runs_the_rest_of_the_step(tmp_path: Path) -> None:
    """Pause in a CC step: the cycler's test is stopped (output off); resume starts a new
    test with what is left of the step (the charge limit goes forward, never replays)."""
    import threading
    import time

    from labctl.engine import Engine
    from labctl.events import Samples
    from labctl.params import Param
    from labctl.protocol import Cell, Protocol
    from labctl.steps import ConstantCurrent, Limits

    def plan(values, cell):  # a protocol generator
        step = yield ConstantCurrent(current=1e-3, limits=Limits(max_charge=3.0, max_time=20000), sample_period=30)
        return {"charge": step.charge, "end_reason": step.end_reason.value}

    proto = Protocol(
        name="charge",
        version="1",
        title="charge",
        cell_type="full",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"ConstantCurrent"}),
    )
    clock = VirtualClock()
    with serve(SimParams(), clock=clock, channels=1) as server:
        channel = create(server.resource, {"channel": A, "timeout": 2, "step_dir": str(tmp_path)}, clock)
        engine = Engine(channel)
        paused = threading.Event()

        class PauseOnce:
            def handle(self, event: object) -> None:
                if isinstance(event, Samples) and len(event.block) and not paused.is_set():
                    paused.set()
                    engine.request_pause()

        engine.sinks.insert(0, PauseOnce())
        handle = engine.start(proto, {"x": 1.0}, Cell("full", 1.0, 100.0))
        assert paused.wait(60.0)
        deadline = time.monotonic() + 60.0
        while handle.state != RunState.PAUSED and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        cell = server.cell(A)
        held = (cell.status, cell.output_on)
        handle.resume()
        outcome = handle.wait(120.0)
    assert held == ("stop", False)
    assert outcome is not None and outcome.status == RunState.COMPLETED, outcome
    assert outcome.results["end_reason"] == "charge"
    assert len(cell.tests) == 2  # the rest of the step was a second test
    # the charge limit is checked on the records (not in a step file): one record period late at most
    assert 3.0 <= outcome.results["charge"] <= 3.0 + 1e-3 * 30 + 1e-9
