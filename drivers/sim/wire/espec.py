"""Espec temperature chamber, emulated: the controller's ASCII protocol over TCP
(port 10001 on a real chamber's LAN adapter) or a pseudo-terminal (RS-232C),
backed by the simulator's chamber model.

The command subset follows Espec's communication protocol for its P-300 and
SCP-220 controllers (as documented in Espec's "Communication
Function" manuals and used by Espec North America's ChamberConnectLibrary):
lines end in CR LF, queries end in ``?``, settings are acknowledged with
``OK:<command>`` and refused with ``NA:<reason>``.

* ``TEMP?`` -> ``<present>,<set point>,<upper alarm>,<lower alarm>`` (°C, 0.1 °C)
* ``TEMP, S<v>`` (set point), ``TEMP, H<v>`` / ``TEMP, L<v>`` (absolute alarm
  limits), several in one line: ``TEMP, S25.0 H40.0``; a blank may stand
  between the letter and the value (``TEMP, H 60.0``)
* ``MODE?`` and ``MODE?,DETAIL`` -> ``OFF`` | ``STANDBY`` | ``CONSTANT``;
  ``MODE, CONSTANT`` / ``MODE, STANDBY`` / ``MODE, OFF``
* ``POWER, ON`` (start constant operation) / ``POWER, OFF`` (controller off)
* ``CONSTANT SET?,TEMP`` -> ``<set point>,ON``
* a setting's reply echoes the command exactly as sent: ``TEMP, S30.0`` ->
  ``OK:TEMP, S30.0``
* ``MON?`` -> ``<temp>,<humidity>,<mode>,<number of alarms>`` (humidity empty:
  a temperature-only chamber)
* ``ALARM?`` -> ``<n>[,<code>…]``; ``TYPE?`` -> ``T,<controller>,<max °C>``;
  ``ROM?`` -> the controller firmware
* refusals: ``NA:CMD ERR`` (unknown command), ``NA:PARA ERR`` (missing or
  unreadable parameter), ``NA:DATA OUT OF RANGE``, ``NA:CHB NOT READY``
  (constant operation requested while an alarm is active)

Physics: ``ChamberPlant`` wraps the SimChannel's chamber (two first-order
lags: air toward the set point, cell toward the air). Constant operation
drives the air to the set point; STANDBY and OFF stop heating and cooling,
modelled as the air relaxing to the room (``ambient``, by default the cell's
initial temperature) with the same time constant. The reading is the air
temperature with the simulator's temperature noise, to 0.1 °C. The plant is
shared with the Eurotherm emulator; pass ``cell=`` (a SimChannel, see
``drivers.sim.wire.e4980a.shared_cell``) to put an emulated LCR meter's cell
in this chamber.

Faults: ``server.faults`` (transport: no reply, garbled reply, dropped
connection) and ``raise_alarm(code)``: the chamber stops (STANDBY), ``MON?``
counts the alarm and ``ALARM?`` lists it until ``clear_alarms()``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.sim import SimChannel, SimParams
from drivers.sim.wire.transport import EmulatorServer, LineHandler, PtyServer, Session, TcpServer
from labctl.clock import ScaledClock

CONTROLLER = "P300"
ROM = "P-300 Ver.3.02"
T_MIN, T_MAX = -75.0, 180.0


class ChamberPlant:
    """The chamber hardware as a controller drives it, on the simulator's chamber model."""

    def __init__(self, sim: SimChannel, ambient: float | None = None) -> None:
        self.sim = sim
        self.ambient = float(sim.params.temperature if ambient is None else ambient)
        self.lock = threading.Lock()
        self.running = False
        self.setpoint = float(sim.bench.chamber.setpoint)
        self._rng = np.random.default_rng([sim.params.seed, 7001])

    def now(self) -> float:
        return self.sim.clock.now()

    def air(self) -> float:
        """The chamber sensor: air temperature plus reading noise (°C)."""
        with self.lock:
            value = float(self.sim.bench.chamber.air(self.now()))
            return value + self.sim.params.noise_t * float(self._rng.standard_normal())

    def cell(self) -> float:
        """The cell's true temperature (for tests; no controller reads it)."""
        return float(self.sim.bench.chamber.cell(self.now()))

    def run(self, setpoint: float | None = None) -> None:
        """Closed-loop operation at ``setpoint`` (or the stored one)."""
        with self.lock:
            if setpoint is not None:
                self.setpoint = float(setpoint)
            self.running = True
            self.sim.bench.chamber.set(self.setpoint, self.now())

    def change_setpoint(self, setpoint: float) -> None:
        with self.lock:
            self.setpoint = float(setpoint)
            if self.running:
                self.sim.bench.chamber.set(self.setpoint, self.now())

    def stop(self) -> None:
        """Heating and cooling off: the air relaxes to the room."""
        with self.lock:
            if self.running or self.sim.bench.chamber.setpoint != self.ambient:
                self.sim.bench.chamber.set(self.ambient, self.now())
            self.running = False

    def output(self) -> float:
        """Heater (+) / cooler (−) demand in %, a proportional controller's view of the error."""
        if not self.running:
            return 0.0
        error = self.setpoint - float(self.sim.bench.chamber.air(self.now()))
        return float(np.clip(error / 5.0 * 100.0, -100.0, 100.0))


def own_cell(params: SimParams, cell_type: str, speed: float) -> SimChannel:
    """A cell for an emulator started alone (``shared_cell`` in ``e4980a`` does the same)."""
    kind = params.cell if cell_type == "auto" else cell_type
    return SimChannel(params, "ss" if kind == "auto" else kind, ScaledClock(speed))


@dataclass
class EspecModel:
    """The controller's state (one per chamber, whatever the number of connections)."""

    plant: ChamberPlant
    mode: str = "STANDBY"
    upper: float = 185.0
    lower: float = -80.0
    alarms: list[int] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def reading(self) -> str:
        return f"{self.plant.air():.1f}"

    def execute(self, line: str) -> str:
        """One command line -> its reply line (without CR LF)."""
        self.log.append(line)
        text = line.strip()
        head, sep, rest = text.partition(",")
        head = head.strip().upper()
        if head.endswith("?"):
            return self._query(head, rest.strip().upper() if sep else "")
        if not sep:
            return "NA:CMD ERR"
        return self._setting(head, rest.strip(), text)

    def _query(self, head: str, argument: str) -> str:
        p = self.plant
        if head == "TEMP?" and not argument:
            return f"{p.air():.1f},{p.setpoint:.1f},{self.upper:.1f},{self.lower:.1f}"
        if head == "MODE?" and argument in ("", "DETAIL"):
            return self.mode  # DETAIL adds RUN PAUSE etc., states of program runs (not emulated)
        if head == "MON?" and argument in ("", "DETAIL"):
            return f"{p.air():.1f},,{self.mode},{len(self.alarms)}"
        if head == "ALARM?" and not argument:
            return ",".join(str(x) for x in [len(self.alarms), *self.alarms])
        if head == "TYPE?" and not argument:
            return f"T,{CONTROLLER},{T_MAX:.1f}"
        if head == "ROM?" and not argument:
            return ROM
        if head == "CONSTANT SET?":
            if argument == "TEMP":
                return f"{p.setpoint:.1f},ON"
            return "NA:PARA ERR"
        return "NA:CMD ERR"

    def _setting(self, head: str, rest: str, text: str) -> str:
        echo = "OK:" + text  # the controller echoes the command as it was sent, blanks included
        if head == "TEMP":
            return self._set_temperature(rest, echo)
        if head == "MODE":
            return self._set_mode(rest.upper(), echo)
        if head == "POWER":
            power = rest.upper()
            if power not in ("ON", "OFF"):
                return "NA:PARA ERR"
            # POWER,ON starts constant operation (constant set 1); POWER,OFF turns the controller off
            return self._set_mode("CONSTANT" if power == "ON" else "OFF", echo)
        return "NA:CMD ERR"

    def _set_temperature(self, rest: str, echo: str) -> str:
        """``TEMP, S25.0 H40.0 L-10.0``: S/H/L items, a blank allowed before each value."""
        items = re.findall(r"([A-Z])\s*([-+]?\d+(?:\.\d*)?)?", rest.upper())
        if not items or re.sub(r"([A-Z])\s*([-+]?\d+(?:\.\d*)?)?|\s", "", rest.upper()):
            return "NA:PARA ERR"
        updates: dict[str, float] = {}
        for key, value in items:
            if key not in "SHL" or not value:
                return "NA:PARA ERR"
            updates[key] = float(value)
        if "S" in updates and not T_MIN <= updates["S"] <= T_MAX:
            return "NA:DATA OUT OF RANGE"
        upper, lower = updates.get("H", self.upper), updates.get("L", self.lower)
        if lower >= upper:
            return "NA:DATA OUT OF RANGE"
        self.upper, self.lower = upper, lower
        if "S" in updates:
            self.plant.change_setpoint(updates["S"])
        return echo

    def _set_mode(self, mode: str, echo: str) -> str:
        if mode not in ("CONSTANT", "STANDBY", "OFF"):
            return "NA:PARA ERR"
        if mode == "CONSTANT":
            if self.alarms:
                return "NA:CHB NOT READY"
            self.plant.run()
        else:
            self.plant.stop()
        self.mode = mode
        return echo

    def raise_alarm(self, code: int) -> None:
        """An alarm: operation stops, the chamber is in standby until cleared."""
        self.alarms.append(int(code))
        self.plant.stop()
        self.mode = "STANDBY"


class EspecHandler(LineHandler):
    def __init__(self, session: Session, model: EspecModel, lock: threading.Lock) -> None:
        self.session = session
        self.model = model
        self.lock = lock

    def on_line(self, line: bytes) -> None:
        if not line.strip():
            return
        with self.lock:
            reply = self.model.execute(line.decode("ascii", errors="replace"))
        self.session.send(reply.encode("ascii") + b"\r\n")


class EspecServer(EmulatorServer):
    """A running Espec emulator: ``resource`` is what the driver opens."""

    def __init__(self, model: EspecModel, server: TcpServer | PtyServer, resource: str) -> None:
        self.model = model
        self.server = server
        self.faults = server.faults
        self.faults.cell_time = model.plant.now
        self.resource = resource
        self.port = getattr(server, "port", None)

    @property
    def plant(self) -> ChamberPlant:
        return self.model.plant

    @property
    def mode(self) -> str:
        return self.model.mode

    def raise_alarm(self, code: int = 13) -> None:
        self.model.raise_alarm(code)

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault instrument-error``: alarm 13 (operation stops, standby until cleared)."""

        def alarm() -> bool:
            self.raise_alarm()
            return True

        return {"instrument-error": alarm}

    def clear_alarms(self) -> None:
        self.model.alarms.clear()

    def drop(self) -> None:
        if isinstance(self.server, TcpServer):
            self.server.drop_all()
        else:
            self.server.session.close()

    def stop(self) -> None:
        self.server.stop()


def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    cell: SimChannel | None = None,
    transport: str = "tcp",
    ambient: float | None = None,
    **options: Any,
) -> EspecServer:
    """Start an Espec chamber emulator.

    ``transport="tcp"`` (default) listens on 127.0.0.1:``port`` (resource
    ``tcp://127.0.0.1:<port>``); ``"pty"`` serves a pseudo-terminal whose
    path is the resource (a serial port). ``cell``: a SimChannel shared with
    another emulator (the chamber's cell); otherwise one of its own.
    """
    sim = cell if cell is not None else own_cell(params, cell_type, speed)
    model = EspecModel(ChamberPlant(sim, ambient))
    lock = threading.Lock()
    terminators = (b"\r\n", b"\n")

    def handler(session: Session) -> EspecHandler:
        return EspecHandler(session, model, lock)

    if transport == "pty":
        pty = PtyServer(handler, terminators=terminators).start()
        return EspecServer(model, pty, pty.path)
    tcp = TcpServer(handler, port=int(port), terminators=terminators).start()
    return EspecServer(model, tcp, f"tcp://127.0.0.1:{tcp.port}")
