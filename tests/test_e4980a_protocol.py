"""E4980A: the bytes the driver sends (pymeasure ``expected_protocol``), its reply
parsers, and the emulator's SCPI command handling without a socket."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from drivers.keysight.e4980a import (
    E4980AChannel,
    E4980AInstrument,
    E4980AOptions,
    parse_error,
    parse_idn,
    parse_list_data,
)
from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import drive
from drivers.sim.wire.e4980a import E4980AModel, ascii_number, execute, parameter_pair
from labctl.channel import GarbledReply, InstrumentErrorCode, StepContext, UnsupportedStep
from labctl.clock import VirtualClock
from labctl.steps import EndReason, Impedance, Rest

NO_ERROR = '+0,"No error"'

CONFIGURE = [
    (":ABOR", None),
    (":FORM:DATA ASC", None),
    (":FORM:ASC:LONG 1", None),
    (":FUNC:IMP:TYPE RX", None),
    (":FUNC:IMP:RANG:AUTO 1", None),
    (":APER MED,1", None),
    (":VOLT:LEV 0.01", None),
    (":BIAS:STAT 0", None),
    (":TRIG:SOUR BUS", None),
    (":LIST:MODE SEQ", None),
    (":DISP:PAGE LIST", None),
    (":INIT:CONT 1", None),
    (":SYST:ERR?", NO_ERROR),
]
SAFE = [
    (":BIAS:STAT 0", None),
    (":ABOR", None),
    (":TRIG:SOUR HOLD", None),
    (":VOLT:LEV 0", None),
    (":BIAS:STAT?", "0"),
]


def channel_on(inst: E4980AInstrument, **options) -> E4980AChannel:
    return E4980AChannel(inst, VirtualClock(), E4980AOptions(**options))


def ctx_for(ch: E4980AChannel) -> StepContext:
    return StepContext(clock=ch.clock, t_origin=0.0, interrupt=threading.Event())


def test_identify_reads_idn_and_options():
    pairs = [("*IDN?", "Keysight Technologies,E4980A,MY46101234,A.02.11"), ("*OPT?", "001,200")]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        info = channel_on(inst).identify()
    assert (info.model, info.serial, info.firmware) == ("Keysight Technologies E4980A", "MY46101234", "A.02.11")
    assert info.extra["options"] == "001,200"


def test_option_001_widens_level_and_bias():
    with expected_protocol(E4980AInstrument, [("*IDN?", "Agilent Technologies,E4980A,X,A"), ("*OPT?", "0")]) as inst:
        ch = channel_on(inst)
        ch.identify()
    assert ch.capabilities.voltage_range == (-2.0, 2.0)
    with expected_protocol(E4980AInstrument, [("*IDN?", "Agilent Technologies,E4980A,X,A"), ("*OPT?", "001")]) as inst:
        ch = channel_on(inst)
        ch.identify()
    assert ch.capabilities.voltage_range == (-40.0, 40.0)


def test_list_sweep_step_is_exactly_these_bytes():
    """Set up, one bus-triggered list, poll the event register, fetch, check errors."""
    data = ",".join(
        f"{ascii_number(r, True)},{ascii_number(x, True)},+0,+0"
        for r, x in ((100.0, -50.0), (150.0, -20.0), (160.0, -5.0))
    )
    pairs = [
        *CONFIGURE,
        (":LIST:FREQ 100000,10000,1000", None),
        (":STAT:OPER:EVEN?", "0"),
        (":TRIG:IMM", None),
        (":STAT:OPER:EVEN?", "24"),
        (":FETC?", data),
        (":SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        ran = drive(ch, Impedance(f_start=1e5, f_stop=1e3, points_per_decade=1, amplitude=0.01), ctx_for(ch))
    assert ran.outcome.end_reason is EndReason.COMPLETED
    np.testing.assert_allclose(ran.data["freq"], [1e5, 1e4, 1e3])
    np.testing.assert_allclose(ran.data["z_re"], [100.0, 150.0, 160.0])
    np.testing.assert_allclose(ran.data["z_im"], [-50.0, -20.0, -5.0])
    assert np.all(np.diff(ran.data["t"]) > 0)
    assert np.all(ran.data["E_dc"] == 0.0) and np.all(np.isnan(ran.data["T"]))


def test_polls_until_the_list_sweep_complete_bit():
    pairs = [
        *CONFIGURE,
        (":LIST:FREQ 1000,100", None),
        (":STAT:OPER:EVEN?", "16"),  # a stale spot-measurement event, cleared by reading
        (":TRIG:IMM", None),
        (":STAT:OPER:EVEN?", "0"),
        (":STAT:OPER:EVEN?", "16"),
        (":STAT:OPER:EVEN?", "8"),
        (":FETC?", "+1.0E+02,-1.0E+00,+0,+0,+2.0E+02,-2.0E+00,+3,+0"),  # status +3: data kept
        (":SYST:ERR?", NO_ERROR),
    ]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        ran = drive(ch, Impedance(f_start=1e3, f_stop=1e2, points_per_decade=1, amplitude=0.01), ctx_for(ch))
    assert ran.outcome.end_reason is EndReason.COMPLETED and len(ran.data) == 2


def test_biased_sweep_switches_bias_on_then_off():
    configure = [p for p in CONFIGURE if p[0] != ":BIAS:STAT 0"]
    at = configure.index((":VOLT:LEV 0.01", None)) + 1
    configure[at:at] = [(":BIAS:VOLT:LEV 0.5", None), (":BIAS:STAT 1", None)]
    pairs = [
        *configure,
        (":LIST:FREQ 1000,100", None),
        (":STAT:OPER:EVEN?", "0"),
        (":TRIG:IMM", None),
        (":STAT:OPER:EVEN?", "8"),
        (":FETC?", "+1.0E+02,-1.0E+00,+0,+0,+2.0E+02,-2.0E+00,+0,+0"),
        (":SYST:ERR?", NO_ERROR),
        (":BIAS:STAT 0", None),
    ]
    step = Impedance(f_start=1e3, f_stop=1e2, points_per_decade=1, amplitude=0.01, bias=0.5, bias_vs_ocv=False)
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        ran = drive(ch, step, ctx_for(ch))
    assert np.all(ran.data["E_dc"] == 0.5)


def test_error_queue_entry_ends_the_step_with_the_instruments_code():
    pairs = [*CONFIGURE[:-1], (":SYST:ERR?", '-222,"Data out of range"'), (":SYST:ERR?", NO_ERROR)]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        with pytest.raises(InstrumentErrorCode) as err:
            drive(ch, Impedance(f_start=1e3, f_stop=1e2, points_per_decade=1, amplitude=0.01), ctx_for(ch))
    assert err.value.code == -222 and "Data out of range" in str(err.value)


def test_overloaded_point_is_a_fault_after_the_good_points():
    pairs = [
        *CONFIGURE,
        (":LIST:FREQ 1000,100", None),
        (":STAT:OPER:EVEN?", "0"),
        (":TRIG:IMM", None),
        (":STAT:OPER:EVEN?", "8"),
        (":FETC?", "+1.0E+02,-1.0E+00,+0,+0,+9.9E+37,+9.9E+37,+1,+0"),
    ]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        gen = ch.run_step(Impedance(f_start=1e3, f_stop=1e2, points_per_decade=1, amplitude=0.01), ctx_for(ch))
        blocks = []
        with pytest.raises(InstrumentErrorCode, match="overload at 100 Hz"):
            for block in gen:
                blocks.append(block)
    measured = np.concatenate([b for b in blocks if len(b)])
    assert measured["freq"].tolist() == [1000.0]


def test_rest_is_output_off_and_only_time():
    pairs = [(":BIAS:STAT 0", None), (":ABOR", None)]
    with expected_protocol(E4980AInstrument, pairs) as inst:
        ch = channel_on(inst)
        ran = drive(ch, Rest(duration=10.0, sample_period=2.0), ctx_for(ch))
    assert ran.outcome.end_reason is EndReason.COMPLETED
    np.testing.assert_allclose(ran.data["t"], [2, 4, 6, 8, 10])
    assert np.all(ran.data["I"] == 0) and np.all(np.isnan(ran.data["E"]))


def test_safe_state_bytes_and_verification():
    with expected_protocol(E4980AInstrument, SAFE) as inst:
        channel_on(inst).safe_state()


def test_refusals_before_anything_is_sent():
    with expected_protocol(E4980AInstrument, []) as inst:
        ch = channel_on(inst)
        assert "outside" in ch.capabilities.refusal(Impedance(f_start=1e5, f_stop=1.0))
        assert ch.capabilities.refusal(Impedance(f_start=2e6, f_stop=20.0)) is None
        assert "galvanostatic" in ch.capabilities.refusal(Impedance(f_start=1e5, f_stop=100, mode="galvanostatic"))
        for step in (
            Impedance(f_start=1e5, f_stop=100, amplitude=5.0),
            Impedance(f_start=1e5, f_stop=100, bias=0.1),  # relative to OCV
        ):
            with pytest.raises(UnsupportedStep):
                drive(ch, step, ctx_for(ch))


def test_reply_parsers():
    assert parse_error('+0,"No error"') == (0, "No error")
    assert parse_error('-113,"Undefined header"') == (-113, "Undefined header")
    assert parse_idn("Keysight Technologies,E4980A,MY1,B.07.02")[1:] == ("E4980A", "MY1", "B.07.02")
    points = parse_list_data("+1.0E+02,-2.0E+00,+0,+0,+9.9E+37,+9.9E+37,+1,-1", 2)
    assert (points[1].status, points[1].in_out, points[0].b) == (1, -1, -2.0)
    for bad in ("ictcvv#?", "+1.0E+02,-2.0E+00,+0", "+1.0E+02,x,+0,+0"):
        with pytest.raises(GarbledReply):
            parse_list_data(bad, 1)
    with pytest.raises(GarbledReply):
        parse_error("#?garbage")


# --- the emulator's command handling ------------------------------------------------------


@pytest.fixture
def meter() -> E4980AModel:
    return E4980AModel(SimChannel(SimParams(sigma=1e-6, thickness=200.0), "ss", VirtualClock()))


def test_emulator_long_short_and_optional_forms(meter):
    assert execute(meter, "*IDN?").split(",")[1] == "E4980A"
    execute(meter, ":SENSe:FUNCtion:IMPedance:TYPE ZTD")
    assert execute(meter, "FUNC:IMP?") == "ZTD"
    execute(meter, ":func:imp:type rx")
    assert execute(meter, ":FUNCtion:IMPedance:TYPE?") == "RX"
    execute(meter, ":VOLT 10MV")
    assert float(execute(meter, ":SOUR:VOLT:LEV?")) == pytest.approx(0.01)
    execute(meter, ":TRIG:SEQ1:SOUR BUS")
    assert execute(meter, ":TRIGger:SOURce?") == "BUS"
    execute(meter, ":APER LONG,4")
    assert execute(meter, ":APER?") == "LONG,4"
    assert execute(meter, ":SYST:ERR?") == NO_ERROR


def test_emulator_errors_go_to_the_queue_oldest_first(meter):
    assert execute(meter, ":FOO:BAR 1") is None
    assert execute(meter, ":VOLT 50") is None
    assert execute(meter, ":LIST:FREQ " + ",".join(["1000"] * 202)) is None
    assert execute(meter, ":FETC?") is None  # nothing measured yet
    assert execute(meter, ":SYST:ERR?") == '-113,"Undefined header"'
    assert execute(meter, ":SYST:ERR?") == '-222,"Data out of range"'
    assert execute(meter, ":SYST:ERR:NEXT?") == '-108,"Too many list points"'
    assert execute(meter, ":SYST:ERR?") == '-230,"Data corrupt or stale"'
    assert execute(meter, ":SYST:ERR?") == NO_ERROR


def test_emulator_list_sweep_measures_the_cell(meter):
    for command in (":FUNC:IMP RX", ":FORM:ASC:LONG ON", ":TRIG:SOUR BUS", ":DISP:PAGE LIST", ":INIT:CONT ON"):
        execute(meter, command)
    execute(meter, ":LIST:FREQ 1e5,1e3,20")
    assert execute(meter, ":TRIG") is None
    meter.wait_done()
    assert int(execute(meter, ":STAT:OPER:EVEN?")) & 0x08
    assert execute(meter, ":STAT:OPER:EVEN?") == "0"  # reading clears it
    values = [float(v) for v in execute(meter, ":FETC?").split(",")]
    assert len(values) == 12 and values[2::4] == [0.0, 0.0, 0.0]
    truth = meter.sim.bench.cell.impedance(meter.sim.bench.state, np.array([1e5, 1e3, 20.0]), 25.0)
    np.testing.assert_allclose(values[0::4], truth.real, rtol=0.02)
    np.testing.assert_allclose(values[1::4], truth.imag, rtol=0.05, atol=0.01 * np.abs(truth).max())


def test_parameter_pairs_agree():
    z, f = complex(100.0, -50.0), 1000.0
    w = 2 * np.pi * f
    assert parameter_pair("RX", z, f) == (100.0, -50.0)
    mag, deg = parameter_pair("ZTD", z, f)
    assert mag == pytest.approx(abs(z)) and deg == pytest.approx(np.degrees(np.angle(z)))
    cs, rs = parameter_pair("CSRS", z, f)
    assert complex(rs, -1 / (w * cs)) == pytest.approx(z)
    cp, rp = parameter_pair("CPRP", z, f)
    assert 1 / complex(1 / rp, w * cp) == pytest.approx(z)
