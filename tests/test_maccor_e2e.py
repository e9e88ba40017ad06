"""Maccor MacNet end to end: Engine → MaccorChannel (direct mode, labctl's step logic)
→ JSON-RPC over TCP → MacNet emulator → cell physics.

Two channels run a CC-CV cycle at once, each in its own thread and run file.
Checked: every reading in the run file is one the emulated cycler stored (its data
file, at the same instant), stamped with the instrument's test time (one offset
for the whole run); the cutoffs end the steps; a dropped link is reconnected
and the gap is recorded; each fault ends the job on its channel with a clear
reason and the channel off, while the other channel completes untouched.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from drivers.maccor.channel import create
from drivers.sim import SimParams
from drivers.sim.wire.maccor_macnet import serve
from labctl.clock import VirtualClock
from labctl.engine import RunState
from labctl.storage import open_run
from tests.cycler_runs import BlockCounter, fault_ends_only_its_channel, run_channels

pytestmark = pytest.mark.timeout(120)

A, B = "1", "2"


def start(names: list[str]) -> tuple[object, dict[str, VirtualClock]]:
    clocks = {n: VirtualClock() for n in names}
    server = serve(SimParams(), channels=4, channel_clocks={int(n) - 1: c for n, c in clocks.items()})
    return server, clocks


def factory(server: object):
    def make(name: str, clock: VirtualClock):
        opts = {"channel": name, "timeout": 2.0, "reconnect_attempts": 2, "reconnect_wait": 1.0, "data_time": 30}
        return create(server.resource, opts, clock)  # type: ignore[attr-defined]

    return make


def check_readings(server: object, name: str, path: Path, reconnects: int = 0) -> np.ndarray:
    """The run file holds exactly the readings the cycler sent for this job, in order,
    each at the cycler's test time (run time = the cycler's clock − one offset for the
    whole run); every one made between records is itself a record of the data file
    except the first after a reconnection (an off-grid instant)."""
    chan = int(name) - 1
    served = server.model.served[chan]  # type: ignore[attr-defined]
    with open_run(path) as rf:
        data = rf.samples()
    assert len(data) == len(served) > 100
    assert np.array_equal(data["E"], [r["Voltage"] for r in served])
    assert np.array_equal(data["I"], [r["Current"] for r in served])
    offset = np.array([r["clock"] for r in served]) - data["t"]
    assert np.ptp(offset) < 1e-6, "time stamps must be the instrument's (one offset for the whole run)"
    records = {round(r.voltage, 12) for test in server.cell(chan).tests for r in test}  # type: ignore[attr-defined]
    unrecorded = sum(round(float(e), 12) not in records for e in data["E"])
    assert unrecorded == reconnects
    return data


def test_two_channels_complete_a_cycle_and_a_dropped_link_is_reconnected(tmp_path: Path) -> None:
    server, clocks = start([A, B])
    counters = {A: BlockCounter(), B: BlockCounter()}
    try:
        server.inject(0, "drop-link", after=40)  # type: ignore[attr-defined]  # in the CC charge
        runs = run_channels(factory(server), [A, B], clocks, tmp_path, sinks=lambda n: [counters[n]])
        for name, run in runs.items():
            assert run.outcome.status == RunState.COMPLETED, run.outcome.error
            res = run.outcome.results
            assert res["ends"] == ["voltage_above", "current_below", "voltage_below"]
            assert 0.95 < res["discharge_C"] / res["charge_C"] <= 1.0
            data = check_readings(server, name, run.path, reconnects=run.channel.reconnects)
            steps = np.diff(data["t"])
            allowed = 30.0 + 0.1 + 1e-6 + (1.0 if name == A else 0.0)  # a poll, a command gap, a reconnection
            assert steps.max() <= allowed
            assert counters[name].blocks[1] > 10, "the run file fills live"
            cell = server.cell(int(name) - 1)  # type: ignore[attr-defined]
            assert cell.status == "finish" and not cell.output_on  # reset by the safe state
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


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("no-reply", r"no reply to \(4, 7\)"),
        ("garbled", r"(does not parse|incomplete reply|not its answer)"),
        ("drop-link", r"link lost, 2 reconnections failed"),
        ("alarm", r"suspended by the cycler \(safety limit or alarm"),
    ],
)
def test_a_fault_ends_the_job_on_its_channel_only(tmp_path: Path, kind: str, reason: str) -> None:
    server, clocks = start([A, B])
    try:
        check = partial(check_readings, server)
        fault_ends_only_its_channel(
            server, factory(server), clocks, tmp_path, kind=kind, reason=reason, after=30, check_other=check
        )
    finally:
        server.stop()  # type: ignore[attr-defined]
