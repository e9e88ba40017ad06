"""Espec chamber: the emulator's ASCII protocol, and the driver against it over
TCP and over a pseudo-terminal (pyserial), with its faults."""

from __future__ import annotations

import time

import pytest

from drivers.sim import SimChannel, SimParams
from drivers.sim.wire.espec import ChamberPlant, EspecModel, serve
from drivers.temperature.espec import EspecChamber, EspecOptions, create, parse_monitor
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentErrorCode, InstrumentTimeout
from labctl.clock import VirtualClock
from labctl.registry import driver_factory, emulator_factory

FAST = SimParams(tau_chamber=60.0, tau_cell=10.0, noise_t=0.0)
SPEED = 600.0


@pytest.fixture
def model() -> EspecModel:
    return EspecModel(ChamberPlant(SimChannel(FAST, "ss", VirtualClock())))


def test_emulator_speaks_the_controller_protocol(model):
    assert model.execute("TEMP?") == "25.0,25.0,185.0,-80.0"
    assert model.execute("MON?") == "25.0,,STANDBY,0"
    assert model.execute("TEMP, S60.0") == "OK:TEMP, S60.0"  # echoed as sent, blank included
    assert model.execute("MODE, CONSTANT") == "OK:MODE, CONSTANT"
    assert model.execute("MODE?") == "CONSTANT"
    assert model.execute("TEMP,S70 H90.0 L-10") == "OK:TEMP,S70 H90.0 L-10"
    assert model.execute("TEMP?") == "25.0,70.0,90.0,-10.0"
    assert model.execute("TEMP, S500") == "NA:DATA OUT OF RANGE"
    assert model.execute("TEMP, X5") == "NA:PARA ERR"
    assert model.execute("MODE, WARP") == "NA:PARA ERR"
    assert model.execute("FOO?") == "NA:CMD ERR"
    assert model.execute("TYPE?") == "T,P300,180.0" and model.execute("ROM?").startswith("P-300")
    model.raise_alarm(13)
    assert model.execute("MON?") == "25.0,,STANDBY,1"
    assert model.execute("ALARM?") == "1,13"
    assert model.execute("MODE, CONSTANT") == "NA:CHB NOT READY"


def test_constant_mode_drives_the_chamber_and_standby_lets_it_relax(model):
    sim = model.plant.sim
    model.execute("TEMP, S60.0")
    model.execute("MODE, CONSTANT")
    sim.clock.sleep(600.0)
    assert float(model.execute("TEMP?").split(",")[0]) == pytest.approx(60.0, abs=0.1)
    model.execute("MODE, STANDBY")
    sim.clock.sleep(600.0)
    assert float(model.execute("MON?").split(",")[0]) == pytest.approx(25.0, abs=0.1)


def test_monitor_parser():
    assert parse_monitor("23.5,,CONSTANT,0").humidity is None
    mon = parse_monitor("-12.3,45.0,RUN PAUSE,2")
    assert (mon.temperature, mon.humidity, mon.mode, mon.alarms) == (-12.3, 45.0, "RUN PAUSE", 2)
    with pytest.raises(GarbledReply):
        parse_monitor("ictcvv\t#?")


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_driver_holds_a_set_point_and_goes_to_standby(transport):
    server = emulator_factory("espec")(FAST, port=0, speed=SPEED, cell_type="auto", transport=transport)
    with server:
        chamber = driver_factory("espec")(server.resource, {"timeout": 1.0}, None)
        chamber.open()
        try:
            info = chamber.identify()
            assert (info.model, info.firmware, info.extra["max_temperature"]) == ("Espec P300", "P-300 Ver.3.02", 180.0)
            chamber.set_temperature(60.0)
            assert server.model.log[-3:] == ["TEMP, S60.0", "MON?", "MODE, CONSTANT"]
            deadline = time.monotonic() + 10
            while abs(chamber.read_temperature() - 60.0) > 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert chamber.read_temperature() == pytest.approx(60.0, abs=0.3)
            assert server.plant.cell() == pytest.approx(60.0, abs=1.0)
            chamber.standby()
            assert server.mode == "STANDBY" and not server.plant.running
        finally:
            chamber.close()


@pytest.fixture
def chamber_and_server():
    server = serve(FAST, speed=SPEED)
    chamber = create(server.resource, {"timeout": 0.3})
    chamber.open()
    yield chamber, server
    chamber.close()
    server.stop()


def test_transport_faults_are_typed_and_the_link_recovers(chamber_and_server):
    chamber, server = chamber_and_server
    server.faults.no_reply = 1
    t0 = time.monotonic()
    with pytest.raises(InstrumentTimeout, match=r"no reply to 'MON\?' within 0\.3 s"):
        chamber.read_temperature()
    assert time.monotonic() - t0 < 1.0
    server.faults.garble = 1
    with pytest.raises(GarbledReply):
        chamber.read_temperature()
    assert chamber.read_temperature() == pytest.approx(25.0, abs=0.2)
    server.faults.drop_after_sends = 0
    with pytest.raises(ConnectionLost):
        chamber.read_temperature()
    chamber.standby()  # reconnects to reach the safe state
    assert server.mode == "STANDBY"


def test_refusals_alarm_and_leaving_constant_operation(chamber_and_server):
    chamber, server = chamber_and_server
    with pytest.raises(InstrumentError, match="outside"):
        chamber.set_temperature(250.0)  # beyond the chamber's TYPE? maximum: refused before sending
    lenient = EspecChamber(server.resource, EspecOptions(timeout=0.3, max_temperature=999.0))
    with pytest.raises(InstrumentErrorCode, match="value outside the allowed range") as refused:
        lenient.set_temperature(250.0)
    assert refused.value.code == "DATA OUT OF RANGE"
    lenient.close()
    chamber.set_temperature(40.0)
    server.raise_alarm(21)
    with pytest.raises(InstrumentErrorCode, match="alarm") as alarm:
        chamber.read_temperature()
    assert alarm.value.code == "21"
    server.clear_alarms()
    server.model.execute("MODE, STANDBY")  # someone pressed STANDBY on the panel
    with pytest.raises(InstrumentError, match="left constant operation"):
        chamber.read_temperature()
    chamber.standby()
    assert chamber.read_temperature() == pytest.approx(server.plant.air(), abs=0.2)
