"""Eurotherm-style Modbus controller: register scaling, and the driver against the
emulator over Modbus TCP (pymodbus) and Modbus RTU on a pseudo-terminal
(minimalmodbus), with its faults."""

from __future__ import annotations

import time

import pytest

from drivers.sim import SimParams
from drivers.sim.wire import eurotherm as emulator
from drivers.temperature.eurotherm import (
    AUTO_MAN,
    INST_MODE,
    MODE_STANDBY,
    PV,
    TG_SP,
    EurothermOptions,
    create,
    decode,
    encode,
    open_bus,
)
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentErrorCode, InstrumentTimeout
from labctl.registry import driver_factory, emulator_factory

FAST = SimParams(tau_chamber=60.0, tau_cell=10.0, noise_t=0.0)
SPEED = 600.0


def test_registers_are_signed_words_scaled_by_the_decimals():
    assert encode(25.0, 1) == 250 and decode(250, 1) == 25.0
    assert encode(-20.5, 1) == 0x10000 - 205 and decode(0x10000 - 205, 1) == -20.5
    assert encode(1.234, 2) == 123
    with pytest.raises(InstrumentError):
        encode(4000.0, 1)
    assert emulator.encode(-80.0) == encode(-80.0, 1)  # the emulator speaks the same map


def test_resources_and_options():
    with pytest.raises(ValueError, match="modbus-tcp"):
        open_bus("http://example", EurothermOptions())
    with pytest.raises(ConnectionLost):
        open_bus("modbus-rtu:///dev/nonexistent-port?unit=3", EurothermOptions())
    assert EurothermOptions.parse({"standby_setpoint": "none", "status_mask": "0x20"}).status_mask == 0x20
    with pytest.raises(ValueError):
        EurothermOptions.parse({"decimals": 7})


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_driver_holds_a_set_point_and_goes_to_standby(transport):
    server = emulator_factory("eurotherm")(FAST, port=0, speed=SPEED, cell_type="auto", transport=transport)
    with server:
        controller = driver_factory("eurotherm")(server.resource, {"timeout": 0.5}, None)
        controller.open()
        try:
            info = controller.identify()
            assert (info.model, info.firmware) == ("Eurotherm 3216", "2.13")
            assert info.extra["setpoint_limits_C"] == [-80.0, 200.0]
            controller.set_temperature(60.0)
            assert (TG_SP, 600) in server.model.writes and server.mode == "operating"
            deadline = time.monotonic() + 10
            while abs(controller.read_temperature() - 60.0) > 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert controller.read_temperature() == pytest.approx(60.0, abs=0.3)
            controller.standby()
            assert server.mode == "standby" and not server.plant.running
            assert server.model.regs[TG_SP] == 250  # back to room temperature
            assert server.model.writes[-1] == (INST_MODE, MODE_STANDBY)
        finally:
            controller.close()


def _pair(transport: str, timeout: float):
    server = emulator.serve(FAST, speed=SPEED, transport=transport)
    controller = create(server.resource, {"timeout": timeout})
    controller.open()
    return controller, server


@pytest.fixture(params=["tcp", "rtu"])
def pair(request):
    """A short reply timeout: for the tests that provoke timeouts."""
    controller, server = _pair(request.param, 0.3)
    yield controller, server
    controller.close()
    server.stop()


@pytest.fixture(params=["tcp", "rtu"])
def patient_pair(request):
    """A reply timeout that is only a hang guard: tests of replies (exceptions, alarms)
    must not turn into timeouts when a loaded CI machine answers slowly. Over RTU,
    minimalmodbus reads the length of a normal reply, so a (shorter) exception frame
    is complete only when the timeout passes: 3 s there, still far above any latency."""
    controller, server = _pair(request.param, 30.0 if request.param == "tcp" else 3.0)
    yield controller, server
    controller.close()
    server.stop()


def test_transport_faults_are_typed(pair):
    controller, server = pair
    server.faults.no_reply = 1
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout):
        controller.read_temperature()
    assert time.monotonic() - t0 < 1.5
    server.faults.garble = 1
    with pytest.raises(GarbledReply):
        controller.read_temperature()
    assert controller.read_temperature() == pytest.approx(25.0, abs=0.2)


def test_dropped_connection_then_standby_reconnects():
    with emulator.serve(FAST, speed=SPEED) as server:
        controller = create(server.resource, {"timeout": 0.3})
        controller.open()
        controller.set_temperature(40.0)
        server.faults.drop_after_sends = 0
        with pytest.raises(ConnectionLost):
            controller.read_temperature()
        controller.standby()
        assert server.mode == "standby"
        controller.close()


def test_exceptions_alarms_sensor_break_and_mode_changes(patient_pair):
    controller, server = patient_pair
    with pytest.raises(InstrumentErrorCode, match="illegal data value") as illegal:
        controller.bus.write(TG_SP, encode(500.0, 1))  # beyond SP.HI: the controller refuses
    assert illegal.value.code == 3
    with pytest.raises(InstrumentErrorCode) as read_only:
        controller.bus.write(PV, 0)
    assert read_only.value.code == 2
    with pytest.raises(InstrumentError, match="outside"):
        controller.set_temperature(500.0)  # refused by the driver before writing
    controller.set_temperature(40.0)
    server.raise_alarm(2)
    with pytest.raises(InstrumentErrorCode, match="alarm 2") as alarm:
        controller.read_temperature()
    assert alarm.value.code == 0b10
    server.clear_faults()
    server.sensor_break()
    with pytest.raises(InstrumentErrorCode, match="sensor break"):
        controller.read_temperature()
    server.clear_faults()
    controller.bus.write(AUTO_MAN, 1)  # someone switched the loop to manual
    controller.bus.write(INST_MODE, MODE_STANDBY)
    with pytest.raises(InstrumentError, match="left operating mode"):
        controller.read_temperature()
    controller.set_temperature(40.0)  # back to auto and operating
    assert server.model.regs[AUTO_MAN] == 0 and server.mode == "operating"
    assert controller.read_temperature() > 20.0
