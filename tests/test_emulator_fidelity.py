"""Each emulator behaves as its manual documents, not as our driver happens to use it.

Every test names the documented behaviour it pins. The clients here are bare sockets,
pymodbus, pymeasure's own drivers or the model's line interface, never our drivers, so
a mistake in a driver cannot hide the same mistake in its emulator.
"""

from __future__ import annotations

import warnings

import pytest
from pymeasure.instruments.keithley import Keithley2400
from pymodbus.client import ModbusTcpClient

from drivers.kit.testing import emulator_fixture
from drivers.sim import SimParams
from drivers.sim.wire.e4980a import serve as serve_e4980a
from drivers.sim.wire.espec import ChamberPlant, EspecModel, own_cell
from drivers.sim.wire.eurotherm import SP1, SP2, SP_SEL, TG_SP, decode, encode
from drivers.sim.wire.eurotherm import serve as serve_eurotherm
from drivers.sim.wire.keithley import serve_2400
from labctl.clock import VirtualClock
from tests.test_keithley_emulator import Client

pytestmark = pytest.mark.timeout(60)
emulator = emulator_fixture()


# --- Keysight E4980A (E4980A/AL User's Guide, ch. 8 and "Common Commands") -------------------
@pytest.fixture
def lcr(emulator):
    server = emulator(serve_e4980a, SimParams(seed=3), speed=1000.0)
    client = Client(server.port)
    yield client
    client.close()


def errors(client: Client) -> str:
    return client.query(":SYST:ERR?")


def test_e4980a_trg_is_a_command_that_fills_the_output_buffer(lcr):
    """*TRG (IEEE 488.2) triggers with the trigger source BUS and leaves the result in the
    output buffer; there is no *TRG? query form."""
    lcr.send(":TRIG:SOUR BUS;:INIT")
    fields = lcr.query("*TRG").split(",")  # a command, yet a line to read: the measurement
    assert len(fields) == 3 and int(fields[2]) == 0 and float(fields[0]) != 0.0
    assert errors(lcr) == '+0,"No error"'
    lcr.send("*TRG?")
    reply = errors(lcr)
    assert reply.startswith("-113"), reply


def test_e4980a_status_byte_obeys_ese_and_sre(lcr):
    """IEEE 488.2 §11.2: ESB (bit 5) is the OR of *ESR AND *ESE; MSS (bit 6) the OR of the
    status byte AND *SRE. *ESE/*SRE take 0–255 and read back."""
    lcr.send("*ESE 0;*SRE 0;*CLS")
    lcr.send(":NO:SUCH")  # a command error sets ESR bit 5
    assert int(lcr.query("*STB?")) & 0x20 == 0  # not enabled by *ESE
    lcr.send("*ESE 32")
    assert lcr.query("*ESE?") == "32"
    assert int(lcr.query("*STB?")) & 0x60 == 0x20
    lcr.send("*SRE 32")
    assert int(lcr.query("*STB?")) & 0x60 == 0x60
    lcr.send("*ESE 256")
    assert "-222" in "".join(errors(lcr) for _ in range(3))


def test_e4980a_relative_headers_and_current_level(lcr):
    """SCPI 1999 §6.2.4: after ':LIST:MODE SEQ', 'FREQ 1234' is :LIST:FREQ, not the CW
    frequency; [:SOURce]:CURRent[:LEVel] sets the test signal as a current (0–20 mA)."""
    lcr.send(":FREQ 1000;:LIST:MODE SEQ;FREQ 1234")
    assert float(lcr.query(":FREQ?")) == pytest.approx(1000.0)
    assert float(lcr.query(":LIST:FREQ?")) == pytest.approx(1234.0)
    lcr.send(":CURR:LEV 5MA")
    assert float(lcr.query(":CURR?")) == pytest.approx(5e-3)
    lcr.send(":CURR 30MA")
    assert errors(lcr).startswith("-222")


# --- Espec P-300 / SCP-220 (Espec "Communication Function" manual) ---------------------------
@pytest.fixture
def chamber() -> EspecModel:
    return EspecModel(ChamberPlant(own_cell(SimParams(seed=1), "auto", 1000.0)))


def test_espec_echoes_settings_as_sent(chamber):
    """A setting is acknowledged with 'OK:' and the command exactly as received."""
    assert chamber.execute("TEMP, S30.0") == "OK:TEMP, S30.0"
    assert chamber.execute("TEMP,S31.0") == "OK:TEMP,S31.0"


@pytest.mark.parametrize("command", ["TEMP, H 60.0", "TEMP, H60.0", "TEMP, S25.0 H 40.0 L -10.0"])
def test_espec_accepts_a_blank_before_the_value(chamber, command):
    assert chamber.execute(command) == f"OK:{command}"
    assert chamber.execute("TEMP?").split(",")[2] in ("60.0", "40.0")


def test_espec_power_mode_detail_and_constant_set(chamber):
    """POWER, ON starts constant operation, POWER, OFF switches the controller off;
    MODE?,DETAIL answers the state; CONSTANT SET?,TEMP answers '<set point>,ON'."""
    chamber.execute("TEMP, S40.0")
    assert chamber.execute("POWER, ON") == "OK:POWER, ON"
    assert chamber.execute("MODE?,DETAIL") == "CONSTANT"
    assert chamber.execute("CONSTANT SET?,TEMP") == "40.0,ON"
    assert chamber.execute("POWER, OFF") == "OK:POWER, OFF"
    assert chamber.execute("MODE?") == "OFF"
    assert chamber.execute("POWER, MAYBE") == "NA:PARA ERR"
    assert chamber.execute("MODE?,SOMETHING") == "NA:CMD ERR"


# --- Eurotherm 3200/2000 (HA028651 §15; Modbus over serial line v1.02) ------------------------
@pytest.fixture
def controller(emulator):
    server = emulator(serve_eurotherm, SimParams(seed=2), speed=100.0, unit=3)
    client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=0.5, retries=0)
    assert client.connect()
    yield server, client
    client.close()


def test_eurotherm_answers_only_its_own_address(controller):
    """On a bus, a request to another device address is answered by nobody: the client
    times out instead of talking to the wrong controller."""
    _, client = controller
    assert client.read_holding_registers(1, count=1, device_id=3).registers
    with pytest.raises(Exception, match="No response"):
        client.read_holding_registers(1, count=1, device_id=1)


def test_eurotherm_sp1_sp2_and_setpoint_select(controller):
    """SP1 (24) and SP2 (25) hold the two set points, SP.SEL (15) picks the one in force,
    which TG.SP (2) reads and writes."""
    server, client = controller
    client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2.0, retries=0)
    assert client.connect()
    assert not client.write_register(SP1, encode(40.0), device_id=3).isError()
    assert not client.write_register(SP2, encode(60.0), device_id=3).isError()
    assert decode(client.read_holding_registers(TG_SP, count=1, device_id=3).registers[0]) == 40.0
    assert server.plant.setpoint == 40.0
    assert not client.write_register(SP_SEL, 1, device_id=3).isError()
    assert decode(client.read_holding_registers(TG_SP, count=1, device_id=3).registers[0]) == 60.0
    assert server.plant.setpoint == 60.0
    assert not client.write_register(TG_SP, encode(70.0), device_id=3).isError()
    sp1, sp2 = client.read_holding_registers(SP1, count=2, device_id=3).registers
    assert (decode(sp1), decode(sp2)) == (40.0, 70.0)
    assert client.write_register(SP_SEL, 2, device_id=3).isError()  # illegal data value
    assert client.write_register(SP2, encode(500.0), device_id=3).isError()  # above SP.HI
    client.close()


# --- Keithley 2400 (2400S-900-01 §18) ------------------------------------------------------------
@pytest.fixture
def smu2400():
    clock = VirtualClock()
    with serve_2400(SimParams(seed=4), clock=clock) as server:
        client = Client(server.port)
        yield server, client, clock
        client.close()


def test_2400_accepts_small_and_negative_compliance(smu2400):
    """:SENS:VOLT:PROT takes −210…210 V; pymeasure's apply_current() sets 0.1 V."""
    server, client, _ = smu2400
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        smu = Keithley2400(f"TCPIP::127.0.0.1::{server.port}::SOCKET", read_termination="\n")
        smu.apply_current()
    assert float(client.query(":SENS:VOLT:PROT?")) == pytest.approx(0.1)
    client.send(":SENS:VOLT:PROT -5")
    assert float(client.query(":SENS:VOLT:PROT?")) == pytest.approx(5.0)
    client.send(":SENS:VOLT:PROT 211")
    assert client.query(":SYST:ERR?").startswith("-222")
    smu.adapter.close()


@pytest.mark.parametrize(
    ("query", "value"),
    [(":SOUR:VOLT? MAX", 210.0), (":SOUR:CURR? MIN", -1.05), (":SENS:CURR:NPLC? MIN", 0.01),
     (":SENS:CURR:NPLC? MAX", 10.0), (":SENS:VOLT:PROT? DEF", 21.0), (":TRIG:COUN? MAX", 2500)],
)
def test_2400_min_max_default_query_arguments(smu2400, query, value):
    """SCPI 1999 §7.2.1.1: MIN/MAX/DEF as the argument of a numeric query."""
    _, client, _ = smu2400
    assert float(client.query(query)) == pytest.approx(value)


def test_2400_trigger_count_buffer_and_statistics(smu2400):
    """:TRIG:COUN n makes :READ? return n readings; :TRAC:FEED:CONT NEXT stores them in the
    buffer until it is full; :CALC3:DATA? is a statistic of the buffer's V and I."""
    _, client, _ = smu2400
    client.send(":SOUR:FUNC VOLT;:SOUR:VOLT 0.01;:SENS:FUNC 'CURR';:FORM:ELEM VOLT,CURR;:OUTP ON")
    client.send(":TRIG:COUN 6;:TRAC:POIN 4;:TRAC:FEED SENS;:TRAC:FEED:CONT NEXT")
    values = [float(v) for v in client.query(":READ?").split(",")]
    assert len(values) == 12
    assert client.query(":TRAC:POIN:ACT?") == "4"
    assert client.query(":TRAC:FEED:CONT?") == "NEV"
    stored = [float(v) for v in client.query(":TRAC:DATA?").split(",")]
    assert stored == values[:8]
    client.send(":CALC3:FORM MEAN")
    _, mean_i = (float(v) for v in client.query(":CALC3:DATA?").split(","))
    assert mean_i == pytest.approx(sum(stored[1::2]) / 4, rel=1e-5)
    client.send(":CALC3:FORM PKPK")
    _, pkpk_i = (float(v) for v in client.query(":CALC3:DATA?").split(","))
    resolution = 1e-6 * max(abs(i) for i in stored[1::2])  # readings carry 7 digits
    assert pkpk_i == pytest.approx(max(stored[1::2]) - min(stored[1::2]), abs=resolution)
    client.send(":ARM:COUN 500")
    assert client.query(":SYST:ERR?").startswith("-221")
    client.send(":OUTP OFF")


@pytest.mark.parametrize("nplc", [0.1, 1.0, 10.0])
def test_2400_a_reading_takes_its_integration_time(smu2400, nplc):
    """A reading integrates NPLC line cycles per function measured (× the repeat filter's
    count) after the source delay: the answer comes that much later in cell time."""
    _, client, clock = smu2400
    client.send(f":SYST:LFR 50;:SENS:FUNC:OFF:ALL;:SENS:FUNC 'CURR';:SENS:CURR:NPLC {nplc};:SOUR:DEL 0")
    client.send(":SOUR:FUNC VOLT;:SOUR:VOLT 0;:OUTP ON")
    client.query(":READ?")  # after the source change's settling
    start = clock.now()
    client.query(":READ?")
    assert clock.now() - start == pytest.approx(nplc / 50.0, rel=1e-6)
    client.send(":SENS:AVER:TCON REP;:SENS:AVER:COUN 4;:SENS:AVER ON")
    start = clock.now()
    client.query(":READ?")
    assert clock.now() - start == pytest.approx(4 * nplc / 50.0, rel=1e-6)
    client.send(":OUTP OFF")


# --- Keithley 2400 over RS-232 (2400S-900-01 §10) -------------------------------------------------
def test_2400_rs232_pty_is_paced_at_the_baud_rate():
    """A serial line carries 10 bits a byte: 12 readings (~900 bytes) at 9600 baud cannot
    arrive in less than 0.9 s (a lower bound: a slow host only makes it later)."""
    import time

    import serial

    with serve_2400(SimParams(seed=5), transport="pty", baudrate=9600, clock=VirtualClock()) as server:
        port = serial.Serial(server.resource.removeprefix("ASRL").removesuffix("::INSTR"), 9600, timeout=10)
        port.write(b":SOUR:FUNC VOLT;:SOUR:VOLT 0;:OUTP ON;:TRIG:COUN 12\r")
        start = time.monotonic()
        port.write(b":READ?\r")
        reply = port.read_until(b"\r")
        elapsed = time.monotonic() - start
        port.write(b":OUTP OFF\r")
        port.close()
    assert reply.endswith(b"\r") and reply.count(b",") == 12 * 5 - 1
    assert elapsed >= len(reply) * 10 / 9600


def test_2400_driver_runs_a_protocol_over_rs232(tmp_path):
    """The driver over an ASRL resource (pyvisa-py serial, CR terminator, 57600 baud)
    runs an LSV staircase end to end and finds the emulated onset."""
    from tests.test_keithley_e2e import run_on_emulator

    params = {"upper": "4.2", "rate": "5", "resolution": "10", "rest": "5"}
    run = run_on_emulator(
        "keithley2400",
        "lsv",
        params,
        tmp_path,
        sim={"esw": 4.0, "ocv_bare": 3.5},
        options={"baudrate": "57600"},
        transport_options={"transport": "pty", "baudrate": 57600},
    )
    assert run.outcome.status.value == "completed", run.outcome.error
    assert abs(run.outcome.results["onset_V"] - 4.0) < 0.05
    assert not run.output_on


def test_2450_a_reading_takes_its_integration_time():
    """2450-901-01: a reading integrates NPLC line cycles of the measure function, repeated by
    the repeat filter's count, after the source delay."""
    from drivers.sim.wire.keithley import serve_2450

    clock = VirtualClock()
    with serve_2450(SimParams(seed=6), clock=clock) as server:
        client = Client(server.port)
        client.send(':SOUR:FUNC VOLT;:SOUR:VOLT 0;:SOUR:VOLT:DEL 0;:SENS:FUNC "CURR";:SENS:CURR:NPLC 5;:OUTP ON')
        client.query(":READ?")
        start = clock.now()
        client.query(":READ?")
        assert clock.now() - start == pytest.approx(5 / 60.0, rel=1e-6)
        client.send(":SENS:CURR:AVER:TCON REP;:SENS:CURR:AVER:COUN 3;:SENS:CURR:AVER ON")
        start = clock.now()
        client.query(":READ?")
        assert clock.now() - start == pytest.approx(3 * 5 / 60.0, rel=1e-6)
        client.send(":OUTP OFF")
        client.close()
