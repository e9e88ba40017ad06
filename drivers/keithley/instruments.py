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
a sample. So the queries declared here are ``strict_query`` descriptors, and
pymeasure's own ``source_enabled`` getter (``cast=bool`` on the 2450: any
non-numeric reply reads as True) is redeclared strictly. Settings go through
pymeasure's own properties where they send the right command (NPLC, the
2400's ``OUTPUT %d``, the 2450's ``OUTPUT ON/OFF``); only the compound
messages of the host loop (level; read; error count in one message, IEEE
488.2 §7) are built as strings, because a descriptor sends one unit per message.

Command references: 2450 Reference Manual 2450-901-01 §6 (SCPI), 2400 User's
Manual 2400S-900-01 §18.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
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


def strict_query(command: str, docs: str, parse: Callable[[str, str], Any]) -> Any:
    """A pymeasure measurement whose reply is parsed strictly by ``parse(text, what)``:
    the whole reply (no splitting, no lenient cast) goes to the parser, which raises
    GarbledReply for anything that is not the form the manual gives."""
    return Instrument.measurement(command, docs, cast=str, maxsplit=0, get_process=lambda text: parse(text, command))


def _error_reply(text: str, what: str) -> tuple[int, str]:
    return parse_error(text)


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

    source_enabled = strict_query(
        "OUTPUT?", """Get whether the output is on (pymeasure's command, parsed strictly).""", parse_flag
    )
    voltage_limit_tripped = strict_query(
        ":SOUR:CURR:VLIM:TRIP?",
        """Get whether the current source is clamped at its voltage limit (2450-901-01 p. 6-72).""",
        parse_flag,
    )
    current_limit_tripped = strict_query(
        ":SOUR:VOLT:ILIM:TRIP?", """Get whether the voltage source is clamped at its current limit.""", parse_flag
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
    next_error = strict_query(
        ":SYST:ERR:NEXT?", """Get the oldest entry of the error queue as (code, message).""", _error_reply
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
        return self._inst.source_enabled

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
        return self._inst.next_error

    def tripped(self, sourcing: str) -> bool:
        return self._inst.voltage_limit_tripped if sourcing == "CURR" else self._inst.current_limit_tripped


# ======================================================================================
class Smu2400(Keithley2400):
    """pymeasure's Keithley2400 plus the compliance queries and the error queue, read strictly."""

    source_enabled = Instrument.control(
        "OUTPUT?",
        "OUTPUT %d",
        """Control whether the output is on (pymeasure's commands; the reply parsed strictly).""",
        validator=strict_discrete_set,
        values=(True, False),
        set_process=int,
        cast=str,
        maxsplit=0,
        get_process=lambda text: parse_flag(text, "OUTPUT?"),
    )
    voltage_compliance_tripped = strict_query(
        ":SENS:VOLT:PROT:TRIP?",
        """Get whether the current source is in voltage compliance (2400S-900-01 §18).""",
        parse_flag,
    )
    current_compliance_tripped = strict_query(
        ":SENS:CURR:PROT:TRIP?", """Get whether the voltage source is in current compliance.""", parse_flag
    )
    next_error = strict_query(
        ":SYST:ERR?", """Get the oldest entry of the error queue as (code, message).""", _error_reply
    )

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
        self._inst.source_enabled = on

    def output(self) -> bool:
        return self._inst.source_enabled

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
        return self._inst.next_error

    def tripped(self, sourcing: str) -> bool:
        return self._inst.voltage_compliance_tripped if sourcing == "CURR" else self._inst.current_compliance_tripped


DIALECTS: dict[str, tuple[type[Instrument], type[SmuDialect]]] = {
    "keithley2450": (Smu2450, Dialect2450),
    "keithley2400": (Smu2400, Dialect2400),
}


def open_dialect(driver: str, resource: str, **visa: Any) -> SmuDialect:
    """Connect to ``resource`` with the pymeasure instrument of ``driver``."""
    instrument_cls, dialect_cls = DIALECTS[driver]
    instrument = instrument_cls(resource, **visa)
    return dialect_cls(instrument)  # type: ignore[arg-type]
