"""The Keithley wire emulators: SCPI parsing, the live cell behind them, and
pymeasure's own Keithley2450/2400 drivers driving them over pyvisa-py sockets."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from pymeasure.instruments.keithley import Keithley2400, Keithley2450

from drivers.kit.scpi import CommandTree, ScpiError, number, one
from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import context, drive
from drivers.sim.wire.keithley import serve_2400, serve_2450
from drivers.sim.wire.live_cell import CurrentSource, LiveCell, OpenCircuit, VoltageSource
from labctl.clock import ScaledClock, VirtualClock
from labctl.steps import ConstantCurrent, Limits

pytestmark = pytest.mark.timeout(60)


class Client:
    """A bare socket client: exact bytes, no VISA in between."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self.buffer = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def query(self, text: str, timeout: float = 2.0) -> str:
        self.send(text)
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        self.sock.close()


# --- the SCPI parser ---------------------------------------------------------------------
def tree() -> tuple[CommandTree, dict[str, float]]:
    state = {"level": 0.0, "limit": 21.0}
    t = CommandTree()
    t.add_common(lambda: "ACME,MODEL 1,1,1", lambda: state.update(level=0.0))

    def put(key: str):
        return lambda p: state.__setitem__(key, number(one(p), low=-10, high=10, default=0.0))

    t.add(
        "[SOURce[1]] CURRent [LEVel] [IMMediate] [AMPLitude]", set=put("level"), query=lambda _: f"{state['level']:g}"
    )
    t.add("[SOURce[1]] CURRent VLIMit [LEVel]", set=put("limit"), query=lambda _: f"{state['limit']:g}")
    t.add("SYSTem ERRor [NEXT]", query=lambda _: '{},"{}"'.format(*t.status.pop()))
    return t, state


def test_mnemonics_short_long_optional_nodes_and_suffix() -> None:
    t, state = tree()
    for message, level in ((":SOUR:CURR 1", 1), ("source1:current:level:immediate 2", 2), (":CURRENT:AMPL 3", 3)):
        assert t.execute(message) is None
        assert state["level"] == level
    assert t.execute(":sour:curr?") == "3"
    assert t.execute("SYST:ERR?") == '0,"No error"'


def test_compound_messages_keep_the_path_and_join_replies() -> None:
    t, state = tree()
    assert t.execute(":SOUR:CURR:LEV 0.5;VLIM 2;:SOUR:CURR:VLIM?;LEV?;*IDN?") == "2;0.5;ACME,MODEL 1,1,1"
    assert state == {"level": 0.5, "limit": 2.0}
    assert t.execute(":SOUR:CURR?;VLIM?") == "0.5"  # then VLIM? is :SOUR:VLIM?, undefined
    assert t.execute("SYST:ERR?").startswith("-113")
    assert t.execute("*RST;:*CLS;") is None  # pymeasure's reset() sends this form


@pytest.mark.parametrize(
    ("message", "code"),
    [(":SOUR:VOLT 1", -113), (":SOUR:CURR", -109), (":SOUR:CURR abc", -104), (":SOUR:CURR 99", -222), ("*XYZ", -113)],
)
def test_errors_are_queued_by_scpi_code_and_stop_the_message(message: str, code: int) -> None:
    t, state = tree()
    assert t.execute(f"{message};:SOUR:CURR 7") is None
    assert state["level"] == 0.0  # the rest of the message was not executed
    assert t.execute("SYST:ERR?").startswith(f"{code},")
    assert t.status.esr & (32 if code <= -100 and code > -200 else 16)


def test_error_queue_overflow_keeps_the_oldest() -> None:
    t, _ = tree()
    for _ in range(15):
        t.execute(":NOPE")
    errors = [t.execute("SYST:ERR?") for _ in range(11)]
    assert errors[0].startswith("-113") and errors[9] == '-350,"Queue overflow"' and errors[10] == '0,"No error"'


def test_scpi_error_carries_code() -> None:
    assert ScpiError(-224, "Illegal parameter value").code == -224


# --- the live cell -------------------------------------------------------------------------
def test_live_cell_is_the_simulators_physics_split_into_readings() -> None:
    """A constant current read every 10 s on the live cell = one simulator step sampled every 10 s."""
    ref = SimChannel(SimParams(noise_v=0, noise_i=0), "li_li", VirtualClock())
    whole = drive(
        ref, ConstantCurrent(current=-5e-4, limits=Limits(max_time=600.0), sample_period=10.0), context(ref, 0.0)
    )
    clock = VirtualClock()
    cell = LiveCell(SimParams(noise_v=0, noise_i=0), "li_li", clock=clock)
    t0 = clock.now()
    cell.set_source(CurrentSource(-5e-4, 5.0))
    volts = []
    for k in range(1, 61):
        clock.sleep_until(t0 + 10.0 * k)
        volts.append(cell.read().E)
    assert np.max(np.abs(np.array(volts) - whole.data["E"][1:])) < 1e-9


def test_live_cell_clamps_at_the_limits_like_an_smu() -> None:
    clock = VirtualClock()
    cell = LiveCell(SimParams(), "li_li", clock=clock)
    cell.set_source(CurrentSource(1e-2, 0.2))  # 10 mA into ~130 Ω wants 1.3 V: clamped at 0.2 V
    clock.sleep(5.0)
    r = cell.read()
    assert r.limited and cell.clamped
    assert pytest.approx(0.2, abs=1e-3) == r.E and 0 < r.I < 1e-2
    cell.set_source(VoltageSource(0.5, 1e-4))  # the current limit holds 0.1 mA below 0.5 V
    clock.sleep(5.0)
    r = cell.read()
    assert r.limited and pytest.approx(1e-4, rel=1e-3) == r.I and r.E < 0.5
    cell.set_source(VoltageSource(0.005, 1e-2))  # within the limit: a plain potentiostatic hold
    clock.sleep(5.0)
    r = cell.read()
    assert not cell.clamped and pytest.approx(0.005, abs=1e-4) == r.E
    cell.force_limit()
    assert cell.read().limited and cell.clamped
    cell.set_source(OpenCircuit())
    assert not cell.read().limited and cell.read().I == 0.0


# --- the emulators over TCP ------------------------------------------------------------------
def test_2450_speaks_scpi_over_its_socket() -> None:
    with serve_2450(SimParams(), speed=100.0, cell_type="li_li") as srv:
        c = Client(srv.port)
        try:
            assert c.query("*IDN?") == "KEITHLEY INSTRUMENTS,MODEL 2450,04512450,1.7.12b"
            assert c.query("*LANG?") == "SCPI"
            c.send(":SOUR:BOGUS 1")
            assert (
                c.query(":SYST:ERR:COUN?;:SYST:ERR:NEXT?;:SYST:ERR:NEXT?")
                == '1;-113,"Undefined header; :SOUR:BOGUS";0,"No error"'
            )
            c.send(':SOUR:FUNC CURR;:SENS:FUNC "VOLT";:SOUR:CURR:VLIM 0.05;:SOUR:CURR 0.01;:OUTP ON')
            time.sleep(0.02)
            value, _source, status = c.query(':READ? "defbuffer1", READ, SOUR, SOURSTAT').split(",")
            assert float(value) == pytest.approx(0.05, abs=1e-3)  # clamped at the voltage limit
            assert int(status) == 128 | 32 | 8  # output on, limited, read-back
            assert c.query(":SOUR:CURR:VLIM:TRIP?;:SOUR:VOLT:ILIM:TRIP?;:OUTP?") == "1;0;1"
            assert float(c.query(":MEAS:VOLT?")) == pytest.approx(0.05, abs=1e-3)
            assert float(c.query(":MEAS:CURR?")) < 1e-2  # the limit holds the current below 10 mA
            assert c.query(":SENS:FUNC?") == '"CURR:DC"'  # :MEASure:<f>? leaves its function selected
            assert int(c.query(":TRAC:ACT?")) == 3
            c.send(":OUTP OFF")
            assert c.query(":OUTP?;:SOUR:CURR:VLIM:TRIP?") == "0;0" and not srv.output_on
        finally:
            c.close()


def test_2400_refuses_a_reading_with_the_output_off_and_reports_compliance_in_the_status_word() -> None:
    with serve_2400(SimParams(), speed=100.0, cell_type="li_li") as srv:
        c = Client(srv.port)
        try:
            assert c.query("*IDN?").startswith("KEITHLEY INSTRUMENTS INC.,MODEL 2400,")
            with pytest.raises(TimeoutError):
                c.query(":READ?", timeout=0.3)  # no reply ...
            assert c.query(":SYST:ERR?") == '803,"Output disabled"'  # ... and the reason queued
            c.send(":SOUR:FUNC CURR;:SENS:VOLT:PROT 0.2;:SOUR:CURR 0.01;:OUTP 1")
            time.sleep(0.02)
            fields = c.query(":READ?").split(",")
            assert len(fields) == 5 and float(fields[0]) == pytest.approx(0.2, abs=1e-3)
            assert int(float(fields[4])) & 8  # status word bit 3: in compliance
            assert c.query(":SENS:VOLT:PROT:TRIP?") == "1"
            c.send(":FORM:ELEM CURR,TIME")
            assert len(c.query(":READ?").split(",")) == 2
        finally:
            c.close()


def test_normal_output_off_state_drains_a_charged_cell_and_himp_does_not() -> None:
    """The 2450's *RST off-state is a 0 V source (0.5 % of range limit) on the terminals:
    on a charged cell it sinks current even with the output "off"; HIMP opens the relay."""
    with serve_2450(SimParams(soc0=0.5), speed=100.0, cell_type="full") as srv:
        c = Client(srv.port)
        try:
            c.send('*RST;:SOUR:FUNC CURR;:SENS:FUNC "CURR"')
            time.sleep(0.02)
            assert float(c.query(":READ?")) == pytest.approx(-5e-7, rel=1e-2)  # the cell discharging
            c.send(":OUTP:CURR:SMOD HIMP")
            assert float(c.query(":READ?")) == 0.0
        finally:
            c.close()


def test_pymeasure_keithley2450_drives_the_emulator() -> None:
    """pymeasure's own Keithley2450 (unmodified) over pyvisa-py: source a current, set the
    voltage limit, enable the output, read the voltage; it is the cell's ohmic response."""
    with serve_2450(SimParams(), speed=1.0, cell_type="li_li") as srv:
        smu = Keithley2450(
            srv.resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=2000
        )
        try:
            assert "MODEL 2450" in smu.id
            smu.reset()
            smu.apply_current(compliance_voltage=1.0)
            smu.measure_voltage()
            smu.source_current = 1e-4
            smu.enable_source()
            voltage = smu.voltage
            truth = srv.truth()["model"]
            ohmic = 1e-4 * (truth["r_series"] + truth["r_ionic"] + truth["r_int"])  # before diffusion builds up
            assert voltage == pytest.approx(ohmic, rel=0.02)
            assert smu.source_enabled and smu.compliance_voltage == 1.0 and smu.source_mode == "current"
            assert smu.check_errors() == []
            smu.source_current = 0.05  # 50 mA would need ~6 V: the 1 V limit holds
            assert smu.voltage == pytest.approx(1.0, abs=1e-3)
            assert smu.ask(":SOUR:CURR:VLIM:TRIP?").strip() == "1"
            smu.shutdown()
            assert smu.complete == "1" and not srv.output_on
        finally:
            smu.adapter.close()


def test_pymeasure_keithley2400_drives_the_emulator() -> None:
    with serve_2400(SimParams(), speed=1.0, cell_type="li_li") as srv:
        smu = Keithley2400(
            srv.resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=2000
        )
        try:
            smu.reset()
            smu.source_mode = "current"
            smu.compliance_voltage = 1.0
            smu.source_current = 1e-4
            smu.source_enabled = True
            data = smu.measure_all()
            assert data["current"] == pytest.approx(1e-4, rel=1e-3)
            assert 0.005 < data["voltage"] < 0.02 and not data["status"] & 8
            smu.shutdown()
            assert smu.complete == "1" and not srv.output_on
        finally:
            smu.adapter.close()


def test_connections_share_one_instrument_and_a_drop_keeps_the_output() -> None:
    """Like the real instrument: the output state belongs to the SMU, not to the connection."""
    with serve_2450(SimParams(), speed=10.0, cell_type="li_li") as srv:
        a, b = Client(srv.port), Client(srv.port)
        try:
            a.send(":SOUR:FUNC CURR;:SOUR:CURR 1e-5;:OUTP ON")
            assert a.query("*OPC?") == "1"  # a's commands are done before b looks
            assert b.query(":OUTP?") == "1"
            srv.drop()
            time.sleep(0.05)
            assert srv.output_on
            c = Client(srv.port)
            assert c.query(":OUTP OFF;:OUTP?") == "0"
            c.close()
        finally:
            a.close()
            b.close()


def test_emulator_clock_runs_at_its_speed() -> None:
    with serve_2450(SimParams(), speed=50.0, cell_type="li_li") as srv:
        c = Client(srv.port)
        try:
            t1 = float(c.query(':READ? "defbuffer1", REL'))
            time.sleep(0.1)
            rel, sec, frac = c.query(':READ? "defbuffer1", REL, SEC, FRAC').split(",")
            assert float(rel) - t1 == pytest.approx(5.0, rel=0.3)  # the instrument's clock runs 50x
            assert abs(int(sec) + float(frac) - time.time()) < 3600.0  # UTC, as real ones keep it
            assert isinstance(srv.cell.clock, ScaledClock)
        finally:
            c.close()
    assert threading.active_count() < 50
