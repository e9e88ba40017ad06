"""Keithley SMU driver, byte-exact: the messages it sends and how it reads the replies.

pymeasure's ``expected_protocol`` pins the exact bytes (terminators excluded) of
the dialect layer; the parsers must refuse anything that is not the form the
manuals give (a garbled reading must never become a sample).
"""

from __future__ import annotations

import math

import pytest
from pymeasure.test import expected_protocol

from drivers.keithley.acquisition import Acquisition
from drivers.keithley.instruments import (
    Dialect2400,
    Dialect2450,
    Smu2400,
    Smu2450,
    parse_error,
    parse_identity,
)
from drivers.keithley.options import SmuOptions
from drivers.keithley.smu import STEP_KINDS, create_2400, create_2450
from drivers.keithley.timebase import Timebase
from labctl.channel import GarbledReply
from labctl.clock import RealClock, ScaledClock
from labctl.steps import EndReason, Limits

FORMAT_2400 = (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None)  # pymeasure's __init__


def test_2450_configure_opens_the_relay_in_the_reset_message() -> None:
    with expected_protocol(
        Smu2450,
        [
            ("*RST;*CLS;:OUTP:CURR:SMOD HIMP;:OUTP:VOLT:SMOD HIMP", None),
            (":SOUR:CURR:READ:BACK 1", None),
            (":SOUR:VOLT:READ:BACK 1", None),
            (":SENS:CURR:NPLC 1", None),
            (":SENS:VOLT:NPLC 1", None),
            (":SENS:CURR:RANG:AUTO 1;:SENS:VOLT:RANG:AUTO 1;:SOUR:CURR:RANG:AUTO 1;:SOUR:VOLT:RANG:AUTO 1", None),
        ],
    ) as inst:
        Dialect2450(inst).configure(reset=True, nplc=1.0)


def test_2450_step_start_is_one_message_with_its_first_reading() -> None:
    message = (
        ':SOUR:CURR:LEV -0.0005;:SOUR:CURR:VLIM 1.5;:SENS:FUNC "VOLT";:SOUR:FUNC CURR;OUTPUT ON;'
        ':READ? "defbuffer1", READ, SOUR, SOURSTAT, SEC, FRAC;:SYST:ERR:COUN?'
    )
    with expected_protocol(Smu2450, [(message, "-5.123400E-02,-4.999100E-04,136,1763776812,0.345678900;0")]) as inst:
        dev = Dialect2450(inst)
        before = (*dev.start_commands("CURR", -5e-4, 1.5, switch=True), dev.output_command(True))
        point = dev.read("CURR", before)
    assert pytest.approx(-0.051234) == point.E
    assert pytest.approx(-4.9991e-4) == point.I
    assert point.tau == pytest.approx(1763776812.3456789, abs=1e-6)
    assert not point.limited and point.errors == 0


def test_2450_voltage_source_reads_current_as_the_reading_and_flags_the_limit() -> None:
    message = ':READ? "defbuffer1", READ, SOUR, SOURSTAT, SEC, FRAC;:SOUR:VOLT:LEV 0.004;:SYST:ERR:COUN?'
    with expected_protocol(Smu2450, [(message, "1.000000E-03,2.000000E-03,168,1763776812,0.5;2")]) as inst:
        point = Dialect2450(inst).read("VOLT", after=(":SOUR:VOLT:LEV 0.004",))
    assert (pytest.approx(2e-3), pytest.approx(1e-3)) == (point.E, point.I)  # SOUR = V, READ = I
    assert point.limited  # source status bit 5 (32)
    assert point.errors == 2


def test_2450_error_queue_and_trip_queries() -> None:
    with expected_protocol(
        Smu2450,
        [
            (":SYST:ERR:NEXT?", '-113,"Undefined header"'),
            (":SOUR:CURR:VLIM:TRIP?", "1"),
            (":SOUR:VOLT:ILIM:TRIP?", "0"),
        ],
    ) as inst:
        dev = Dialect2450(inst)
        assert dev.next_error() == (-113, "Undefined header")
        assert dev.tripped("CURR") is True
        assert dev.tripped("VOLT") is False


def test_2400_configure_and_compound_reading() -> None:
    reply = "+4.000000E+00,+1.000000E-03,+9.910000E+37,+1.2500000000E+02,+3.686400E+04;0"
    with expected_protocol(
        Smu2400,
        [
            FORMAT_2400,
            ("*RST;*CLS;:OUTP:SMOD HIMP", None),
            (':SENS:FUNC:CONC 1;:SENS:FUNC:ON "VOLT","CURR"', None),
            FORMAT_2400,
            (":SENSE:CURRENT:NPLCYCLES 0.1", None),
            (":SENSE:VOLTAGE:NPLCYCLES 0.1", None),
            (":SENS:CURR:RANG:AUTO 1;:SENS:VOLT:RANG:AUTO 1;:SOUR:CURR:RANG:AUTO 1;:SOUR:VOLT:RANG:AUTO 1", None),
            (":SOUR:CLE:AUTO 0", None),
            (":SOUR:CURR 0.001;:SENS:VOLT:PROT 4.5;OUTPUT 1;:READ?;:SYST:ERR:COUN?", reply),
        ],
    ) as inst:
        dev = Dialect2400(inst)
        dev.configure(reset=True, nplc=0.1)
        point = dev.read("CURR", (*dev.start_commands("CURR", 1e-3, 4.5, switch=False), dev.output_command(True)))
    assert (point.E, point.I, point.tau) == (4.0, 1e-3, 125.0)
    assert not point.limited  # 36864 = V-meas | I-meas... without bit 3
    with expected_protocol(
        Smu2400, [FORMAT_2400, (":READ?;:SYST:ERR:COUN?", reply.replace("+3.686400E+04", "+8.0E+00"))]
    ) as inst:
        assert Dialect2400(inst).read("CURR").limited  # status word bit 3: in compliance


@pytest.mark.parametrize(
    "reply",
    [
        "ktjvhtj#?",  # what the emulator's garble fault makes of a reply
        "1.0,2.0,136,17;0",  # a field missing
        "1.0,2.0,136,17,0.5",  # no error count
        "1.0,nan,136,17,0.5;0",  # not finite
        "1.0,2.0,13.5,17,0.5;0",  # status is not a bit field
        "1.0,2.0,136,17.5,0.5;0",  # whole seconds are not whole
        "1.0,2.0,136,17,0.5;-1",  # a negative count
    ],
)
def test_2450_garbled_readings_are_refused(reply: str) -> None:
    with (
        expected_protocol(
            Smu2450, [(':READ? "defbuffer1", READ, SOUR, SOURSTAT, SEC, FRAC;:SYST:ERR:COUN?', reply)]
        ) as inst,
        pytest.raises(GarbledReply),
    ):
        Dialect2450(inst).read("CURR")


def test_identity_and_error_parsers() -> None:
    ident = parse_identity("KEITHLEY INSTRUMENTS INC.,MODEL 2400,1234567,C32   Oct  4 2010 14:20:11/A02  /S/K")
    assert (ident.vendor, ident.model, ident.serial) == ("KEITHLEY INSTRUMENTS INC.", "2400", "1234567")
    assert ident.firmware == "C32 Oct 4 2010 14:20:11/A02 /S/K"
    assert parse_error('+803,"Output disabled"') == (803, "Output disabled")
    for bad in ("KEITHLEY", "ktjvhtj#?"):
        with pytest.raises(GarbledReply):
            parse_identity(bad)
    with pytest.raises(GarbledReply):
        parse_error("-113 Undefined header")


def test_options_are_checked_by_name() -> None:
    opts = SmuOptions.parse({"clock_speed": "200", "nplc": 0.1, "reset": "false", "timeout_ms": 300})
    assert (opts.clock_speed, opts.nplc, opts.reset, opts.timeout_ms) == (200.0, 0.1, False, 300.0)
    with pytest.raises(ValueError, match=r"unknown Keithley option.*complaince_voltage"):
        SmuOptions.parse({"complaince_voltage": 5})
    with pytest.raises(ValueError, match=r"nplc=20\.0 is out of range"):
        SmuOptions.parse({"nplc": 20})
    with pytest.raises(ValueError, match="not a number"):
        SmuOptions.parse({"compliance_voltage": "ten"})


def test_factories_capabilities_and_clock() -> None:
    ch = create_2450("TCPIP::127.0.0.1::5025::SOCKET", {"clock_speed": 50, "compliance_voltage": 5}, RealClock())
    assert isinstance(ch.clock, ScaledClock) and ch.clock.speed == 50
    assert ch.capabilities.step_kinds == STEP_KINDS
    assert "Impedance" not in ch.capabilities.step_kinds and "SetTemperature" not in ch.capabilities.step_kinds
    assert ch.capabilities.voltage_range == (-5.0, 5.0)
    clock = RealClock()
    assert create_2400("GPIB0::24::INSTR", None, clock).clock is clock


def test_timebase_narrows_to_the_fastest_round_trip_and_restarts_on_a_jump() -> None:
    tb = Timebase()
    assert not tb.observe(100.0, 140.0, 10.0)  # slow first reply: offset in [90, 130]
    assert tb.offset == pytest.approx(110.0)
    assert not tb.observe(160.0, 161.0, 69.5)  # fast: [90.5, 91.5]
    assert tb.offset == pytest.approx(91.0) and tb.uncertainty == pytest.approx(0.5)
    assert tb.observe(200.0, 201.0, 5.0)  # time stamps went back: a reset of the instrument's clock
    assert tb.offset == pytest.approx(195.5)


def test_acquisition_falls_back_to_host_time_when_the_instrument_clock_rolls_over() -> None:
    acq = Acquisition(Limits(max_time=100.0), t_start=0.0, max_block_wall=0.25)
    acq.add(0.0, 0.1, 1e-3, tau=99999.0)
    acq.add(2.0, 0.1, 1e-3, tau=1.0)  # the 2400's stamp restarted
    assert acq.charge == pytest.approx(2e-3)


def test_acquisition_integrates_charge_over_instrument_stamps_and_keeps_the_limit_row() -> None:
    acq = Acquisition(Limits(max_charge=1e-3, max_time=100.0), t_start=50.0, max_block_wall=0.25)
    assert acq.add(50.0, 0.1, 1e-4, tau=7.0) is None  # the first reading: Q = 0
    assert acq.add(55.3, 0.1, 1e-4, tau=12.0) is None  # host time is late; the stamps say 5 s
    assert acq.charge == pytest.approx(5e-4)
    assert acq.charge_eta() == pytest.approx(60.3)
    assert acq.add(60.0, 0.1, 1e-4, tau=17.0) is EndReason.CHARGE
    block = acq.block()
    assert len(block) == 3 and block["Q"][-1] == pytest.approx(1e-3) and math.isnan(block["T"][0])
    assert len(acq.block()) == 0
