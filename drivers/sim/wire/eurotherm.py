"""Eurotherm-style temperature controller, emulated as a Modbus TCP server
(pymodbus) on the simulator's chamber model.

Register map (holding registers, Modbus addresses as Eurotherm's manuals
give them — 2000 series communications handbook and 3200 series handbook
HA028651 §15.5 "Parameter Modbus Addresses"): 16-bit words, signed,
scaled by the configured decimal places (one: 25.0 °C = 250).

====  =======  ===========================================================
addr  name     meaning
====  =======  ===========================================================
1     PV.IN    process value (chamber temperature), read only
2     TG.SP    target set point: the selected one of SP1/SP2 (writing it
               writes that one)
3     MAN.OP   manual output (%)
4     WRK.OP   working output (%), read only
5     WKG.SP   working set point, read only
15    SP.SEL   set point select: 0 SP1, 1 SP2
24    SP1      set point 1
25    SP2      set point 2
75    SW       status word: bit 0..3 alarm 1..4, bit 4 manual, bit 5 sensor
               break, bit 6 loop break (read only)
107   —        instrument version (hex, 0x0213 = 2.13), read only
111   SP.HI    set point high limit
112   SP.LO    set point low limit
122   —        instrument type (hex, 0x3216), read only
199   IM       instrument mode: 0 operating, 1 standby (control outputs
               off), 2 configuration
273   A-M      loop mode: 0 auto, 1 manual
====  =======  ===========================================================

Writes outside the set-point limits answer Modbus exception 3 (illegal data
value); writes to read-only registers exception 2 (illegal address).

The controller answers only its own device address (``unit``, 1 by default,
1–247): a request to any other address gets no reply at all, as on an RS-485
bus where that address is nobody's (and through a TCP gateway, which then
times out); the client sees a timeout, not an answer from the wrong unit.
Physics: the ``ChamberPlant`` shared with the Espec emulator — operating in
auto drives the air to TG.SP; standby (IM = 1) or manual mode stops
control and the air relaxes to the room.

Transports: Modbus TCP (pymodbus ``ModbusTcpServer``), or Modbus RTU
(``transport="rtu"``: pymodbus ``ModbusSerialServer`` on one end of a
pseudo-terminal null modem, the driver's serial port on the other end).

Faults: ``server.faults`` (no reply, garbled frame, dropped connection, at
the frame level through pymodbus's packet hook; a "dropped" RTU link just
stops answering) and the
instrument's: ``raise_alarm(n)`` sets alarm bit n of the status word,
``sensor_break()`` sets bit 5 (the PV then reads the sensor-break value
−32768, as a broken thermocouple would), ``clear_faults()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import tty
from collections.abc import Callable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.sim import SimChannel, SimParams
from drivers.sim.wire.espec import ChamberPlant, own_cell
from drivers.sim.wire.transport import DROP_LINK, GARBLED, NO_REPLY, EmulatorServer, Faults, garble

log = logging.getLogger(__name__)

PV, TG_SP, MAN_OP, WRK_OP, WKG_SP = 1, 2, 3, 4, 5
SP_SEL, SP1, SP2 = 15, 24, 25
SETPOINTS = (SP1, SP2)
STATUS, VERSION, SP_HI, SP_LO, INST_TYPE, INST_MODE, AUTO_MAN = 75, 107, 111, 112, 122, 199, 273
READ_ONLY = {PV, WRK_OP, WKG_SP, STATUS, VERSION, INST_TYPE}
SENSOR_BREAK = 0x20
REGISTERS = 400
DECIMALS = 1


def encode(value: float, decimals: int = DECIMALS) -> int:
    """°C -> a register word (signed 16-bit, scaled)."""
    raw = round(value * 10**decimals)
    if not -32768 <= raw <= 32767:
        raise ValueError(f"{value} does not fit a scaled 16-bit register")
    return raw & 0xFFFF


def decode(word: int, decimals: int = DECIMALS) -> float:
    """A register word -> °C."""
    raw = word - 0x10000 if word & 0x8000 else word
    return raw / 10**decimals


class EurothermModel:
    """The controller: its registers, kept consistent with the plant."""

    def __init__(self, plant: ChamberPlant) -> None:
        self.plant = plant
        self.lock = threading.Lock()
        self.regs = [0] * REGISTERS
        self.regs[TG_SP] = encode(plant.setpoint)
        self.regs[SP1] = self.regs[SP2] = self.regs[TG_SP]
        self.regs[SP_SEL] = 0
        self.regs[SP_HI] = encode(200.0)
        self.regs[SP_LO] = encode(-80.0)
        self.regs[VERSION] = 0x0213
        self.regs[INST_TYPE] = 0x3216
        self.regs[INST_MODE] = 0
        self.regs[AUTO_MAN] = 0
        self.status = 0
        self.writes: list[tuple[int, int]] = []
        self._apply()

    @property
    def mode(self) -> str:
        return {0: "operating", 1: "standby", 2: "configuration"}.get(self.regs[INST_MODE], "?")

    def _controlling(self) -> bool:
        return self.regs[INST_MODE] == 0 and self.regs[AUTO_MAN] == 0

    def _selected(self) -> int:
        """The register of the set point in force (SP.SEL)."""
        return SETPOINTS[self.regs[SP_SEL]]

    def _apply(self) -> None:
        """Drive the plant from the present registers."""
        self.regs[TG_SP] = self.regs[self._selected()]
        if self._controlling():
            self.plant.run(decode(self.regs[TG_SP]))
        else:
            self.plant.change_setpoint(decode(self.regs[TG_SP]))
            self.plant.stop()

    def refresh(self, regs: list[int]) -> None:
        """Live values into the register image about to be read."""
        with self.lock:
            self.regs[PV] = 0x8000 if self.status & SENSOR_BREAK else encode(self.plant.air())
            self.regs[WRK_OP] = encode(self.plant.output())
            self.regs[WKG_SP] = self.regs[TG_SP]
            self.regs[STATUS] = self.status | (0x10 if self.regs[AUTO_MAN] else 0)
            regs[:] = self.regs

    def write(self, address: int, values: list[int], regs: list[int]) -> ExcCodes | None:
        with self.lock:
            for k, word in enumerate(values):
                addr = address + k
                if addr in READ_ONLY:
                    return ExcCodes.ILLEGAL_ADDRESS
                in_limits = decode(self.regs[SP_LO]) <= decode(word) <= decode(self.regs[SP_HI])
                if addr in (TG_SP, *SETPOINTS) and not in_limits:
                    return ExcCodes.ILLEGAL_VALUE
                if addr == SP_SEL and word not in (0, 1):
                    return ExcCodes.ILLEGAL_VALUE
                if addr == INST_MODE and word not in (0, 1, 2):
                    return ExcCodes.ILLEGAL_VALUE
                if addr == AUTO_MAN and word not in (0, 1):
                    return ExcCodes.ILLEGAL_VALUE
            for k, word in enumerate(values):
                addr = address + k
                self.regs[self._selected() if addr == TG_SP else addr] = word
                self.writes.append((addr, word))
            self._apply()
            regs[:] = self.regs
        return None


class NullModem:
    """Two pseudo-terminals wired back to back (a serial cable between two ports).

    pymodbus's RTU server opens ``server_path``, the driver ``client_path``;
    a thread copies bytes both ways, as the cable would.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        ends = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            self._fds += [master, slave]
            ends.append((master, os.ttyname(slave)))
        (self._a, self.server_path), (self._b, self.client_path) = ends
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, name="eurotherm-null-modem", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        route = {self._a: self._b, self._b: self._a}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(route), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                    os.write(route[fd], data)
                except OSError:
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class EurothermServer(EmulatorServer):
    """A running controller emulator: Modbus TCP (``modbus-tcp://127.0.0.1:<port>``)
    or Modbus RTU on a pseudo-terminal (``modbus-rtu:///dev/pts/N?unit=1``)."""

    def __init__(
        self, model: EurothermModel, port: int = 0, transport: str = "tcp", baudrate: int = 9600, unit: int = 1
    ) -> None:
        if transport not in ("tcp", "rtu"):
            raise ValueError(f"Eurotherm emulator transport must be tcp or rtu, got {transport!r}")
        if not 1 <= unit <= 247:
            raise ValueError(f"Eurotherm emulator unit must be 1..247, got {unit}")
        self.unit = unit
        self.model = model
        self.faults = Faults()
        self.faults.cell_time = model.plant.now
        self.transport = transport
        self.baudrate = baudrate
        self.modem = NullModem() if transport == "rtu" else None
        self._loop = asyncio.new_event_loop()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port
        self._thread = threading.Thread(target=self._run, args=(port,), name="eurotherm-modbus", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or self._error is not None:
            raise RuntimeError(f"Eurotherm emulator did not start: {self._error}")
        if self.modem is not None:
            self.resource = f"modbus-rtu://{self.modem.client_path}?unit={unit}&baudrate={baudrate}"
        else:
            self.resource = f"modbus-tcp://127.0.0.1:{self.port}?unit={unit}"

    # -- pymodbus side (its own event loop, in its own thread) ------------------------------
    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is None:
            self.model.refresh(registers)
            return None
        return self.model.write(address, [int(v) for v in set_values], registers)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """Requests to another device address vanish; transport faults on the outgoing frames."""
        if not sending:
            return data if self._addressed_to_us(data) else b""
        action = self.faults.next_action()
        if action == NO_REPLY:
            return b""
        if action == DROP_LINK:
            self._loop.call_soon(self._drop_connections)
            return b""
        return garble(data) if action == GARBLED else data

    def _addressed_to_us(self, frame: bytes) -> bool:
        """The device address of a request: byte 6 of a Modbus TCP frame (after the MBAP
        header), byte 0 of an RTU frame (Modbus Application Protocol v1.1b3 §4.1; Modbus
        over serial line v1.02 §2.3). Broadcasts (address 0) are not emulated."""
        index = 6 if self.transport == "tcp" else 0
        return len(frame) > index and frame[index] == self.unit

    def _drop_connections(self) -> None:
        if self._server is not None:
            for conn in list(self._server.active_connections.values()):
                with contextlib.suppress(Exception):
                    conn.close()

    def _run(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            device = SimDevice(
                id=self.unit,
                simdata=[SimData(0, count=REGISTERS, values=0, datatype=DataType.REGISTERS)],
                action=self._action,
            )
            self._loop.run_until_complete(self._start(device, port))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self, device: SimDevice, port: int) -> None:
        if self.modem is not None:
            self._server = ModbusSerialServer(
                device,
                port=self.modem.server_path,
                baudrate=self.baudrate,
                trace_packet=self._trace,
            )
            await self._server.serve_forever(background=True)
            return
        self._server = ModbusTcpServer(device, address=("127.0.0.1", port), trace_packet=self._trace)
        await self._server.serve_forever(background=True)
        sockets = getattr(self._server.transport, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    # -- control -----------------------------------------------------------------------------------
    @property
    def plant(self) -> ChamberPlant:
        return self.model.plant

    @property
    def mode(self) -> str:
        return self.model.mode

    def raise_alarm(self, number: int = 1) -> None:
        """Alarm ``number`` (1..4) active in the status word."""
        with self.model.lock:
            self.model.status |= 1 << (number - 1)

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault instrument-error``: alarm 1 in the status word."""

        def alarm() -> bool:
            self.raise_alarm(1)
            return True

        return {"instrument-error": alarm}

    def sensor_break(self) -> None:
        with self.model.lock:
            self.model.status |= SENSOR_BREAK

    def clear_faults(self) -> None:
        with self.model.lock:
            self.model.status = 0

    def drop(self) -> None:
        self._loop.call_soon_threadsafe(self._drop_connections)

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        with contextlib.suppress(Exception):
            self._loop.close()
        if self.modem is not None:
            self.modem.close()


def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    cell: SimChannel | None = None,
    ambient: float | None = None,
    transport: str = "tcp",
    baudrate: int = 9600,
    unit: int = 1,
    **options: Any,
) -> EurothermServer:
    """Start the controller emulator: Modbus TCP on 127.0.0.1:``port`` (0 = a
    free port), or ``transport="rtu"``: Modbus RTU on a pseudo-terminal.
    ``cell``: a SimChannel shared with another emulator (the cell in this chamber)."""
    sim = cell if cell is not None else own_cell(params, cell_type, speed)
    model = EurothermModel(ChamberPlant(sim, ambient))
    return EurothermServer(model, port=int(port), transport=str(transport), baudrate=int(baudrate), unit=int(unit))
