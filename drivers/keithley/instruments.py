"""The two SourceMeters as pymeasure instruments, extended with what a cell run needs.

pymeasure's ``Keithley2450`` and ``Keithley2400`` already define the source,
limit, off-state and output properties; the subclasses here add what they
lack for host-timed electrochemistry (the limit "tripped" queries, read-back,
the error count, a reading that returns E, I and the limit status in one
round trip) and a common surface, ``SmuDialect``, so the channel does not care
which model it drives.

Replies are parsed strictly (``GarbledReply`` when a reply does not have the
form the manual gives): pymeasure's ``values()`` would hand back the raw
string where a number does not parse, and a garbled reading must never become
a sample.

Command references: 2450 Reference Manual 2450-901-01 §6 (SCPI), 2400 User's
Manual 2400S-900-01 §18.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from pymeasure.instruments import Instrument
from pymeasure.instruments.keithley import Keithley2400, Keithley2450
from pymeasure.instruments.validators import strict_discrete_set

from labctl.channel import GarbledReply

#: 2450 source status bits (2450-901-01 §8, bufferVar.sourcestatuses).
STAT_LIMIT_2450 = 32
#: 2400 status word bit 3: "in (real) compliance" (2400S-900-01 §18, :FORMat:ELEMents).
STAT_COMPLIANCE_2400 = 8


@dataclass(frozen=True)
class Point:
    """One reading: cell voltage and current, the instrument's own time stamp of it
    (s, arbitrary origin), whether the source sat at its limit, and how many errors
    wait in the instrument's queue."""

    E: float
    I: float  # noqa: E741 (the SAMPLE_DTYPE name)
    tau: float
    limited: bool
    errors: int


@dataclass(frozen=True)
class Identity:
    vendor: str
    model: str
    serial: str
    firmware: str
    raw: str


def parse_number(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise GarbledReply(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GarbledReply(f"{what}: {text!r} is not a finite number")
    return value


def parse_count(text: str, what: str) -> int:
    value = parse_number(text, what)
    if value < 0 or not value.is_integer():
        raise GarbledReply(f"{what}: {text!r} is not a count")
    return int(value)


def parse_flag(text: str, what: str) -> bool:
    word = text.strip()
    if word not in ("0", "1"):
        raise GarbledReply(f"{what}: expected 0 or 1, got {text!r}")
    return word == "1"


def parse_error(text: str) -> tuple[int, str]:
    """``code,"message"`` from the error queue."""
    match = re.fullmatch(r'\s*([+-]?\d+)\s*,\s*"(.*)"\s*', text)
    if match is None:
        raise GarbledReply(f'error queue reply {text!r} is not code,"message"')
    return int(match.group(1)), match.group(2)


def parse_identity(text: str) -> Identity:
    """``*IDN?``: vendor, MODEL nnnn, serial, firmware (IEEE 488.2 §10.14)."""
    parts = [p.strip() for p in text.split(",", 3)]
    if len(parts) != 4 or not parts[0] or not parts[1]:
        raise GarbledReply(f"*IDN? reply {text!r} is not vendor,model,serial,firmware")
    model = parts[1]
    if model.upper().startswith("MODEL "):
        model = model[6:].strip()
    return Identity(vendor=parts[0], model=model, serial=parts[2], firmware=" ".join(parts[3].split()), raw=text)


def split_reply(text: str, fields: int, what: str) -> tuple[list[str], str]:
    """``a,b,c;n``: the reading's fields and the error count of a compound query."""
    head, sep, tail = text.partition(";")
    parts = head.split(",")
    if not sep or len(parts) != fields:
        raise GarbledReply(f"{what}: expected {fields} values and an error count, got {text!r}")
    return parts, tail


class SmuDialect(ABC):
    """What the channel needs from a SourceMeter, whatever its command set."""

    #: The driver name in the registry.
    driver: ClassVar[str]

    @property
    @abstractmethod
    def instrument(self) -> Instrument: ...

    @abstractmethod
    def configure(self, *, reset: bool, nplc: float) -> None:
        """Known state: reset, output off-state relay open (HIMP), read-back on, NPLC."""

    @abstractmethod
    def start_commands(self, function: str, level: float, limit: float | None, *, switch: bool) -> list[str]:
        """Commands that source ``function`` ("CURR"/"VOLT") at ``level`` with its limit
        (None: keep the limit); with ``switch`` the source function changes (the level
        and limit are programmed first, so the new function starts at the right level).
        They are sent in the message of the step's first reading, so the step starts
        at the instant of that reading."""

    @abstractmethod
    def set_output(self, on: bool) -> None: ...

    @abstractmethod
    def output(self) -> bool: ...

    @abstractmethod
    def level_command(self, function: str, level: float) -> str:
        """The command that sets the source level (for compound messages)."""

    @abstractmethod
    def output_command(self, on: bool) -> str: ...

    @abstractmethod
    def read(self, sourcing: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Point:
        """A reading while sourcing ``"CURR"`` or ``"VOLT"``, in one message with the
        commands ``before`` and ``after`` it: the instrument executes the units of a
        message in order (IEEE 488.2 §7), so "set the level; read" starts a step at
        the instant of its first reading and "read; set 0 A" ends it at the instant of
        its last, whatever the host's latency."""

    def _message(self, before: tuple[str, ...], read: str, after: tuple[str, ...]) -> str:
        return ";".join((*before, read, *after, ":SYST:ERR:COUN?"))

    @abstractmethod
    def next_error(self) -> tuple[int, str]: ...

    @abstractmethod
    def tripped(self, sourcing: str) -> bool:
        """The limit "tripped" query for the present source function."""

    def identity(self) -> Identity:
        return parse_identity(self.instrument.ask("*IDN?"))

    def close(self) -> None:
        self.instrument.adapter.close()


# ======================================================================================
class Smu2450(Keithley2450):
    """pymeasure's Keithley2450 plus the queries a host-timed cell run needs."""

    voltage_limit_tripped = Instrument.measurement(
        ":SOUR:CURR:VLIM:TRIP?",
        """Get whether the current source is clamped at its voltage limit (2450-901-01 p. 6-72).""",
        cast=int,
    )
    current_limit_tripped = Instrument.measurement(
        ":SOUR:VOLT:ILIM:TRIP?",
        """Get whether the voltage source is clamped at its current limit.""",
        cast=int,
    )
    current_readback = Instrument.control(
        ":SOUR:CURR:READ:BACK?",
        ":SOUR:CURR:READ:BACK %d",
        """Control whether the source value is measured (True) or the programmed one is reported.""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
    )
    voltage_readback = Instrument.control(
        ":SOUR:VOLT:READ:BACK?",
        ":SOUR:VOLT:READ:BACK %d",
        """Control voltage read-back (see current_readback).""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
    )
    sense_function = Instrument.control(
        ":SENS:FUNC?",
        ':SENS:FUNC "%s"',
        """Control the measure function: VOLT or CURR (the 2450 measures one at a time).""",
        validator=strict_discrete_set,
        values=["VOLT", "CURR"],
        get_process=lambda v: str(v).strip('"').split(":")[0],
        cast=str,
    )
    error_count = Instrument.measurement(":SYST:ERR:COUN?", """Get the number of entries in the error queue.""")
    next_error = Instrument.measurement(
        ":SYST:ERR:NEXT?",
        """Get the oldest entry of the error queue as [code, message].""",
        maxsplit=1,
    )

    #: One round trip per sample: sense reading, source read-back, source status and the
    #: time stamp as UTC seconds + fraction (+ the error count). Not RELative: it counts
    #: from the first reading in the buffer, which moves once the buffer wraps.
    READ_COMMAND = ':READ? "defbuffer1", READ, SOUR, SOURSTAT, SEC, FRAC'


class Dialect2450(SmuDialect):
    """The 2450 in its SCPI command set."""

    driver = "keithley2450"

    def __init__(self, instrument: Smu2450) -> None:
        self._inst = instrument

    @property
    def instrument(self) -> Smu2450:
        return self._inst

    def configure(self, *, reset: bool, nplc: float) -> None:
        k = self._inst
        # *RST restores the NORMal off-state (a 0 V source on the cell): open the
        # relay in the same message so that state never lasts.
        k.write(("*RST;" if reset else "") + "*CLS;:OUTP:CURR:SMOD HIMP;:OUTP:VOLT:SMOD HIMP")
        k.current_readback = True
        k.voltage_readback = True
        k.current_nplc = nplc
        k.voltage_nplc = nplc
        k.write(":SENS:CURR:RANG:AUTO 1;:SENS:VOLT:RANG:AUTO 1;:SOUR:CURR:RANG:AUTO 1;:SOUR:VOLT:RANG:AUTO 1")

    def start_commands(self, function: str, level: float, limit: float | None, *, switch: bool) -> list[str]:
        commands = [self.level_command(function, level)]
        if limit is not None:
            commands.append(f":SOUR:CURR:VLIM {limit:.9g}" if function == "CURR" else f":SOUR:VOLT:ILIM {limit:.9g}")
        if switch:
            commands.append(':SENS:FUNC "VOLT"' if function == "CURR" else ':SENS:FUNC "CURR"')
            commands.append(f":SOUR:FUNC {function}")
        return commands

    def set_output(self, on: bool) -> None:
        if on:
            self._inst.enable_source()
        else:
            self._inst.disable_source()

    def output(self) -> bool:
        return parse_flag(self._inst.ask("OUTPUT?"), "OUTPUT?")

    def level_command(self, function: str, level: float) -> str:
        return f":SOUR:{function}:LEV {level:.9g}"

    def output_command(self, on: bool) -> str:
        return "OUTPUT ON" if on else "OUTPUT OFF"

    def read(self, sourcing: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Point:
        text = self._inst.ask(self._message(before, Smu2450.READ_COMMAND, after))
        (reading, source, status, seconds, fraction), tail = split_reply(text, 5, ":READ?")
        value = parse_number(reading, ":READ? reading")
        tau = parse_count(seconds, ":READ? seconds") + parse_number(fraction, ":READ? fractional seconds")
        level = parse_number(source, ":READ? source value")
        stat = parse_count(status, ":READ? source status")
        count = parse_count(tail, ":SYST:ERR:COUN?")
        e, i = (value, level) if sourcing == "CURR" else (level, value)
        return Point(E=e, I=i, tau=tau, limited=bool(stat & STAT_LIMIT_2450), errors=count)

    def next_error(self) -> tuple[int, str]:
        return parse_error(self._inst.ask(":SYST:ERR:NEXT?"))

    def tripped(self, sourcing: str) -> bool:
        query = ":SOUR:CURR:VLIM:TRIP?" if sourcing == "CURR" else ":SOUR:VOLT:ILIM:TRIP?"
        return parse_flag(self._inst.ask(query), query)


# ======================================================================================
class Smu2400(Keithley2400):
    """pymeasure's Keithley2400 plus the compliance queries and the error count."""

    voltage_compliance_tripped = Instrument.measurement(
        ":SENS:VOLT:PROT:TRIP?",
        """Get whether the current source is in voltage compliance (2400S-900-01 §18).""",
        cast=int,
    )
    current_compliance_tripped = Instrument.measurement(
        ":SENS:CURR:PROT:TRIP?",
        """Get whether the voltage source is in current compliance.""",
        cast=int,
    )
    error_count = Instrument.measurement(":SYST:ERR:COUN?", """Get the number of entries in the error queue.""")

    #: Elements VOLT, CURR, RES, TIME, STAT (set at configure).
    READ_COMMAND = ":READ?"


class Dialect2400(SmuDialect):
    """The 2400 (and its SCPI siblings 2401/2410/2420/2425/2440)."""

    driver = "keithley2400"

    def __init__(self, instrument: Smu2400) -> None:
        self._inst = instrument

    @property
    def instrument(self) -> Smu2400:
        return self._inst

    def configure(self, *, reset: bool, nplc: float) -> None:
        k = self._inst
        # *RST restores the NORMal off-state: open the relay in the same message.
        k.write(("*RST;" if reset else "") + "*CLS;:OUTP:SMOD HIMP")
        k.write(':SENS:FUNC:CONC 1;:SENS:FUNC:ON "VOLT","CURR"')
        k.reset_data_format()  # :FORM:ELEM VOLT,CURR,RES,TIME,STAT
        k.current_nplc = nplc
        k.voltage_nplc = nplc
        k.write(":SENS:CURR:RANG:AUTO 1;:SENS:VOLT:RANG:AUTO 1;:SOUR:CURR:RANG:AUTO 1;:SOUR:VOLT:RANG:AUTO 1")
        k.write(":SOUR:CLE:AUTO 0")

    def start_commands(self, function: str, level: float, limit: float | None, *, switch: bool) -> list[str]:
        commands = [self.level_command(function, level)]
        if limit is not None:
            commands.append(f":SENS:VOLT:PROT {limit:.9g}" if function == "CURR" else f":SENS:CURR:PROT {limit:.9g}")
        if switch:
            commands.append(f":SOUR:FUNC {function}")
        return commands

    def set_output(self, on: bool) -> None:
        self._inst.write(f"OUTPUT {int(on)}")

    def output(self) -> bool:
        return parse_flag(self._inst.ask("OUTPUT?"), "OUTPUT?")

    def level_command(self, function: str, level: float) -> str:
        return f":SOUR:{function} {level:.9g}"

    def output_command(self, on: bool) -> str:
        return f"OUTPUT {int(on)}"

    def read(self, sourcing: str, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Point:
        text = self._inst.ask(self._message(before, Smu2400.READ_COMMAND, after))
        (volt, curr, _res, stamp, status), tail = split_reply(text, 5, ":READ?")
        word = parse_number(status, ":READ? status word")
        if word < 0 or not word.is_integer():
            raise GarbledReply(f":READ? status word {status!r} is not a bit field")
        return Point(
            E=parse_number(volt, ":READ? voltage"),
            I=parse_number(curr, ":READ? current"),
            tau=parse_number(stamp, ":READ? time stamp"),
            limited=bool(int(word) & STAT_COMPLIANCE_2400),
            errors=parse_count(tail, ":SYST:ERR:COUN?"),
        )

    def next_error(self) -> tuple[int, str]:
        return parse_error(self._inst.ask(":SYST:ERR?"))

    def tripped(self, sourcing: str) -> bool:
        query = ":SENS:VOLT:PROT:TRIP?" if sourcing == "CURR" else ":SENS:CURR:PROT:TRIP?"
        return parse_flag(self._inst.ask(query), query)


DIALECTS: dict[str, tuple[type[Instrument], type[SmuDialect]]] = {
    "keithley2450": (Smu2450, Dialect2450),
    "keithley2400": (Smu2400, Dialect2400),
}


def open_dialect(driver: str, resource: str, **visa: Any) -> SmuDialect:
    """Connect to ``resource`` with the pymeasure instrument of ``driver``."""
    instrument_cls, dialect_cls = DIALECTS[driver]
    instrument = instrument_cls(resource, **visa)
    return dialect_cls(instrument)  # type: ignore[arg-type]
