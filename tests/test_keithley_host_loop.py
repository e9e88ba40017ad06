"""The SMU channel's host-timed loop, byte for byte, per model.

The channel is built on pymeasure's ``expected_protocol`` adapter through its
``connect`` seam, so every message of a whole step sequence is pinned: the
configuration before the first step, a Rest (0 A source, read on the sample
grid until its duration), a ConstantCurrent that ends at a voltage cutoff (the
clamp set just outside the cutoff, 0 A set at once when the cutoff is met),
then the safe state. Time is a ``VirtualClock``; the instrument's time stamps
in the replies place the samples, so nothing depends on the machine's speed.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from drivers.keithley.instruments import Dialect2400, Dialect2450, Smu2400, Smu2450
from drivers.keithley.options import SmuOptions
from drivers.keithley.smu import KeithleySmuChannel
from drivers.sim.drive import drive
from labctl.channel import StepContext
from labctl.clock import VirtualClock
from labctl.steps import ConstantCurrent, EndReason, Limits, Rest

READ_2450 = ':READ? "defbuffer1", READ, SOUR, SOURSTAT, SEC, FRAC;:SYST:ERR:COUN?'
FORMAT_2400 = (":FORMAT:ELEMENTS VOLTAGE, CURRENT, RESISTANCE, TIME, STATUS", None)  # pymeasure's __init__
AUTORANGE = ":SENS:CURR:RANG:AUTO 1;:SENS:VOLT:RANG:AUTO 1;:SOUR:CURR:RANG:AUTO 1;:SOUR:VOLT:RANG:AUTO 1"

REST = Rest(duration=1.0, sample_period=0.5)
#: Charges from 3.1 V: the cutoff 3.5 V is met at the third reading (3.6 V).
CHARGE = ConstantCurrent(current=1e-3, limits=Limits(voltage_above=3.5), sample_period=0.5)
#: Cell voltages read: rest at 3.1 V, then the charge rising 3.2, 3.4, 3.6 V.
REST_V = (3.1, 3.1, 3.1)
CHARGE_V = (3.2, 3.4, 3.6)
#: The voltage clamp of the charge: max(cutoff, the cell's voltage) + voltage_margin.
CLAMP = "4"


def reply_2450(volts: float, amps: float, seconds: float, sourcing_current: bool = True) -> str:
    """READing, SOURce, SOURSTATus (128 output on + 8 read-back), SEConds, FRACtional; error count."""
    reading, source = (volts, amps) if sourcing_current else (amps, volts)
    whole = int(seconds)
    return f"{reading:.6E},{source:.6E},136,{whole},{seconds - whole:.9f};0"


def reply_2400(volts: float, amps: float, seconds: float) -> str:
    """VOLT, CURR, RES (none), TIME, STATus (no compliance bit); error count."""
    return f"{volts:+.6E},{amps:+.6E},+9.910000E+37,{seconds:+.10E},+3.686400E+04;0"


def protocol_2450(t0: float) -> list[tuple[str, str | None]]:
    rest = [
        (':SOUR:CURR:LEV 0;:SOUR:CURR:VLIM 10;:SENS:FUNC "VOLT";:SOUR:FUNC CURR;OUTPUT ON;' + READ_2450, None),
    ]
    return [
        ("*RST;*CLS;:OUTP:CURR:SMOD HIMP;:OUTP:VOLT:SMOD HIMP", None),
        (":SOUR:CURR:READ:BACK 1", None),
        (":SOUR:VOLT:READ:BACK 1", None),
        (":SENS:CURR:NPLC 1", None),
        (":SENS:VOLT:NPLC 1", None),
        (AUTORANGE, None),
        ("OUTPUT OFF", None),
        (":SYST:ERR:NEXT?", '0,"No error"'),
        (rest[0][0], reply_2450(REST_V[0], 0.0, t0)),
        (READ_2450, reply_2450(REST_V[1], 0.0, t0 + 0.5)),
        (READ_2450, reply_2450(REST_V[2], 0.0, t0 + 1.0)),
        (f":SOUR:CURR:LEV 0.001;:SOUR:CURR:VLIM {CLAMP};" + READ_2450, reply_2450(CHARGE_V[0], 1e-3, t0 + 1.0)),
        (READ_2450, reply_2450(CHARGE_V[1], 1e-3, t0 + 1.5)),
        (READ_2450, reply_2450(CHARGE_V[2], 1e-3, t0 + 2.0)),
        (":SOUR:CURR:LEV 0;*OPC?", "1"),
        ("OUTPUT OFF", None),
        ("OUTPUT?", "0"),
    ]


def protocol_2400(t0: float) -> list[tuple[str, str | None]]:
    return [
        FORMAT_2400,
        ("*RST;*CLS;:OUTP:SMOD HIMP", None),
        (':SENS:FUNC:CONC 1;:SENS:FUNC:ON "VOLT","CURR"', None),
        FORMAT_2400,
        (":SENSE:CURRENT:NPLCYCLES 1", None),
        (":SENSE:VOLTAGE:NPLCYCLES 1", None),
        (AUTORANGE, None),
        (":SOUR:CLE:AUTO 0", None),
        ("OUTPUT 0", None),
        (":SYST:ERR?", '0,"No error"'),
        (
            ":SOUR:CURR 0;:SENS:VOLT:PROT 10;:SOUR:FUNC CURR;OUTPUT 1;:READ?;:SYST:ERR:COUN?",
            reply_2400(REST_V[0], 0.0, t0),
        ),
        (":READ?;:SYST:ERR:COUN?", reply_2400(REST_V[1], 0.0, t0 + 0.5)),
        (":READ?;:SYST:ERR:COUN?", reply_2400(REST_V[2], 0.0, t0 + 1.0)),
        (
            f":SOUR:CURR 0.001;:SENS:VOLT:PROT {CLAMP};:READ?;:SYST:ERR:COUN?",
            reply_2400(CHARGE_V[0], 1e-3, t0 + 1.0),
        ),
        (":READ?;:SYST:ERR:COUN?", reply_2400(CHARGE_V[1], 1e-3, t0 + 1.5)),
        (":READ?;:SYST:ERR:COUN?", reply_2400(CHARGE_V[2], 1e-3, t0 + 2.0)),
        (":SOUR:CURR 0;*OPC?", "1"),
        ("OUTPUT 0", None),
        ("OUTPUT?", "0"),
    ]


MODELS = {
    "keithley2450": (Smu2450, Dialect2450, protocol_2450, 1763776812.0),  # the 2450 stamps UTC seconds
    "keithley2400": (Smu2400, Dialect2400, protocol_2400, 125.0),  # the 2400 stamps seconds since reset
}


@pytest.mark.parametrize("driver", sorted(MODELS))
def test_rest_then_charge_to_a_voltage_cutoff_is_pinned_byte_for_byte(driver: str) -> None:
    instrument_cls, dialect_cls, protocol, t0 = MODELS[driver]
    with expected_protocol(instrument_cls, protocol(t0)) as inst:
        channel = KeithleySmuChannel(
            driver, "pinned", SmuOptions(), VirtualClock(), connect=lambda timeout_ms: dialect_cls(inst)
        )
        ctx = StepContext(clock=channel.clock, t_origin=0.0, interrupt=threading.Event())
        rest = drive(channel, REST, ctx)
        charge = drive(channel, CHARGE, ctx)
        channel.safe_state()

    assert rest.outcome.end_reason is EndReason.COMPLETED
    assert rest.data["t"] == pytest.approx([0.0, 0.5, 1.0])
    assert rest.data["E"] == pytest.approx(REST_V)
    assert np.all(rest.data["I"] == 0.0)

    assert charge.outcome.end_reason is EndReason.VOLTAGE_ABOVE
    assert charge.data["t"] == pytest.approx([1.0, 1.5, 2.0])
    assert charge.data["E"] == pytest.approx(CHARGE_V)
    # Charge integrates the measured current over the instrument's stamps: 1 mA for 1 s.
    assert charge.data["Q"][-1] == pytest.approx(1e-3)


def test_every_declared_descriptor_is_used_by_the_dialects() -> None:
    """No decoration: each pymeasure property the subclasses declare is what a dialect calls."""
    import ast
    import inspect

    from drivers.keithley import instruments

    tree = ast.parse(inspect.getsource(instruments))
    dialects = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Dialect")]
    used = {node.attr for d in dialects for node in ast.walk(d) if isinstance(node, ast.Attribute)}
    for cls in (Smu2450, Smu2400):
        declared = {name for name, value in vars(cls).items() if isinstance(value, property)}
        assert declared, cls
        assert declared <= used, f"{cls.__name__} declares unused {sorted(declared - used)}"


@pytest.mark.parametrize(
    ("instrument_cls", "dialect_cls", "prefix", "query"),
    [
        (Smu2450, Dialect2450, [], ":SOUR:CURR:VLIM:TRIP?"),
        (Smu2400, Dialect2400, [FORMAT_2400], ":SENS:VOLT:PROT:TRIP?"),
    ],
)
def test_declared_queries_refuse_garbled_replies(instrument_cls, dialect_cls, prefix, query) -> None:
    from labctl.channel import GarbledReply

    with expected_protocol(instrument_cls, [*prefix, (query, "1.5"), ("OUTPUT?", "ON?")]) as inst:
        dev = dialect_cls(inst)
        with pytest.raises(GarbledReply, match="expected 0 or 1"):
            dev.tripped("CURR")
        with pytest.raises(GarbledReply, match="OUTPUT"):
            dev.output()
