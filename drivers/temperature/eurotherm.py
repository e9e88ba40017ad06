"""Eurotherm-style temperature controller over Modbus (TCP with pymodbus, RTU
with minimalmodbus).

Register map (Eurotherm 2000 series communications handbook; 3200 series
handbook HA028651 §15.5 "Parameter Modbus Addresses"), holding registers
addressed as the handbooks number them (the PDU address), 16-bit signed
words scaled by the controller's decimal places (``decimals``, default 1:
25.0 °C = 250):

* 1 PV.IN process value; 2 TG.SP target set point; 3 MAN.OP manual output
  (2000 series: output power); 4 WRK.OP working output (3200); 5 WKG.SP
  working set point;
* 75 status word (bit 0..3 alarm 1..4, bit 4 manual, bit 5 sensor break,
  bit 6 loop break);
* 107 instrument version, 122 instrument type (hex-coded: 0x3216 → "3216");
* 111 / 112 set-point high / low limits;
* 199 instrument mode (0 operating, 1 standby = control outputs off,
  2 configuration); 273 loop auto (0) / manual (1).

Every reading reads PV…WKG.SP, the status word and the instrument mode, so an
alarm, a sensor break or a controller left in standby/manual during a run
ends the run with that reason (``status_mask`` chooses the status bits that
count as faults: by default every alarm, sensor break and loop break).

Safe state (``standby``): the target set point goes to ``standby_setpoint``
(default 25 °C, room temperature; ``None`` leaves it) and the instrument mode
to standby, which switches the control outputs off. Eurotherm's handbooks
warn that TG.SP lives in non-volatile memory with limited write cycles: the
driver writes it only when a step changes the set point, never periodically.

Errors: no response → InstrumentTimeout; bytes that are not a valid
response → GarbledReply; connection refused/closed → ConnectionLost; a Modbus
exception response (e.g. 3 "illegal data value" for a set point beyond the
limits) → InstrumentErrorCode with that exception code.

Resources: ``modbus-tcp://host:502[?unit=1]`` (Ethernet controllers or a
Modbus gateway), ``modbus-rtu:///dev/ttyUSB0?unit=1&baudrate=9600`` or a
plain serial path (RTU, 8N1).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlparse

from drivers.kit.options import DriverOptions, option
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

PV, TG_SP, MAN_OP, WRK_OP, WKG_SP = 1, 2, 3, 4, 5
STATUS, VERSION, SP_HI, SP_LO, INST_TYPE, INST_MODE, AUTO_MAN = 75, 107, 111, 112, 122, 199, 273
MODE_OPERATING, MODE_STANDBY = 0, 1
AUTO, MANUAL = 0, 1
STATUS_BITS = {
    0: "alarm 1",
    1: "alarm 2",
    2: "alarm 3",
    3: "alarm 4",
    4: "manual mode",
    5: "sensor break",
    6: "loop break",
    7: "heater fail",
    8: "load fail",
}
DEFAULT_STATUS_MASK = 0b1101111  # alarms 1-4, sensor break, loop break
MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    6: "slave device busy",
}


def encode(value: float, decimals: int) -> int:
    raw = round(value * 10**decimals)
    if not -32768 <= raw <= 32767:
        raise InstrumentError(f"Eurotherm: {value} does not fit a register scaled by {10**decimals}")
    return raw & 0xFFFF


def decode(word: int, decimals: int) -> float:
    raw = word - 0x10000 if word & 0x8000 else word
    return raw / 10**decimals


@dataclass(frozen=True)
class EurothermOptions(DriverOptions):
    """Lab-file options of a Eurotherm-style Modbus controller."""

    family: ClassVar[str] = "eurotherm"

    timeout: float = option(1.0, "float", "per Modbus transaction", unit="s", above=0)
    unit: int = option(1, "int", "Modbus device address", minimum=1, maximum=247)
    baudrate: int = option(9600, "int", "RTU serial speed", minimum=1200, maximum=115200)
    decimals: int = option(1, "int", "decimal places the controller is configured for", minimum=0, maximum=3)
    standby_setpoint: float | None = option(
        25.0, "float", "written to TG.SP on standby (none: leave it)", unit="°C", minimum=-273.15, optional=True
    )
    standby_mode: int = option(
        MODE_STANDBY, "int", "value of register 199 that means standby (1 on 2000/3200 series)", minimum=0, maximum=2
    )
    status_mask: int = option(
        DEFAULT_STATUS_MASK, "int", "status-word bits that count as faults (see STATUS_BITS)", minimum=0, maximum=0xFFFF
    )
    channel: str | None = option(None, "str", "the lab file's channel name (a chamber has one)")


class RegisterBus(Protocol):
    """Holding-register access; raises the typed instrument errors."""

    def read(self, address: int, count: int) -> list[int]: ...

    def write(self, address: int, value: int) -> None: ...

    def close(self) -> None: ...


class TcpBus:
    """Modbus TCP through pymodbus's synchronous client."""

    def __init__(self, host: str, port: int, unit: int, timeout: float) -> None:
        from pymodbus.client import ModbusTcpClient

        self.unit = unit
        self.where = f"{host}:{port}"
        self._received = 0
        self.client = ModbusTcpClient(host, port=port, timeout=timeout, retries=0, trace_packet=self._trace)
        if not self.client.connect():
            raise ConnectionLost(f"Eurotherm: cannot connect to {self.where}")

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += len(data)
        return data

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        from pymodbus.exceptions import ConnectionException, ModbusIOException

        self._received = 0
        try:
            yield
        except ConnectionException as exc:
            raise ConnectionLost(f"Eurotherm: connection to {self.where} lost during {what}: {exc}") from exc
        except ModbusIOException as exc:
            if self._received:
                raise GarbledReply(f"Eurotherm: {self._received} bytes that are no valid response to {what}") from exc
            raise InstrumentTimeout(f"Eurotherm: no response to {what}") from exc
        except OSError as exc:
            raise ConnectionLost(f"Eurotherm: transport failed during {what}: {exc}") from exc

    @staticmethod
    def _check(result: Any, what: str) -> Any:
        if result.isError():
            code = int(getattr(result, "exception_code", 0))
            raise InstrumentErrorCode(
                code, f"Eurotherm: Modbus exception {code} ({MODBUS_EXCEPTIONS.get(code, '?')}) on {what}"
            )
        return result

    def read(self, address: int, count: int) -> list[int]:
        what = f"reading register {address}" + (f"..{address + count - 1}" if count > 1 else "")
        with self._io(what):
            result = self._check(self.client.read_holding_registers(address, count=count, device_id=self.unit), what)
        registers = list(result.registers)
        if len(registers) != count:
            raise GarbledReply(f"Eurotherm: {len(registers)} registers in the reply to {what}, expected {count}")
        return registers

    def write(self, address: int, value: int) -> None:
        what = f"writing register {address}"
        with self._io(what):
            self._check(self.client.write_register(address, value, device_id=self.unit), what)

    def close(self) -> None:
        self.client.close()


class RtuBus:
    """Modbus RTU through minimalmodbus (8N1)."""

    def __init__(self, port: str, unit: int, baudrate: int, timeout: float) -> None:
        import minimalmodbus
        import serial

        self.port = port
        try:
            self.inst = minimalmodbus.Instrument(
                port, unit, mode=minimalmodbus.MODE_RTU, close_port_after_each_call=False
            )
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"Eurotherm: cannot open {port}: {exc}") from exc
        self.inst.serial.baudrate = baudrate
        self.inst.serial.timeout = timeout
        self.inst.clear_buffers_before_each_transaction = True

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        import minimalmodbus
        import serial

        try:
            yield
        except minimalmodbus.NoResponseError as exc:
            raise InstrumentTimeout(f"Eurotherm: no response to {what}") from exc
        except minimalmodbus.InvalidResponseError as exc:
            raise GarbledReply(f"Eurotherm: invalid response to {what}: {exc}") from exc
        except minimalmodbus.SlaveReportedException as exc:
            text = str(exc).lower()
            code = next((c for c, name in MODBUS_EXCEPTIONS.items() if name in text), 4)
            raise InstrumentErrorCode(
                code, f"Eurotherm: Modbus exception {code} ({MODBUS_EXCEPTIONS.get(code, '?')}) on {what}"
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"Eurotherm: serial port {self.port} failed during {what}: {exc}") from exc

    def read(self, address: int, count: int) -> list[int]:
        with self._io(f"reading register {address}"):
            return list(self.inst.read_registers(address, count, functioncode=3))

    def write(self, address: int, value: int) -> None:
        with self._io(f"writing register {address}"):
            self.inst.write_register(address, value, functioncode=6)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.inst.serial.close()


def open_bus(resource: str, options: EurothermOptions) -> RegisterBus:
    """``modbus-tcp://host:port[?unit=n]``, ``modbus-rtu:///dev/tty…[?unit=n&baudrate=b]`` or a device path."""
    url = urlparse(resource)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    unit = int(query.get("unit", options.unit))
    if url.scheme in ("modbus-tcp", "tcp"):
        if not url.hostname:
            raise ValueError(f"Eurotherm resource {resource!r} names no host")
        return TcpBus(url.hostname, url.port or 502, unit, options.timeout)
    if url.scheme in ("modbus-rtu", "rtu"):
        return RtuBus(url.path, unit, int(query.get("baudrate", options.baudrate)), options.timeout)
    if url.scheme == "" and resource.startswith("/"):
        return RtuBus(resource, unit, options.baudrate, options.timeout)
    raise ValueError(f"Eurotherm resource {resource!r}: use modbus-tcp://host:port or a serial device")


@dataclass(frozen=True)
class Reading:
    """One poll of the controller."""

    pv: float
    target: float
    working_output: float
    working_setpoint: float
    status: int
    mode: int

    def problems(self, mask: int) -> list[str]:
        return [text for bit, text in STATUS_BITS.items() if self.status & mask & (1 << bit)]


class EurothermController(TemperatureController):
    """A Eurotherm-style controller as a TemperatureController."""

    name = "eurotherm"

    def __init__(self, resource: str, options: EurothermOptions | None = None) -> None:
        self.resource = resource
        self.options = options or EurothermOptions()
        self._bus: RegisterBus | None = None
        self._lock = threading.RLock()
        self._info: InstrumentInfo | None = None
        self._limits: tuple[float, float] | None = None
        self._holding = False

    # -- transport --------------------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if self._bus is None:
                self._bus = open_bus(self.resource, self.options)
            self._info = None
            self.identify()

    def close(self) -> None:
        with self._lock:
            bus, self._bus = self._bus, None
            if bus is not None:
                bus.close()

    @property
    def bus(self) -> RegisterBus:
        if self._bus is None:
            self.open()
        assert self._bus is not None
        return self._bus

    def _temperature(self, word: int) -> float:
        return decode(word, self.options.decimals)

    # -- identity ---------------------------------------------------------------------------------
    def identify(self) -> InstrumentInfo:
        with self._lock:
            if self._info is None:
                kind = self.bus.read(INST_TYPE, 1)[0]
                version = self.bus.read(VERSION, 1)[0]
                hi, lo = self.bus.read(SP_HI, 2)
                self._limits = (self._temperature(lo), self._temperature(hi))
                self._info = InstrumentInfo(
                    driver="eurotherm",
                    model=f"Eurotherm {kind:04X}",
                    serial="",
                    firmware=f"{version >> 8:X}.{version & 0xFF:02X}",
                    resource=self.resource,
                    extra={"setpoint_limits_C": list(self._limits), "decimals": self.options.decimals},
                )
            return self._info

    # -- TemperatureController ------------------------------------------------------------------------
    def poll(self) -> Reading:
        with self._lock:
            pv, target, _man, wrk, wsp = self.bus.read(PV, 5)
            status = self.bus.read(STATUS, 1)[0]
            mode = self.bus.read(INST_MODE, 1)[0]
        t = self._temperature
        return Reading(t(pv), t(target), t(wrk), t(wsp), status, mode)

    def read_temperature(self) -> float:
        reading = self.poll()
        problems = reading.problems(self.options.status_mask)
        if problems:
            what = ", ".join(problems)
            raise InstrumentErrorCode(
                reading.status, f"Eurotherm controller reports {what} (status word 0x{reading.status:04X})"
            )
        if self._holding and reading.mode != MODE_OPERATING:
            raise InstrumentError(f"Eurotherm: the controller left operating mode (instrument mode {reading.mode})")
        return reading.pv

    def set_temperature(self, celsius: float) -> None:
        with self._lock:
            self.identify()
            if self._limits is not None and not self._limits[0] <= celsius <= self._limits[1]:
                lo, hi = self._limits
                raise InstrumentError(f"Eurotherm: set point {celsius:g} °C outside the controller's {lo:g}..{hi:g} °C")
            word = encode(celsius, self.options.decimals)
            if self.bus.read(TG_SP, 1)[0] != word:
                self.bus.write(TG_SP, word)
            if self.bus.read(AUTO_MAN, 1)[0] != AUTO:
                self.bus.write(AUTO_MAN, AUTO)
            if self.bus.read(INST_MODE, 1)[0] != MODE_OPERATING:
                self.bus.write(INST_MODE, MODE_OPERATING)
            back = self.bus.read(TG_SP, 1)[0]
            if back != word:
                raise InstrumentError(
                    f"Eurotherm: set point reads {self._temperature(back):g} °C after writing {celsius:g}"
                )
            self._holding = True

    def _standby_writes(self) -> None:
        if self.options.standby_setpoint is not None:
            word = encode(self.options.standby_setpoint, self.options.decimals)
            if self.bus.read(TG_SP, 1)[0] != word:
                self.bus.write(TG_SP, word)
        self.bus.write(INST_MODE, self.options.standby_mode)

    def standby(self) -> None:
        """Safe state: set point to room temperature, control outputs off (instrument standby)."""
        with self._lock:
            self._holding = False
            with_one_reconnect(
                self._standby_writes,
                self._reopen,
                instrument="Eurotherm",
                goal="put the controller in standby",
                retry_on=(ConnectionLost, InstrumentTimeout, GarbledReply),
            )

    def _reopen(self) -> None:
        self.close()
        self.open()


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> EurothermController:
    """The driver factory named in ``drivers.registry`` (connects on ``open``)."""
    return EurothermController(resource, EurothermOptions.parse(options))
