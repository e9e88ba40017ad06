"""Espec temperature chamber (P-300 / SCP-220 style controllers): ASCII over
TCP (the LAN adapter's port 10001) or RS-232C/RS-485.

Protocol (Espec "Communication Function" manuals for these controllers;
the same commands Espec North America's ChamberConnectLibrary uses): one
command per line, CR LF terminated; each command gets one reply line.
Settings are acknowledged ``OK:<command>``; refusals read ``NA:<reason>``
(``CMD ERR``, ``PARA ERR``, ``DATA OUT OF RANGE``, ``CHB NOT READY`` …).

Used here:

* ``TYPE?`` and ``ROM?`` — identification (controller type, max temperature, firmware);
* ``MON?`` -> ``temp,humidity,mode,alarms`` — every reading, so a chamber
  that raised an alarm or left constant operation is noticed at once;
* ``ALARM?`` -> ``n,code,…`` — the alarm codes, for the error message;
* ``TEMP, S<value>`` then ``MODE, CONSTANT`` — run at a set point;
* ``MODE, STANDBY`` — the safe state.

Safe state = ``MODE, STANDBY``: the controller stays on and keeps
monitoring, heater and refrigerator stop, the chamber drifts to room
temperature (``MODE, OFF`` would also switch the controller's operation off;
standby is the state Espec recommends between tests). If the link dropped, the
driver reconnects once to get there.

Errors: no reply within ``timeout`` → InstrumentTimeout; a reply that does not
parse → GarbledReply; the link closed → ConnectionLost; ``NA:…`` → InstrumentErrorCode
(code = the reason text); an active alarm, or the chamber leaving constant
operation while a set point is being held, → InstrumentErrorCode/InstrumentError
raised from ``read_temperature`` (the run ends with that reason).

Resources: ``tcp://host:10001`` (or ``socket://…``), or a serial port path
(``/dev/ttyUSB0``; options ``baudrate`` 9600, ``address`` for RS-485 multi-drop).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import serial

from drivers.kit.options import DriverOptions, OptionError, option
from labctl.channel import (
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentErrorCode,
    InstrumentInfo,
    InstrumentTimeout,
    TemperatureController,
    with_one_reconnect,
)
from labctl.clock import Clock

log = logging.getLogger(__name__)

TERMINATOR = b"\r\n"
#: What Espec's ``NA:`` reasons mean (controller communication manuals).
REFUSALS = {
    "CMD ERR": "unrecognised command",
    "ADDR ERR": "bad RS-485 address",
    "PARA ERR": "parameter missing or unreadable",
    "DATA OUT OF RANGE": "value outside the allowed range",
    "DATA NOT READY": "the requested data does not exist",
    "PROTECT ON": "data protection is on at the controller",
    "CHB NOT READY": "the chamber cannot act on the command now",
    "INVALID REQ": "function not supported",
}
_FLOAT = r"[-+]?\d+(?:\.\d*)?"


@dataclass(frozen=True)
class EspecOptions(DriverOptions):
    """Lab-file options of an Espec chamber."""

    family: ClassVar[str] = "espec"

    timeout: float = option(3.0, "float", "reply timeout", unit="s", above=0)
    baudrate: int = option(9600, "int", "serial speed", minimum=1200, maximum=115200)
    address: int | None = option(None, "int", 'RS-485 address (prefixes commands as "<n>,")', minimum=0, maximum=99)
    min_temperature: float | None = option(
        None, "float", "refuse set points below (default: none)", unit="°C", minimum=-273.15
    )
    max_temperature: float | None = option(
        None, "float", "refuse set points above (default: the chamber's own maximum, TYPE?)", unit="°C",
        minimum=-273.15,
    )
    channel: str | None = option(None, "str", "the lab file's channel name (a chamber has one)")

    def check(self) -> None:
        low, high = self.min_temperature, self.max_temperature
        if low is not None and high is not None and low >= high:
            raise OptionError.bad_value(
                self.family, "min_temperature", low, f"is not below max_temperature {high!r} (allowed: below it)"
            )


def open_link(resource: str, options: EspecOptions) -> serial.SerialBase:
    """A pyserial port for ``tcp://host:port`` / ``socket://…`` or a serial device."""
    if resource.startswith(("tcp://", "socket://")):
        url = "socket://" + resource.split("://", 1)[1]
        return serial.serial_for_url(url, timeout=options.timeout, write_timeout=options.timeout)
    return serial.Serial(resource, baudrate=options.baudrate, timeout=options.timeout, write_timeout=options.timeout)


@dataclass(frozen=True)
class Monitor:
    """``MON?``: what the chamber reports about itself."""

    temperature: float
    humidity: float | None
    mode: str
    alarms: int


def parse_monitor(text: str) -> Monitor:
    match = re.fullmatch(rf"\s*({_FLOAT}),\s*({_FLOAT})?\s*,\s*([A-Z][A-Z ]*[A-Z])\s*,\s*(\d+)\s*", text)
    if match is None:
        raise GarbledReply(f"Espec: MON? reply does not parse: {text[:80]!r}")
    humidity = float(match.group(2)) if match.group(2) else None
    return Monitor(float(match.group(1)), humidity, match.group(3), int(match.group(4)))


def parse_temp(text: str) -> tuple[float, float, float, float]:
    """``TEMP?`` -> (present, set point, upper alarm, lower alarm)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(re.fullmatch(_FLOAT, p) for p in parts):
        raise GarbledReply(f"Espec: TEMP? reply does not parse: {text[:80]!r}")
    a, b, c, d = (float(p) for p in parts)
    return a, b, c, d


class EspecChamber(TemperatureController):
    """An Espec chamber as a TemperatureController."""

    name = "espec"

    def __init__(self, resource: str, options: EspecOptions | None = None) -> None:
        self.resource = resource
        self.options = options or EspecOptions()
        self._link: serial.SerialBase | None = None
        self._lock = threading.RLock()
        self._info: InstrumentInfo | None = None
        self._max_temperature: float | None = self.options.max_temperature
        #: True while a set point is being held (constant operation expected).
        self._holding = False

    # -- transport ----------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if self._link is None:
                with self._io("connect"):
                    self._link = open_link(self.resource, self.options)
            self._info = None
            self.identify()

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
            if link is not None:
                # pyserial's socket:// skips closing its socket when shutdown() fails
                # (a peer that already closed): close it here, or it leaks.
                raw = getattr(link, "_socket", None)
                with contextlib.suppress(Exception):
                    link.close()
                if raw is not None:
                    with contextlib.suppress(OSError):
                        raw.close()

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except InstrumentError:
            raise
        except serial.SerialTimeoutException as exc:
            raise InstrumentTimeout(f"Espec: could not send {what} within {self.options.timeout:g} s") from exc
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"Espec: link lost during {what}: {exc}") from exc

    def query(self, command: str) -> str:
        """Send one command line, return its reply line; ``NA:…`` raises InstrumentErrorCode."""
        with self._lock:
            if self._link is None:
                self.open()
            assert self._link is not None
            prefix = f"{self.options.address}," if self.options.address is not None else ""
            with self._io(command):
                self._link.reset_input_buffer()  # a late reply to an earlier command must not be taken for this one
                self._link.write((prefix + command).encode("ascii") + TERMINATOR)
                raw = self._link.read_until(TERMINATOR)
            if not raw.endswith(TERMINATOR):
                detail = f" (partial {raw[:40]!r})" if raw else ""
                raise InstrumentTimeout(f"Espec: no reply to {command!r} within {self.options.timeout:g} s{detail}")
            try:
                text = raw[: -len(TERMINATOR)].decode("ascii").strip()
            except UnicodeDecodeError as exc:
                raise GarbledReply(f"Espec: reply to {command!r} is not ASCII: {raw[:40]!r}") from exc
        if text.startswith("NA:"):
            reason = text[3:].strip()
            raise InstrumentErrorCode(reason, f"Espec refused {command!r}: {REFUSALS.get(reason, reason)}")
        return text

    def _setting(self, command: str) -> None:
        reply = self.query(command)
        if not reply.startswith("OK:"):
            raise GarbledReply(f"Espec: expected OK: for {command!r}, got {reply[:80]!r}")

    # -- identity -----------------------------------------------------------------------------
    def identify(self) -> InstrumentInfo:
        with self._lock:
            if self._info is None:
                type_reply = self.query("TYPE?")
                parts = [p.strip() for p in type_reply.split(",")]
                if len(parts) < 3 or not re.fullmatch(_FLOAT, parts[-1]):
                    raise GarbledReply(f"Espec: TYPE? reply does not parse: {type_reply[:80]!r}")
                rom = self.query("ROM?")
                if self.options.max_temperature is None:
                    self._max_temperature = float(parts[-1])
                self._info = InstrumentInfo(
                    driver="espec",
                    model=f"Espec {parts[-2]}",
                    serial="",
                    firmware=rom,
                    resource=self.resource,
                    extra={"type": type_reply, "max_temperature": float(parts[-1])},
                )
            return self._info

    # -- TemperatureController -------------------------------------------------------------------
    def monitor(self) -> Monitor:
        return parse_monitor(self.query("MON?"))

    def alarm_codes(self) -> list[str]:
        parts = [p.strip() for p in self.query("ALARM?").split(",") if p.strip()]
        if not parts or not parts[0].isdigit():
            raise GarbledReply(f"Espec: ALARM? reply does not parse: {parts!r}")
        return parts[1:]

    def read_temperature(self) -> float:
        with self._lock:
            mon = self.monitor()
            if mon.alarms:
                codes = self.alarm_codes()
                raise InstrumentErrorCode(
                    ",".join(codes) or str(mon.alarms),
                    f"Espec chamber alarm ({mon.alarms} active: codes {', '.join(codes) or '?'}); chamber {mon.mode}",
                )
            if self._holding and mon.mode != "CONSTANT":
                raise InstrumentError(f"Espec: the chamber left constant operation (now {mon.mode}) during a run")
            return mon.temperature

    def set_temperature(self, celsius: float) -> None:
        lo, hi = self.options.min_temperature, self._max_temperature
        if (lo is not None and celsius < lo) or (hi is not None and celsius > hi):
            raise InstrumentError(f"Espec: set point {celsius:g} °C outside the chamber's {lo}..{hi} °C")
        with self._lock:
            self._setting(f"TEMP, S{celsius:.1f}")
            if self.monitor().mode != "CONSTANT":
                self._setting("MODE, CONSTANT")
            self._holding = True

    def standby(self) -> None:
        """Safe state: constant operation stops (heater and refrigerator off)."""
        with self._lock:
            self._holding = False
            with_one_reconnect(
                lambda: self._setting("MODE, STANDBY"),
                self._reopen,
                instrument="Espec",
                goal="put the chamber in standby",
                retry_on=(ConnectionLost, InstrumentTimeout, GarbledReply),
            )

    def _reopen(self) -> None:
        self.close()
        self.open()


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> EspecChamber:
    """The driver factory named in ``drivers.registry`` (connects on ``open``)."""
    return EspecChamber(resource, EspecOptions.parse(options))
