"""Wire emulators of the Keithley 2450 and 2400 SourceMeters: SCPI on a TCP socket.

Each emulator is a ``TcpServer`` (127.0.0.1, raw socket as the instruments'
LAN port 5025, so a VISA ``TCPIP::127.0.0.1::<port>::SOCKET`` resource opens
it) speaking the instrument's own command set, with a ``LiveCell`` on its
terminals: the cell physics of ``drivers.sim`` in scaled real time. This
module holds the server and the registry's ``serve_2450``/``serve_2400``; what
both models share (settings, the off states' physics, the error queue) is in
``keithley_smu``, the command trees in ``keithley_2450`` and ``keithley_2400``.

Command sets, from the manuals:

* 2450 (SCPI mode, 2450 Reference Manual 2450-901-01 §6): ``:SOURce[1]:FUNCtion``,
  ``:SOURce:<CURRent|VOLTage>[:LEVel][:IMMediate][:AMPLitude]``, ``:SOURce:CURRent:VLIMit``,
  ``:SOURce:VOLTage:ILIMit`` and their ``:TRIPped?`` (§6 p. 6-72), ranges, delays,
  read-back, ``[:SENSe]:FUNCtion "VOLT"``, NPLC/range/auto-range, ``:OUTPut[:STATe]``,
  ``:OUTPut:<function>:SMODe HIMP|NORMal|ZERO|GUARd``, ``:READ?``/``:MEASure:<f>?``/
  ``:FETCh?`` with buffer elements (READing, SOURce, SOURSTATus, SEConds + FRACtional
  on the instrument's UTC clock, RELative (from the last reset here), UNIT, DATE...;
  source status bit 5 = 32 "source function level was limited", bit 7 = 128 output
  on, bit 3 = 8 read-back, §8 ``bufferVar.sourcestatuses``), ``:TRACe`` (CLEar,
  POINts, ACTual?, DATA?, MAKE, STATistics), ``:SYSTem:ERRor[:NEXT]?``/``:COUNt?``,
  ``:SYSTem:CLEar``, ``*IDN?`` ``*RST`` ``*CLS`` ``*OPC?`` ``*ESR?`` ``*STB?`` ``*LANG?``.
* 2400 (2400 User's Manual 2400S-900-01 §18): ``:SOURce:FUNCtion``, levels, ranges,
  ``:SOURce:CLEar[:IMMediate]``/``:AUTO``, ``[:SENSe]:<VOLT|CURR>:PROTection[:LEVel]``
  and ``:TRIPped?``, ``[:SENSe]:FUNCtion[:ON]``/``:OFF``/``:CONCurrent``,
  ``:FORMat:ELEMents`` (VOLTage, CURRent, RESistance, TIME, STATus: the status word,
  bit 3 = 8 "in compliance", bits 11–15 measure/source functions), ``:OUTPut[:STATe]``,
  ``:OUTPut:SMODe``, ``:READ?`` (error +803 "Output disabled" with the output off unless
  auto output-off is on), ``:MEASure:<f>?``, ``:INITiate``/``:FETCh?``, trigger/arm
  counts, ``:SYSTem:ERRor[:NEXT]?``/``:ALL?``/``:COUNt?``/``:CODE?`` (a 10-entry queue).

Anything else is answered as the instruments do: an error queue entry
(-113 "Undefined header", -224 "Illegal parameter value", ...). The units of a
message execute at one cell instant (``LiveCell.instant``): a real instrument
parses a message in microseconds, and a reading in the same message as a level
change sees the new level after one power-line cycle of settling. Time stamps
(2450 SEC/FRAC/REL, 2400 TIME) keep 10 significant digits. Not emulated: the
trigger model and sweeps on the instrument, TSP, digital I/O, the 2450's
``*LANG SCPI2400`` mode, ranges' resolution limits. Injectable
faults: transport faults through ``server.faults`` (no reply, garbled reply,
dropped connection), ``inject_error`` (an instrument error code in the queue)
and ``inject_compliance`` (the load drives the source into its limit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.sim import SimParams
from drivers.sim.wire.keithley_2400 import Keithley2400Emulator
from drivers.sim.wire.keithley_2450 import Keithley2450Emulator
from drivers.sim.wire.keithley_smu import SmuEmulator
from drivers.sim.wire.live_cell import LiveCell
from drivers.sim.wire.transport import LineHandler, PtyServer, Session, TcpServer


class _Handler(LineHandler):
    """One connection: lines in, replies out, through the shared instrument."""

    def __init__(self, session: Session, instrument: SmuEmulator) -> None:
        self.session = session
        self.instrument = instrument

    def on_line(self, line: bytes) -> None:
        reply = self.instrument.handle(line)
        if reply is not None:
            self.session.send(reply.encode("ascii") + self.session.terminator)


class SmuEmulatorServer:
    """A running SMU emulator: ``resource`` for VISA, ``faults``, ``stop()``, a context manager."""

    def __init__(self, instrument: SmuEmulator, port: int = 0, transport: str = "tcp", baudrate: int = 9600) -> None:
        self.instrument = instrument
        self.server: TcpServer | PtyServer
        if transport == "tcp":
            self.server = TcpServer(lambda session: _Handler(session, instrument), port=port)
            self.resource = f"TCPIP::{self.server.host}::{self.server.port}::SOCKET"
        elif transport == "pty":
            # RS-232 (2400S-900-01 §10): CR terminates replies by default; CR, LF or CR LF end commands.
            self.server = PtyServer(
                lambda session: _Handler(session, instrument), terminators=(b"\r", b"\n"), baudrate=baudrate
            )
            self.resource = f"ASRL{self.server.path}::INSTR"
        else:
            raise ValueError(f"Keithley emulator transport must be tcp or pty, got {transport!r}")
        self.faults = self.server.faults
        self.faults.cell_time = instrument.cell.now
        self._started = False

    @property
    def port(self) -> int:
        if not isinstance(self.server, TcpServer):
            raise AttributeError("a serial (pty) emulator has no port: use resource")
        return self.server.port

    @property
    def cell(self) -> LiveCell:
        return self.instrument.cell

    @property
    def output_on(self) -> bool:
        with self.instrument.lock:
            return self.instrument.state.output

    def inject_error(self, code: int = -300, message: str = "Device-specific error") -> None:
        """Put an instrument error code in the error queue (as a hardware fault would)."""
        self.instrument.inject_error(code, message)

    def inject_compliance(self) -> None:
        """The load drives the source into its limit (until the output is switched off)."""
        self.instrument.inject_compliance()

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault`` kinds of the SMU: an error queue entry (-300), and a compliance
        trip, which needs the output on (it waits for the first reply after that)."""

        def error() -> bool:
            self.inject_error()
            return True

        def compliance() -> bool:
            if not self.output_on:
                return False
            self.inject_compliance()
            return True

        return {"instrument-error": error, "compliance": compliance}

    def drop(self) -> None:
        """Pull the cable now (the instrument keeps its output as it was, as real ones do)."""
        if isinstance(self.server, TcpServer):
            self.server.drop_all()
        else:
            self.server.session.close()

    def truth(self) -> dict[str, Any]:
        return self.cell.truth()

    def start(self) -> SmuEmulatorServer:
        """Start serving (idempotent: the serve_* factories return a started server)."""
        if not self._started:
            self.server.start()
            self._started = True
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SmuEmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _serve(
    cls: type[SmuEmulator],
    params: SimParams,
    *,
    port: int,
    speed: float,
    cell_type: str,
    options: dict[str, Any],
) -> SmuEmulatorServer:
    clock = options.pop("clock", None)  # a Clock the caller controls (lockstep tests), else N× real time
    transport = str(options.pop("transport", "tcp"))
    baudrate = int(options.pop("baudrate", 9600))
    if transport == "pty" and cls.model != "2400":
        raise ValueError("only the 2400 has an RS-232 port (transport=pty); the 2450 is LAN/USB/GPIB")
    known = {"serial", "firmware", "off_mode"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown Keithley emulator option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    cell = LiveCell(params, cell_type, speed=speed, clock=clock)
    return SmuEmulatorServer(cls(cell, **options), port=port, transport=transport, baudrate=baudrate).start()


def serve_2450(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    **options: Any,
) -> SmuEmulatorServer:
    """A Keithley 2450 emulator on 127.0.0.1:``port`` (0 = a free port), started.

    Options: ``serial``, ``firmware`` (what ``*IDN?`` reports) and ``off_mode``,
    the output-off state at power-on: ``NORM`` (the instrument's default: a 0 V
    source limited to 0.5 % of the current range, which slowly drains a charged
    cell and holds a symmetric one at 0 V) or ``HIMP`` (relay open, as after a
    saved power-on setup). A driver sets its own off state when it connects.
    """
    options = {"serial": "04512450", "firmware": "1.7.12b", **options}
    return _serve(Keithley2450Emulator, params, port=port, speed=speed, cell_type=cell_type, options=options)


def serve_2400(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    **options: Any,
) -> SmuEmulatorServer:
    """A Keithley 2400 emulator on 127.0.0.1:``port`` (0 = a free port), started (options as serve_2450)."""
    options = {"serial": "1240024", "firmware": "C32   Oct  4 2010 14:20:11/A02  /S/K", **options}
    return _serve(Keithley2400Emulator, params, port=port, speed=speed, cell_type=cell_type, options=options)
