"""The engine: limits, results, abort, pause/resume, faults, safe state, events."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from labctl.clock import VirtualClock
from labctl.engine import TRANSITIONS, Engine, IllegalTransition, RunState, check_transition
from labctl.events import RunEnded, Samples, SinkFailure, StateChanged, StatusChanged, StepEnded, StepStarted
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.safety import SafetyLimits
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, Rest
from tests.resistor_channel import ResistorChannel

CELL = Cell(type="test", area_cm2=1.0, thickness_um=100.0)


def make_protocol(plan, kinds=("Rest", "ConstantCurrent", "ConstantVoltage")) -> Protocol:
    return Protocol(
        name="test",
        version="1",
        title="test",
        cell_type="test",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset(kinds),
    )


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def handle(self, event) -> None:
        self.events.append(event)


def test_protocol_receives_results_and_returns_results():
    seen = {}

    def plan(params, cell):
        r1 = yield ConstantCurrent(current=1e-3, limits=Limits(max_time=100.0), sample_period=1.0)
        seen["r1"] = r1
        r2 = yield ConstantCurrent(current=1e-3, limits=Limits(voltage_above=0.05, max_time=1e4))
        seen["r2"] = r2
        return {"q1": r1.charge, "e_end": r2.last["E"]}

    channel = ResistorChannel(resistance=100.0)
    recorder = Recorder()
    outcome = Engine(channel, sinks=[recorder]).run(make_protocol(plan), {"x": 1.0}, CELL)
    assert outcome.status == RunState.COMPLETED
    r1 = seen["r1"]
    assert r1.end_reason == EndReason.TIME
    assert r1.duration == pytest.approx(100.0)
    assert outcome.results["q1"] == pytest.approx(0.1)
    # 1 mA into 100 ohm is 0.1 V, above the 0.05 V limit at the first sample.
    assert seen["r2"].end_reason == EndReason.VOLTAGE_ABOVE
    assert len(r1.data) == 100 and np.all(np.diff(r1.data["t"]) > 0)
    kinds = [type(e).__name__ for e in recorder.events if type(e).__name__ not in ("Samples", "Tick", "StateChanged")]
    assert kinds == ["RunStarted", "StepStarted", "StepEnded", "StepStarted", "StepEnded", "StatusChanged", "RunEnded"]
    assert [e.state for e in recorder.events if isinstance(e, StatusChanged)] == ["safe"]
    # The run's states, announced after RunStarted; the final one after the safe state.
    assert _timeline(recorder.events) == ["running", "safe", "completed"]
    assert channel.events[-1] == "safe" and not channel.output_on


def test_samples_carry_run_time_across_steps():
    def plan(params, cell):
        yield Rest(duration=10.0, sample_period=1.0)
        yield Rest(duration=10.0, sample_period=1.0)
        return {}

    recorder = Recorder()
    Engine(ResistorChannel(), sinks=[recorder]).run(make_protocol(plan), {}, CELL)
    t = np.concatenate([e.block["t"] for e in recorder.events if isinstance(e, Samples)])
    assert t[0] == pytest.approx(1.0) and t[-1] == pytest.approx(20.0)
    starts = [e.t_start for e in recorder.events if isinstance(e, StepStarted)]
    assert starts == pytest.approx([0.0, 10.0])


def test_protocol_exception_fails_run_and_leaves_cell_safe():
    def plan(params, cell):
        yield ConstantCurrent(current=1e-3, limits=Limits(max_time=10.0))
        raise RuntimeError("analysis blew up")

    channel = ResistorChannel()
    outcome = Engine(channel).run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    assert "analysis blew up" in outcome.error
    assert channel.events[-1] == "safe" and not channel.output_on


def test_instrument_fault_fails_run_with_reason():
    def plan(params, cell):
        yield ConstantCurrent(current=1e-3, limits=Limits(max_time=10.0))
        yield ConstantCurrent(current=1e-3, limits=Limits(max_time=10.0))
        return {}

    channel = ResistorChannel(fail_at_step=1)
    outcome = Engine(channel).run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    assert "simulated instrument fault" in outcome.error
    assert len(outcome.steps) == 1 and not channel.output_on


def test_safety_limit_stops_run():
    def plan(params, cell):
        yield ConstantCurrent(current=0.1, limits=Limits(max_time=10.0))  # 10 V across 100 ohm
        return {}

    channel = ResistorChannel()
    outcome = Engine(channel, safety=SafetyLimits(voltage_max=5.0)).run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    assert "E above 5 V" in outcome.error
    assert outcome.error == "safety stop: E above 5 V (the channel's safety limit; step 0, ConstantCurrent)"
    assert outcome.steps[0].end_reason == EndReason.SAFETY_LIMIT
    assert not channel.output_on


def test_on_limit_abort_stops_the_protocol():
    def plan(params, cell):
        yield ConstantCurrent(current=1e-3, limits=Limits(voltage_above=0.05, max_time=100, on_limit="abort"))
        yield Rest(duration=10)
        return {}

    outcome = Engine(ResistorChannel()).run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.ABORTED
    assert "voltage_above" in outcome.error
    assert len(outcome.steps) == 1


def test_channel_that_cannot_do_a_step_is_refused_before_start():
    def plan(params, cell):
        yield Rest(duration=1)
        return {}

    proto = make_protocol(plan, kinds=("Rest", "Impedance"))
    with pytest.raises(ValueError, match="Impedance steps are not supported"):
        Engine(ResistorChannel()).start(proto, {}, CELL)


def _long_cc_plan(params, cell):
    result = yield ConstantCurrent(current=1e-3, limits=Limits(max_time=2.0), sample_period=0.01)
    return {"charge": result.charge, "duration": result.duration}


class At:
    """A sink that calls ``action`` (in the engine thread) once the cell time
    reaches ``t``: requests land at a known point of a virtual-clock run."""

    def __init__(self, t: float, action) -> None:
        self.t, self.action, self.fired = t, action, False

    def handle(self, event) -> None:
        if not self.fired and isinstance(event, Samples) and event.block["t"][-1] >= self.t:
            self.fired = True
            self.action()


def _wait_for(condition, timeout: float = 30.0) -> None:
    """Wait for a condition; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met (hang guard)"
        time.sleep(0.005)


def _timeline(events) -> list[str]:
    """Run states entered and cell status records, in the order emitted."""
    return [
        e.new if isinstance(e, StateChanged) else e.state
        for e in events
        if isinstance(e, (StateChanged, StatusChanged))
    ]


def _engine_with_trigger(channel, t, action_name, *args):
    engine = Engine(channel)
    engine.sinks.insert(0, At(t, lambda: getattr(engine, action_name)(*args)))
    return engine


def test_abort_from_another_thread_ends_aborted_and_safe():
    channel = ResistorChannel(clock=VirtualClock(), chunk=5)
    recorder = Recorder()
    engine = _engine_with_trigger(channel, 0.3, "request_abort", "test abort")
    engine.sinks.insert(0, recorder)
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    outcome = handle.wait(30.0)
    assert outcome is not None and outcome.status == RunState.ABORTED
    assert outcome.error == "test abort"
    assert outcome.steps[0].end_reason == EndReason.ABORTED
    assert outcome.steps[0].duration < 1.5
    assert not channel.output_on and channel.events[-1] == "safe"
    ended = [e for e in recorder.events if isinstance(e, RunEnded)]
    assert ended and ended[0].status == "aborted"
    assert _timeline(recorder.events) == ["running", "aborting", "safe", "aborted"]


def test_pause_holds_cell_and_resume_goes_forward_without_replay():
    clock = VirtualClock()
    channel = ResistorChannel(clock=clock, chunk=5)
    engine = _engine_with_trigger(channel, 0.5, "request_pause")
    sub = engine.bus.subscribe()
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    _wait_for(lambda: handle.state == RunState.PAUSED)
    assert channel.events[-1] == "hold" and not channel.output_on
    clock.sleep_until(clock.now() + 0.4)  # cell time passes while the cell is held
    handle.resume()
    outcome = handle.wait(30.0)
    assert outcome.status == RunState.COMPLETED
    step = outcome.steps[0]
    # Forward, never replayed: the powered time adds up to the requested 2 s,
    # so the charge is 2 s x 1 mA although the step lasted longer (the pause).
    assert outcome.results["charge"] == pytest.approx(2e-3, rel=1e-6)
    assert step.duration == pytest.approx(2.4)
    assert np.all(np.diff(step.data["t"]) > 0)
    assert np.all(np.diff(step.data["Q"]) > 0)  # Q continues across the pause
    timeline = _timeline(sub.drain())
    assert timeline == ["running", "pausing", "paused", "running", "safe", "completed"]


def test_abort_while_paused():
    channel = ResistorChannel(clock=VirtualClock(), chunk=5)
    engine = _engine_with_trigger(channel, 0.2, "request_pause")
    sub = engine.bus.subscribe()
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    _wait_for(lambda: handle.state == RunState.PAUSED)
    handle.abort("stop while paused")
    outcome = handle.wait(30.0)
    assert outcome.status == RunState.ABORTED and not channel.output_on
    assert outcome.error == "stop while paused"
    assert outcome.steps[0].end_reason == EndReason.ABORTED
    assert _timeline(sub.drain()) == ["running", "pausing", "paused", "aborting", "safe", "aborted"]


def test_every_published_state_change_is_a_legal_transition():
    clock = VirtualClock()
    channel = ResistorChannel(clock=clock, chunk=5)
    engine = _engine_with_trigger(channel, 0.5, "request_pause")
    recorder = Recorder()
    engine.sinks.insert(0, recorder)
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    _wait_for(lambda: handle.state == RunState.PAUSED)
    handle.pause()  # already paused: no change
    handle.resume()
    assert handle.wait(30.0).status == RunState.COMPLETED
    changes = [e for e in recorder.events if isinstance(e, StateChanged)]
    assert changes[0].old == "pending"
    for before, after in itertools.pairwise(changes):
        assert before.new == after.old  # no state is skipped
    for change in changes:
        assert RunState(change.new) in TRANSITIONS[RunState(change.old)]
        assert change.reason
    assert changes[-1].new == "completed" and handle.state == RunState.COMPLETED


def test_illegal_transitions_raise():
    with pytest.raises(IllegalTransition, match="paused -> completed"):
        check_transition(RunState.PAUSED, RunState.COMPLETED)
    with pytest.raises(IllegalTransition, match="final state"):
        check_transition(RunState.ABORTED, RunState.RUNNING)
    engine = Engine(ResistorChannel())
    with pytest.raises(IllegalTransition, match="pending -> paused"):
        engine._transition(RunState.PAUSED, "test")
    assert engine.state == RunState.PENDING


def test_resume_or_pause_outside_their_states_change_nothing():
    engine = Engine(ResistorChannel())
    engine.request_resume()
    engine.request_pause()  # not running yet
    assert engine.state == RunState.PENDING
    outcome = engine.run(make_protocol(_long_cc_plan), {}, CELL)
    engine.request_pause()
    engine.request_abort("too late")
    assert outcome.status == RunState.COMPLETED and engine.state == RunState.COMPLETED


class _FailingSink:
    """Fails like a run file on a full disk, from the n-th sample block on."""

    def __init__(self, after_blocks: int) -> None:
        self.after, self.blocks, self.closed = after_blocks, 0, False

    def handle(self, event) -> None:
        if isinstance(event, Samples):
            self.blocks += 1
            if self.blocks > self.after:
                raise SinkFailure("No space left on device (ENOSPC) writing run.h5")

    def close(self) -> None:
        self.closed = True


def test_a_failing_sink_fails_the_run_and_leaves_the_cell_safe():
    channel = ResistorChannel(chunk=5)
    sink = _FailingSink(after_blocks=3)
    engine = Engine(channel, sinks=[sink])
    sub = engine.bus.subscribe()
    outcome = engine.run(make_protocol(_long_cc_plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    assert outcome.error == "storage error: No space left on device (ENOSPC) writing run.h5"
    assert "SinkFailure" in outcome.error_detail  # the traceback is kept, not printed
    assert not channel.output_on and channel.events[-1] == "safe"
    assert sink.closed
    events = sub.drain()
    assert isinstance(events[-1], RunEnded) and events[-1].status == "failed"
    assert _timeline(events)[-2:] == ["safe", "failed"]


def test_wait_returns_only_after_the_sinks_are_closed():
    gate = threading.Event()

    class SlowClose:
        closed = False

        def handle(self, event) -> None:
            pass

        def close(self) -> None:
            gate.wait(30.0)
            self.closed = True

    sink = SlowClose()
    engine = Engine(ResistorChannel(), sinks=[sink])
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    _wait_for(lambda: handle.state == RunState.COMPLETED)
    # The state is final, but the run file (a sink) is still being closed.
    assert handle.wait(0.05) is None and not handle.done
    gate.set()
    outcome = handle.wait(30.0)
    assert outcome is not None and sink.closed and handle.done


def test_slow_subscriber_never_blocks_engine():
    def plan(params, cell):
        yield ConstantVoltage(voltage=0.1, limits=Limits(max_time=20000.0), sample_period=0.1)
        return {}

    engine = Engine(ResistorChannel(chunk=1000))
    slow = engine.bus.subscribe(maxsize=5)  # never read during the run
    outcome = engine.start(make_protocol(plan), {}, CELL).wait(30)
    assert outcome.status == RunState.COMPLETED
    events = slow.drain()
    assert slow.dropped > 0
    assert isinstance(events[-1], RunEnded)  # control events always get through
    assert any(isinstance(e, StepEnded) for e in events)


def test_engine_runs_off_the_callers_thread():
    thread_names = []

    def plan(params, cell):
        thread_names.append(threading.current_thread().name)
        yield Rest(duration=1.0)
        return {}

    Engine(ResistorChannel()).run(make_protocol(plan), {}, CELL)
    assert thread_names == ["labctl-engine"]


def test_instrument_fault_ends_the_step_record_too():
    def plan(params, cell):
        yield ConstantCurrent(current=1e-3, limits=Limits(max_time=10.0))
        yield ConstantCurrent(current=1e-3, limits=Limits(max_time=10.0))
        return {}

    recorder = Recorder()
    outcome = Engine(ResistorChannel(fail_at_step=1), sinks=[recorder]).run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    ended = [e.result for e in recorder.events if isinstance(e, StepEnded)]
    assert [r.end_reason for r in ended] == [EndReason.TIME, EndReason.INSTRUMENT_FAULT]
    assert ended[1].message == "simulated instrument fault"


def test_an_abort_requested_before_the_start_ends_the_run_at_once():
    channel = ResistorChannel()
    recorder = Recorder()
    engine = Engine(channel, sinks=[recorder])
    engine.request_abort("changed my mind")
    outcome = engine.run(make_protocol(_long_cc_plan), {}, CELL)
    assert outcome.status == RunState.ABORTED and outcome.error == "changed my mind"
    assert outcome.steps == [] and channel.steps_run == 0 and channel.events == ["safe"]
    assert _timeline(recorder.events) == ["running", "aborting", "safe", "aborted"]


def test_watchers_see_pausing_at_once_while_the_engine_is_busy():
    """The bus learns of a request immediately, not at the engine's next block."""
    reached, gate = threading.Event(), threading.Event()

    class Busy:
        fired = False

        def handle(self, event) -> None:
            if isinstance(event, Samples) and not self.fired:
                self.fired = True
                reached.set()
                assert gate.wait(30.0)  # the engine thread is stuck here (a slow point)

    engine = Engine(ResistorChannel(chunk=5), sinks=[Busy()])
    sub = engine.bus.subscribe()
    handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
    assert reached.wait(30.0)
    handle.pause()
    seen = [e for e in sub.drain() if isinstance(e, StateChanged)]
    assert [(e.old, e.new) for e in seen] == [("pending", "running"), ("running", "pausing")]
    gate.set()
    _wait_for(lambda: handle.state == RunState.PAUSED)
    handle.resume()
    assert handle.wait(30.0).status == RunState.COMPLETED
