"""Faults injected into the MethodSCRIPT emulator while a protocol runs through the
real driver: no reply, a garbled reply, a dropped link, an instrument error code,
an overload (compliance), the port disappearing; plus user abort and pause. Each
must end the run with a clear recorded reason, the emulated cell off, no hang,
and a readable run file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.palmsens import create_emstat4
from drivers.sim import SimParams
from drivers.sim.wire.emstat import EmStatServer, serve_emstat4
from labctl import registry
from labctl.engine import Engine, RunHandle, RunOutcome, RunState
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.steps import ConstantCurrent, ConstantVoltage, Limits
from labctl.storage import RunFileWriter, open_run

pytestmark = pytest.mark.timeout(60)

CYCLING = ("cycling", {"cycles": "3", "half_cycle": "0.1"}, "li_li")


@dataclass
class Running:
    server: EmStatServer
    handle: RunHandle
    writer: RunFileWriter
    path: Path
    started: float

    def wait_packets(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.server.device.packets_sent < count:
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.005)

    def finish(self, timeout: float = 20.0) -> tuple[RunOutcome, dict[str, Any], list[tuple[str, str, str]], float]:
        outcome = self.handle.wait(timeout)
        wall = time.monotonic() - self.started
        assert outcome is not None, "the run hung"
        self.writer.close()
        self.server.faults.no_reply = 0
        self.server.faults.garble = 0
        self.server.device.wait_idle(5.0)
        with open_run(self.path) as run:
            meta = dict(run.meta)
            steps = [(s.kind, str(s.end_reason), s.message) for s in run.steps]
            assert run.status == outcome.status.value
            assert run.error == outcome.error
            assert run.n_samples > 0
        return outcome, meta, steps, wall


def start(
    tmp_path: Path,
    protocol: Protocol | tuple[str, dict[str, str], str] = CYCLING,
    speed: float = 200.0,
    options: dict[str, Any] | None = None,
) -> Running:
    if isinstance(protocol, tuple):
        name, params, cell_type = protocol
        proto = registry.get_protocol(name)
        values = proto.validate({**params, "area": "1", "thickness": "100"})
        cell = proto.resolve_cell(values, None)
    else:
        proto, values, cell_type, cell = protocol, {"x": 1.0}, "li_li", Cell("li_li", 1.0, 100.0)
    server = serve_emstat4(SimParams(), speed=speed, cell_type=cell_type)
    channel = create_emstat4(server.resource, {"clock_speed": speed, "timeout": 0.5, **(options or {})}, None)
    path = tmp_path / "run.h5"
    writer = RunFileWriter(path)
    handle = Engine(channel, sinks=[writer]).start(proto, values, cell)
    return Running(server, handle, writer, path, time.monotonic())


@pytest.fixture
def running(tmp_path: Path):
    runs: list[Running] = []

    def make(*args: Any, **kwargs: Any) -> Running:
        run = start(tmp_path, *args, **kwargs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.handle.abort("test teardown")
        run.handle.wait(10)
        run.server.stop()


def test_no_reply_times_out(running) -> None:
    run = running()
    run.wait_packets(20)
    run.server.faults.no_reply = 10**9  # the instrument goes silent
    outcome, _, steps, wall = run.finish()
    assert outcome.status is RunState.FAILED
    assert "no data for" in outcome.error and "during a cp script" in outcome.error
    assert "safe state failed" in outcome.error  # nothing confirmed the cell_off ...
    assert not run.server.device.cell_on  # ... but the instrument did switch off
    _kind, reason, message = steps[-1]  # the interrupted step is closed as a fault, with why
    assert reason == "instrument_fault" and "no data for" in message
    assert wall < 10


def test_garbled_reply_fails_the_run(running) -> None:
    run = running()
    run.wait_packets(20)
    run.server.faults.garble = 1
    outcome, _, _, _ = run.finish()
    assert outcome.status is RunState.FAILED
    assert "garbled reply from the EmStat4 HR" in outcome.error
    assert "safe state" not in outcome.error  # the link works: the safe state is confirmed
    assert not run.server.device.cell_on


def test_dropped_link_mid_step(running) -> None:
    run = running()
    run.wait_packets(20)
    run.server.faults.drop_after_sends = 3
    outcome, _, _, wall = run.finish()
    assert outcome.status is RunState.FAILED
    assert "no data for" in outcome.error and "link lost" in outcome.error
    assert not run.server.device.cell_on  # the instrument lost its host and switched off
    assert wall < 10


def test_instrument_error_code(running) -> None:
    run = running()
    run.wait_packets(20)
    run.server.device.inject_error(code=0x0032, after_packets=2)
    outcome, _, _, _ = run.finish()
    assert outcome.status is RunState.FAILED
    assert "instrument error 0032" in outcome.error and "cell severely overloaded" in outcome.error
    assert "meas_loop_cp" in outcome.error  # the script line that failed
    # A runtime error skips on_finished: the cell stayed on until the driver's safe state.
    assert not run.server.device.cell_on


def test_overload_is_a_compliance_end_reason(running) -> None:
    """A CCD half-cycle tripping the potential overload (the galvanostat at compliance)
    ends with COMPLIANCE; the protocol treats it as contact loss and stops."""
    run = running(("ccd", {"start": "0.5", "half_cycle": "0.05", "sample_period": "5"}, "li_li"))
    run.wait_packets(10)
    run.server.device.inject_overload(after_packets=3, quantity="potential")
    outcome, _, steps, _ = run.finish()
    assert outcome.status is RunState.COMPLETED
    kind, reason, message = steps[-1]
    assert (kind, reason) == ("ConstantCurrent", "compliance")
    assert "instrument overload on ab" in message
    assert outcome.results["contact_loss_index"] == len(steps) - 1 and outcome.results["ccd_mA_cm2"] is None
    assert not run.server.device.cell_on


def test_overload_as_an_error(running) -> None:
    run = running(options={"overload": "error"})
    run.wait_packets(20)
    run.server.device.inject_overload(after_packets=1)
    outcome, _, _, _ = run.finish()
    assert outcome.status is RunState.FAILED
    assert "instrument overload on ba" in outcome.error
    assert not run.server.device.cell_on


def test_port_disappearing_is_connection_lost(running) -> None:
    run = running()
    run.wait_packets(20)
    run.server.stop()  # the USB device goes away
    outcome, _, _, wall = run.finish()
    assert outcome.status is RunState.FAILED
    assert "read failed" in outcome.error and "disconnected" in outcome.error
    assert not run.server.device.cell_on
    assert wall < 10


def test_user_abort(running) -> None:
    run = running()
    run.wait_packets(20)
    run.handle.abort("operator pressed stop")
    outcome, _, _, _ = run.finish()
    assert outcome.status is RunState.ABORTED and outcome.error == "operator pressed stop"
    assert not run.server.device.cell_on and not run.server.device.running


def _hold_then_current(values, cell):
    hold = yield ConstantVoltage(voltage=0.01, limits=Limits(max_time=200), sample_period=2.0)
    plate = yield ConstantCurrent(current=-1e-4, limits=Limits(max_time=200), sample_period=2.0)
    return {"hold_s": hold.duration, "hold_rows": len(hold.data), "plate_rows": len(plate.data)}


HOLD_THEN_CURRENT = Protocol(
    name="hold_then_current",
    version="1",
    title="test",
    cell_type="li_li",
    params=(Param("x", 1.0),),
    plan=_hold_then_current,
    step_kinds=frozenset({"ConstantVoltage", "ConstantCurrent"}),
)


def _pause(run: Running) -> None:
    run.handle.pause()
    deadline = time.monotonic() + 5
    while run.handle.state is not RunState.PAUSED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    run.server.device.wait_idle(2.0)


def test_pause_holds_the_potential_then_opens_the_circuit_and_resumes(running) -> None:
    run = running(HOLD_THEN_CURRENT, speed=200.0)
    run.wait_packets(30)
    _pause(run)
    device = run.server.device
    assert device.cell_on and device.sim.mode == "potential"  # the 10 mV hold is kept
    run.handle.resume()
    deadline = time.monotonic() + 20
    while device.packets_sent < 130:  # into the galvanostatic step
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _pause(run)
    assert not device.cell_on  # a galvanostatic step pauses at open circuit
    run.handle.resume()
    outcome, _, steps, _ = run.finish(30)
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert [(k, r) for k, r, _ in steps] == [("ConstantVoltage", "time"), ("ConstantCurrent", "time")]
    # Each step went on where the pause left it: 200 s at 2 s per sample, nothing replayed.
    assert 95 <= outcome.results["hold_rows"] <= 104 and 95 <= outcome.results["plate_rows"] <= 104
    assert not device.cell_on
