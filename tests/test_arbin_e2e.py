"""Arbin CTI end to end: Engine → ArbinChannel (labctl's step logic, set points as meta
variables of the control schedule) → binary CTI over TCP → MITS Pro emulator → cell physics.

Two channels run a CC-CV cycle at once, each in its own thread and run file. Checked: every
reading in the run file is one the emulated cycler sent (same voltage, current, and time:
the instrument's test time, one offset for the whole run), the charge is the cycler's
capacity counters' difference, the cutoffs end the steps, a dropped link is reconnected
and its gap written into its step's end message, and each fault ends the job on its
channel with a clear reason and the channel off while the other channel completes.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from drivers.arbin.channel import create
from drivers.sim import SimParams
from drivers.sim.wire.arbin_cti import serve
from labctl.clock import VirtualClock
from labctl.engine import RunState
from labctl.storage import open_run
from tests.cycler_runs import BlockCounter, fault_ends_only_its_channel, run_channels

pytestmark = pytest.mark.timeout(120)

A, B = "1", "2"


class InstrumentClock:
    """The cycler's own clock: driven by the driver's VirtualClock (lockstep) but running
    0.01 % fast, so a time stamp taken from the host's clock instead of the instrument's
    test time would drift away from the cycler's by seconds over a cycle."""

    def __init__(self, host: VirtualClock) -> None:
        self.host = host

    def now(self) -> float:
        return self.host.now() * 1.0001


def start(names: list[str]) -> tuple[object, dict[str, VirtualClock]]:
    clocks = {n: VirtualClock() for n in names}
    own = {int(n) - 1: InstrumentClock(c) for n, c in clocks.items()}
    server = serve(SimParams(), channels=4, record_period=30, channel_clocks=own)  # type: ignore[arg-type]
    return server, clocks


def factory(server: object):
    def make(name: str, clock: VirtualClock):
        opts = {"channel": name, "timeout": 2.0, "reconnect_attempts": 2, "reconnect_wait": 1.0}
        return create(server.resource, opts, clock)  # type: ignore[attr-defined]

    return make


def check_readings(server: object, name: str, path: Path) -> np.ndarray:
    """The run file holds the readings the cycler sent for this job, in order, except one per
    step (the step's first channel info, its charge baseline), each at the cycler's test
    time (run time = the cycler's clock − one offset for the whole run)."""
    chan = int(name) - 1
    served = server.model.served[chan]  # type: ignore[attr-defined]
    with open_run(path) as rf:
        data = rf.samples()
        steps = len(rf.steps)
    assert len(data) > 100
    j, skipped, clocks = 0, 0, []
    for row in data:
        while (float(np.float32(served[j]["voltage"])), float(np.float32(served[j]["current"]))) != (
            float(row["E"]),
            float(row["I"]),
        ):
            skipped, j = skipped + 1, j + 1
        clocks.append(served[j]["clock"])
        j += 1
    assert skipped + len(served) - j == steps, "every reading sent is in the file, but the baselines"
    offset = np.array(clocks) - data["t"]
    assert np.ptp(offset) < 1e-6, "time stamps must be the instrument's (one offset for the whole run)"
    return data


def test_two_channels_complete_a_cycle_and_a_dropped_link_is_reconnected(tmp_path: Path) -> None:
    server, clocks = start([A, B])
    counters = {A: BlockCounter(), B: BlockCounter()}
    try:
        server.inject(0, "drop-link", after=60)  # type: ignore[attr-defined]  # in the CC charge
        runs = run_channels(factory(server), [A, B], clocks, tmp_path, sinks=lambda n: [counters[n]])
        for name, run in runs.items():
            assert run.outcome.status == RunState.COMPLETED, run.outcome.error
            res = run.outcome.results
            assert res["ends"] == ["voltage_above", "current_below", "voltage_below"]
            assert 0.95 < res["discharge_C"] / res["charge_C"] <= 1.0
            cell = server.cell(int(name) - 1)  # type: ignore[attr-defined]
            data = check_readings(server, name, run.path)
            steps = np.diff(data["t"])
            allowed = 30.0 + 4 * 0.2 + 1e-6 + (1.0 if name == A else 0.0)  # a poll, MV writes, a reconnection
            assert steps.max() <= allowed
            assert counters[name].blocks[1] > 10, "the run file fills live"
            assert cell.status == "finish" and not cell.output_on  # stopped by the safe state
        assert runs[A].channel.reconnects == 1 and len(runs[A].channel.gaps) == 1
        (lost, back), messages = runs[A].channel.gaps[0], [s.message for s in runs[A].outcome.steps]
        with open_run(runs[A].path) as rf:
            assert [s.message for s in rf.steps] == messages  # the file says it too
        noted = [m for m in messages if "no readings from" in m]
        assert len(noted) == 1 and f"from {lost:.1f} to {back:.1f} s (link down" in noted[0], messages
        assert not any("no readings" in s.message for s in runs[B].outcome.steps)
        assert runs[B].channel.reconnects == 0 and runs[B].channel.gaps == []
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_a_link_dropped_while_setting_a_step_is_reconnected_and_the_step_still_applied(tmp_path: Path) -> None:
    """Feedbacks about channel 1: assign, start, MV_UD5..7, the first rest's UD1 and UD4, its
    baseline and two polls, then the CC charge's UD2, UD3, UD1 (the 13th: dropped), UD4. The
    driver reconnects, writes UD1 again (a repeated MV changes nothing) and the cycle completes."""
    server, clocks = start([A])
    try:
        server.inject(0, "drop-link", after=12)  # type: ignore[attr-defined]
        run = run_channels(factory(server), [A], clocks, tmp_path)[A]
        assert run.outcome.status == RunState.COMPLETED, run.outcome.error
        assert run.outcome.results["ends"] == ["voltage_above", "current_below", "voltage_below"]
        assert run.channel.reconnects == 1 and len(run.channel.gaps) == 1
        messages = [s.message for s in run.outcome.steps]
        assert "no readings from" in messages[1] and sum("no readings" in m for m in messages) == 1, messages
        check_readings(server, A, run.path)
    finally:
        server.stop()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("no-reply", r"no feedback to channel_info"),
        ("garbled", r"feedback to channel_info is garbled"),
        ("drop-link", r"link lost, 2 reconnections failed"),
        ("alarm", r"stopped by the cycler as Unsafe \(safety limit or alarm\)"),
    ],
)
def test_a_fault_ends_the_job_on_its_channel_only(tmp_path: Path, kind: str, reason: str) -> None:
    server, clocks = start([A, B])
    try:
        check = partial(check_readings, server)
        fault_ends_only_its_channel(
            server, factory(server), clocks, tmp_path, kind=kind, reason=reason, after=40, check_other=check
        )
    finally:
        server.stop()  # type: ignore[attr-defined]


def test_formation_through_the_driver_recovers_the_simulated_truth() -> None:
    """A full-cell formation (2 CC-CV cycles at C/2) through driver + emulator, over draws of
    the cell's truth (areal capacity, charging CE): the specific capacity is the one the
    simulator itself measures for that cell within 0.1 % (the step logic on polled float32
    readings and the capacity baselines cost less), and the first-cycle CE is the true CE
    within 0.001."""
    from drivers.sim import SimChannel
    from labctl.cathode import CathodeSpec
    from labctl.engine import Engine
    from labctl.protocol import Cell
    from labctl.registry import get_protocol

    cell = Cell("full", 1.0, 80.0, cathode=CathodeSpec("nmc", 10.5, 175.0, 3.0, 4.3))
    formation = get_protocol("formation")
    values = {"cycles": 2, "c_rate": 0.5}
    rng = np.random.default_rng(12)
    for _ in range(3):
        truth = SimParams(capacity=float(rng.uniform(1.5, 2.5)), ce_full=float(rng.uniform(0.99, 0.999)))
        sim = Engine(SimChannel(truth, "full", VirtualClock()), sinks=[]).run(formation, values, cell)
        clock = VirtualClock()
        server = serve(truth, channels=1, record_period=10, channel_clocks={0: clock})
        try:
            opts = {"channel": "1", "max_current": 0.01, "voltage_min": 1.5, "voltage_max": 4.5}
            got = Engine(create(server.resource, opts, clock), sinks=[]).run(formation, values, cell)
        finally:
            server.stop()
        assert sim.status == got.status == RunState.COMPLETED, got.error
        what = (truth.capacity, truth.ce_full)
        assert got.results["capacity_mAh_g"] == pytest.approx(sim.results["capacity_mAh_g"], rel=1e-3), what
        assert got.results["first_cycle_ce"] == pytest.approx(truth.ce_full, abs=1e-3), what
