"""The driver kit's plumbing: clock speed, pacing, VISA error translation, emulator fixture."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pyvisa import constants
from pyvisa.errors import InvalidSession, VisaIOError

from drivers.keithley.smu import create_2450
from drivers.kit.pacing import empty_block, wait_until
from drivers.kit.testing import emulator_fixture
from drivers.kit.visa import typed_errors
from drivers.sim.wire.keithley import serve_2400, serve_2450
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout, StepContext
from labctl.clock import RealClock, ScaledClock, VirtualClock
from labctl.steps import SAMPLE_DTYPE

emulator = emulator_fixture()


def test_every_clock_says_its_speed() -> None:
    assert RealClock().speed == 1.0
    assert ScaledClock(40.0).speed == 40.0
    assert VirtualClock().speed == 1.0 and VirtualClock.virtual
    with pytest.raises(AttributeError):
        ScaledClock(2.0).speed = 3.0  # type: ignore[misc]


def test_wait_until_jumps_a_virtual_clock_and_stops_when_interrupted() -> None:
    clock = VirtualClock(100.0)
    ctx = StepContext(clock=clock, t_origin=100.0, interrupt=threading.Event())
    waiting = wait_until(ctx, 7.5, empty_block())
    with pytest.raises(StopIteration) as done:
        next(waiting)
    assert done.value.value is True and ctx.run_time() == 7.5

    ctx.interrupt.set()
    with pytest.raises(StopIteration) as done:
        next(wait_until(ctx, 9.0, empty_block()))
    assert done.value.value is False and ctx.run_time() == 7.5


def test_wait_until_hands_the_engine_blocks_while_waiting() -> None:
    """A wait longer than the block period yields the pending block each time one is due."""
    clock = ScaledClock(1000.0)  # 1000 cell s per wall s
    ctx = StepContext(clock=clock, t_origin=clock.now(), interrupt=threading.Event(), max_block_wall=0.01)
    handed: list[np.ndarray] = []
    row = np.zeros(1, dtype=SAMPLE_DTYPE)
    waiting = wait_until(ctx, 50.0, lambda: row)  # 50 cell s = 0.05 wall s: several block periods
    while True:
        try:
            handed.append(next(waiting))
        except StopIteration as done:
            assert done.value is True
            break
    assert ctx.run_time() >= 50.0
    assert handed and all(block is row for block in handed)


def visa_error(code: constants.StatusCode) -> VisaIOError:
    return VisaIOError(int(code))


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (visa_error(constants.StatusCode.error_timeout), InstrumentTimeout, "SMU: *IDN?: no reply within 250 ms"),
        (visa_error(constants.StatusCode.error_connection_lost), ConnectionLost, "SMU: *IDN?: "),
        (visa_error(constants.StatusCode.error_resource_busy), InstrumentError, "SMU: *IDN?: VISA error VI_"),
        (InvalidSession(), ConnectionLost, "SMU: *IDN?: "),
        (BrokenPipeError("pipe"), ConnectionLost, "SMU: *IDN?: pipe"),
        (EOFError("eof"), ConnectionLost, "SMU: *IDN?: eof"),
        (UnicodeDecodeError("ascii", b"\xff", 0, 1, "bad"), GarbledReply, "SMU: *IDN?: "),
        (ValueError("could not convert"), GarbledReply, "SMU: *IDN?: could not convert"),
    ],
)
def test_visa_errors_become_typed_errors(raised, expected, message) -> None:
    with pytest.raises(expected) as info, typed_errors("SMU: *IDN?", None, 250.0):
        raise raised
    assert type(info.value) is expected and str(info.value).startswith(message)


def test_a_driver_may_keep_value_errors_its_own() -> None:
    with pytest.raises(ValueError, match="out of range"), typed_errors("LCR", None, 1.0, garbled=(UnicodeDecodeError,)):
        raise ValueError("out of range")


@pytest.mark.timeout(60)
def test_emulator_fixture_serves_and_stops(emulator) -> None:
    first = emulator(serve_2450, speed=20.0, cell_type="li_li")
    second = emulator(serve_2400, speed=20.0)
    assert first.resource != second.resource
    channel = create_2450(first.resource, {"clock_speed": 20.0, "timeout_ms": 5000}, RealClock())
    try:
        assert channel.identify().model == "Keithley Instruments 2450"
    finally:
        channel.close()
