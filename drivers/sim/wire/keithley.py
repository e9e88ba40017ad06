"""Wire emulators of the Keithley 2450 and 2400 SourceMeters: SCPI on a TCP socket.

Each emulator is a ``TcpServer`` (127.0.0.1, raw socket as the instruments'
LAN port 5025, so a VISA ``TCPIP::127.0.0.1::<port>::SOCKET`` resource opens
it) speaking the instrument's own command set, with a ``LiveCell`` on its
terminals: the cell physics of ``drivers.sim`` in scaled real time.

Command sets, from the manuals:

* 2450 (SCPI mode, 2450 Reference Manual 2450-901-01 §6): ``:SOURce[1]:FUNCtion``,
  ``:SOURce:<CURRent|VOLTage>[:LEVel][:IMMediate][:AMPLitude]``, ``:SOURce:CURRent:VLIMit``,
  ``:SOURce:VOLTage:ILIMit`` and their ``:TRIPped?`` (§6 p. 6-72), ranges, delays,
  read-back, ``[:SENSe]:FUNCtion "VOLT"``, NPLC/range/auto-range, ``:OUTPut[:STATe]``,
  ``:OUTPut:<function>:SMODe HIMP|NORMal|ZERO|GUARd``, ``:READ?``/``:MEASure:<f>?``/
  ``:FETCh?`` with buffer elements (READing, SOURce, SOURSTATus, RELative, UNIT...;
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
(-113 "Undefined header", -224 "Illegal parameter value", ...). Injectable
faults: transport faults through ``server.faults`` (no reply, garbled reply,
dropped connection), ``inject_error`` (an instrument error code in the queue)
and ``inject_compliance`` (the load drives the source into its limit).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.sim import SimParams
from drivers.sim.wire import scpi_tree as scpi
from drivers.sim.wire.live_cell import CurrentSource, LiveCell, OpenCircuit, Reading, Source, VoltageSource
from drivers.sim.wire.scpi_tree import CommandTree, ScpiError, StatusModel, boolean, choice, number, one
from drivers.sim.wire.transport import LineHandler, Session, TcpServer

#: What a meter reports for "no value" (e.g. resistance with no current flowing).
NO_VALUE = 9.91e37
OFF_MODES = {"HIMPedance": "HIMP", "NORMal": "NORM", "ZERO": "ZERO", "GUARd": "GUAR"}
FUNCTIONS = {"CURRent": "CURR", "VOLTage": "VOLT"}


@dataclass
class SmuState:
    """The settings of the emulated SMU that affect what the cell sees or what is read."""

    source: str = "VOLT"
    level: dict[str, float] = field(default_factory=lambda: {"CURR": 0.0, "VOLT": 0.0})
    voltage_limit: float = 21.0
    current_limit: float = 105e-6
    output: bool = False
    off_mode: dict[str, str] = field(default_factory=lambda: {"CURR": "NORM", "VOLT": "NORM"})
    readback: bool = True
    current_range: float = 1e-4  # A: sets the NORMal off-state's limit (0.5 % of range)
    settings: dict[str, str] = field(default_factory=dict)  # inert settings, kept for their queries


class SmuEmulator:
    """The instrument: settings, error queue, and the cell on its terminals.

    Subclasses add their dialect's command tree. One lock serialises commands
    from every connection (as the instrument's single command parser does).
    """

    model = "SMU"
    vendor = "KEITHLEY INSTRUMENTS"
    queue_capacity = 10
    number_format = "{:.6E}"
    #: Time stamps keep more digits than readings so hours of data resolve milliseconds.
    time_format = "{:.10E}"
    #: Cell seconds between a source change and a reading of it (one power-line cycle).
    settle = 0.02

    def __init__(self, cell: LiveCell, *, serial: str, firmware: str, off_mode: str = "NORM") -> None:
        self.cell = cell
        self.serial = serial
        self.firmware = firmware
        self.power_on_off_mode = choice(off_mode, OFF_MODES)
        self.lock = threading.RLock()
        self.state = SmuState()
        self.status = StatusModel(capacity=self.queue_capacity)
        self.tree = CommandTree(self.status)
        self.received: deque[str] = deque(maxlen=500)
        self.t_reset = cell.clock.now()
        #: The instrument's real-time clock: UTC now at power-on, then at the emulated speed.
        self.utc0 = time.time() - cell.clock.now()
        self.tree.add_common(self.identity, self.reset)
        self._build()
        self.reset()
        self.state.off_mode = dict.fromkeys(("CURR", "VOLT"), self.power_on_off_mode)
        self.apply()

    # --- identity and reset -----------------------------------------------------------
    def identity(self) -> str:
        return f"{self.vendor},MODEL {self.model},{self.serial},{self.firmware}"

    def reset(self) -> None:
        """*RST: defaults, output off (the error queue is kept, as IEEE 488.2 says)."""
        with self.lock:
            self.state = SmuState()
            self.t_reset = self.cell.clock.now()
            self._reset_dialect()
            self.apply()

    def _reset_dialect(self) -> None:
        """Dialect defaults beyond SmuState's."""

    def _build(self) -> None:
        raise NotImplementedError

    # --- the wire ------------------------------------------------------------------------
    def handle(self, line: bytes) -> str | None:
        text = line.decode("ascii", errors="replace").strip()
        with self.lock, self.cell.instant():
            self.received.append(text)
            if not text:
                return None
            return self.tree.execute(text)

    # --- physics -----------------------------------------------------------------------------
    def apply(self) -> None:
        """Connect the cell to what the output is doing now."""
        st = self.state
        source: Source
        if st.output:
            if st.source == "CURR":
                source = CurrentSource(st.level["CURR"], st.voltage_limit)
            else:
                source = VoltageSource(st.level["VOLT"], st.current_limit)
        else:
            mode = st.off_mode[st.source]
            if mode == "HIMP":
                source = OpenCircuit()
            elif mode == "GUAR":
                source = CurrentSource(0.0, st.voltage_limit)
            elif mode == "ZERO":
                limit = abs(st.level["CURR"]) if st.source == "CURR" else 0.0
                source = VoltageSource(0.0, max(limit, 0.005 * st.current_range))
            else:  # NORMal: a 0 V source limited to 0.5 % of the current range
                source = VoltageSource(0.0, 0.005 * st.current_range)
        self.cell.set_source(source)

    def reading(self) -> Reading:
        """One measurement; with the output relay open the meter sees nothing."""
        r = self.cell.read(self.settle)
        st = self.state
        if not st.output and st.off_mode[st.source] == "HIMP":
            return Reading(t=r.t, E=0.0, I=0.0, T=r.T, limited=False)
        return r

    def tripped(self) -> bool:
        return self.state.output and self.cell.clamped

    def fmt(self, value: float) -> str:
        return self.number_format.format(value)

    # --- faults -------------------------------------------------------------------------------
    def inject_error(self, code: int, message: str) -> None:
        with self.lock:
            self.status.push(code, message)

    def inject_compliance(self) -> None:
        with self.lock:
            self.cell.force_limit()

    # --- registration helpers ---------------------------------------------------------------
    def setting(
        self,
        pattern: str,
        key: str,
        default: str,
        parse: Callable[[str], str] = lambda s: s.strip(),
    ) -> None:
        """A setting the physics ignores, stored so its query answers what was set."""

        def put(params: list[str]) -> None:
            self.state.settings[key] = parse(one(params))

        self.tree.add(pattern, set=put, query=lambda _: self.state.settings.get(key, default))

    def level_commands(self, prefix: str, function: str, low: float, high: float) -> None:
        def put(params: list[str]) -> None:
            self.state.level[function] = number(one(params), default=0.0, low=low, high=high)
            self.apply()

        self.tree.add(
            f"{prefix} {function}ent [LEVel] [IMMediate] [AMPLitude]"
            if function == "CURR"
            else f"{prefix} {function}age [LEVel] [IMMediate] [AMPLitude]",
            set=put,
            query=lambda _: self.fmt(self.state.level[function]),
        )

    def output_commands(self) -> None:
        def put(params: list[str]) -> None:
            self.state.output = boolean(one(params))
            self.apply()

        self.tree.add("OUTPut[1] [STATe]", set=put, query=lambda _: "1" if self.state.output else "0")

    def source_function_commands(self) -> None:
        def put(params: list[str]) -> None:
            self.state.source = choice(one(params), FUNCTIONS)
            self.apply()

        self.tree.add("[SOURce[1]] FUNCtion [MODE]", set=put, query=lambda _: self.state.source)

    def error_queue_commands(self) -> None:
        st = self.status
        self.tree.add("SYSTem ERRor [NEXT]", query=lambda _: scpi.format_error(st.pop()))
        self.tree.add("SYSTem ERRor COUNt", query=lambda _: str(len(st.queue)))
        self.tree.add("SYSTem CLEar", set=lambda _: st.queue.clear())


# ========================================================================================
class Keithley2450Emulator(SmuEmulator):
    """Model 2450 in its SCPI command set (not the SCPI 2400 emulation, not TSP)."""

    model = "2450"
    queue_capacity = 100

    def _reset_dialect(self) -> None:
        self.sense = "CURR"
        self.buffers: dict[str, _Buffer] = {"defbuffer1": _Buffer(100000), "defbuffer2": _Buffer(100000)}

    def _build(self) -> None:
        t = self.tree
        self.tree.add("*LANG", set=lambda p: self._language(one(p)), query=lambda _: "SCPI")
        self.source_function_commands()
        for fn, low, high in (("CURR", -1.05, 1.05), ("VOLT", -210.0, 210.0)):
            self.level_commands("[SOURce[1]]", fn, low, high)
        t.add(
            "[SOURce[1]] CURRent VLIMit [LEVel]", set=self._set_vlim, query=lambda _: self.fmt(self.state.voltage_limit)
        )
        t.add(
            "[SOURce[1]] VOLTage ILIMit [LEVel]", set=self._set_ilim, query=lambda _: self.fmt(self.state.current_limit)
        )
        t.add("[SOURce[1]] CURRent VLIMit [LEVel] TRIPped", query=lambda _: self._trip("CURR"))
        t.add("[SOURce[1]] VOLTage ILIMit [LEVel] TRIPped", query=lambda _: self._trip("VOLT"))
        t.add("[SOURce[1]] CURRent READ BACK", set=self._set_readback, query=lambda _: str(int(self.state.readback)))
        t.add("[SOURce[1]] VOLTage READ BACK", set=self._set_readback, query=lambda _: str(int(self.state.readback)))
        for fn in ("CURRent", "VOLTage"):
            key = FUNCTIONS[fn]
            self.setting(
                f"[SOURce[1]] {fn} RANGe", f"SOUR:{key}:RANG", "1.000000E-04" if key == "CURR" else "2.000000E+01"
            )
            self.setting(f"[SOURce[1]] {fn} RANGe AUTO", f"SOUR:{key}:RANG:AUTO", "1", self._bool_text)
            self.setting(f"[SOURce[1]] {fn} DELay", f"SOUR:{key}:DEL", "0.000000E+00")
            self.setting(f"[SOURce[1]] {fn} DELay AUTO", f"SOUR:{key}:DEL:AUTO", "1", self._bool_text)
            t.add(f"OUTPut[1] {fn} SMODe", set=self._off_mode_setter(key), query=self._off_mode_getter(key))
        self.setting("[SOURce[1]] VOLTage PROTection [LEVel]", "SOUR:VOLT:PROT", "NONE")
        t.add("[SOURce[1]] VOLTage PROTection [LEVel] TRIPped", query=lambda _: "0")
        t.add(
            "[SENSe[1]] FUNCtion [ON]",
            set=self._set_sense,
            query=lambda _: f'"{self.sense}:DC"' if self.sense != "RES" else '"RES"',
        )
        for fn in ("CURRent", "VOLTage", "RESistance"):
            key = fn[:4].upper()
            dc = " [DC]" if fn != "RESistance" else ""
            self.setting(f"[SENSe[1]] {fn}{dc} NPLCycles", f"SENS:{key}:NPLC", "1.000000E+00")
            self.setting(f"[SENSe[1]] {fn}{dc} RANGe [UPPer]", f"SENS:{key}:RANG", "1.000000E-04")
            self.setting(f"[SENSe[1]] {fn}{dc} RANGe AUTO", f"SENS:{key}:RANG:AUTO", "1", self._bool_text)
            self.setting(f"[SENSe[1]] {fn}{dc} AZERo [STATe]", f"SENS:{key}:AZER", "1", self._bool_text)
            self.setting(f"[SENSe[1]] {fn}{dc} RSENse", f"SENS:{key}:RSEN", "0", self._bool_text)
            self.setting(f"[SENSe[1]] {fn}{dc} AVERage [STATe]", f"SENS:{key}:AVER", "0", self._bool_text)
            self.setting(f"[SENSe[1]] {fn}{dc} AVERage COUNt", f"SENS:{key}:AVER:COUN", "10")
            self.setting(f"[SENSe[1]] {fn}{dc} AVERage TCONtrol", f"SENS:{key}:AVER:TCON", "REP")
        self.setting("[SENSe[1]] COUNt", "SENS:COUN", "1")
        self.output_commands()
        t.add("READ", query=self._read)
        t.add("FETCh", query=self._fetch)
        t.add("MEASure [VOLTage] [DC]", query=lambda p: self._measure("VOLT", p))
        t.add("MEASure CURRent [DC]", query=lambda p: self._measure("CURR", p))
        t.add("MEASure RESistance", query=lambda p: self._measure("RES", p))
        t.add("TRACe CLEar", set=self._trace_clear)
        t.add("TRACe POINts", set=self._trace_points, query=lambda p: str(self._buffer(p, 0).capacity))
        t.add("TRACe ACTual", query=lambda p: str(len(self._buffer(p, 0).rows)))
        t.add("TRACe DATA", query=self._trace_data)
        t.add("TRACe MAKE", set=self._trace_make)
        t.add("TRACe DELete", set=lambda p: self.buffers.pop(scpi.unquote(one(p)), None))
        for stat, fn in (("AVERage", _mean), ("MAXimum", max), ("MINimum", min), ("STDDev", _stddev)):
            t.add(f"TRACe STATistics {stat}", query=lambda p, fn=fn: self._trace_stat(p, fn))
        t.add("TRACe FILL MODE", set=lambda _: None)
        t.add("TRACe TRIGger", set=lambda p: self._buffer(p, 0).add(self._measure_row()))
        self.error_queue_commands()
        t.add("SYSTem EVENtlog NEXT", query=lambda _: scpi.format_error(self.status.pop()))
        t.add("SYSTem BEEPer [IMMediate]", set=lambda _: None)
        t.add("SYSTem VERSion", query=lambda _: "1999.0")
        t.add("STATus PRESet", set=lambda _: None)
        t.add("STATus CLEar", set=lambda _: self.status.clear())
        t.add("ABORt", set=lambda _: None)
        t.add("INITiate [IMMediate]", set=lambda _: self._buffer([], 0).add(self._measure_row()))
        self.setting("ROUTe TERMinals", "ROUT:TERM", "FRON", lambda s: choice(s, {"FRONt": "FRON", "REAR": "REAR"}))
        self.setting("FORMat [DATA]", "FORM", "ASC", lambda s: choice(s, {"ASCii": "ASC"}))
        self.setting("FORMat ASCii PRECision", "FORM:ASC:PREC", "0")

    # --- 2450 handlers -------------------------------------------------------------------------
    @staticmethod
    def _bool_text(text: str) -> str:
        return "1" if boolean(text) else "0"

    def _language(self, text: str) -> None:
        if choice(text, {"SCPI": "SCPI", "TSP": "TSP", "SCPI2400": "SCPI2400"}) != "SCPI":
            raise ScpiError(-221, "Settings conflict; this emulator speaks only the SCPI command set")

    def _set_vlim(self, params: list[str]) -> None:
        self.state.voltage_limit = number(one(params), default=21.0, low=0.02, high=210.0)
        self.apply()

    def _set_ilim(self, params: list[str]) -> None:
        self.state.current_limit = number(one(params), default=105e-6, low=1e-9, high=1.05)
        self.apply()

    def _trip(self, function: str) -> str:
        return "1" if self.state.source == function and self.tripped() else "0"

    def _set_readback(self, params: list[str]) -> None:
        self.state.readback = boolean(one(params))

    def _off_mode_setter(self, function: str) -> Callable[[list[str]], None]:
        def put(params: list[str]) -> None:
            self.state.off_mode[function] = choice(one(params), OFF_MODES)
            self.apply()

        return put

    def _off_mode_getter(self, function: str) -> Callable[[list[str]], str]:
        return lambda _: self.state.off_mode[function]

    def _set_sense(self, params: list[str]) -> None:
        name = scpi.unquote(one(params)).upper().replace(":DC", "")
        self.sense = choice(name, {"CURRent": "CURR", "VOLTage": "VOLT", "RESistance": "RES"})

    def _measure_row(self) -> _Row:
        r = self.reading()
        st = self.state
        if self.sense == "VOLT":
            value = r.E
        elif self.sense == "CURR":
            value = r.I
        else:
            value = r.E / r.I if abs(r.I) > 1e-15 else NO_VALUE
        measured_source = r.I if st.source == "CURR" else r.E
        source = measured_source if st.readback else st.level[st.source]
        status = (128 if st.output else 0) | (8 if st.readback else 0) | (32 if st.output and r.limited else 0)
        return _Row(
            t=r.t - self.t_reset, utc=self.utc0 + r.t, value=value, source=source, source_status=status, unit=self.sense
        )

    def _buffer(self, params: list[str], index: int) -> _Buffer:
        name = scpi.unquote(params[index]) if len(params) > index and params[index] else "defbuffer1"
        if name not in self.buffers:
            raise ScpiError(-224, f"Illegal parameter value; no reading buffer {name!r}")
        return self.buffers[name]

    def _elements(self, row: _Row, names: list[str]) -> str:
        if not names:
            names = ["READ"]
        out = []
        for raw in names:
            element = choice(raw, _ELEMENTS_2450)
            out.append(self._element(row, element))
        return ",".join(out)

    def _element(self, row: _Row, element: str) -> str:
        stamp = time.gmtime(row.utc)
        if element == "READ":
            return self.fmt(row.value)
        if element == "SOUR":
            return self.fmt(row.source)
        if element == "SOURSTAT":
            return str(row.source_status)
        if element == "STAT":
            return "0"
        if element == "REL":  # seconds since the last reset (the emulator's choice of origin)
            return self.time_format.format(row.t)
        if element == "SEC":
            return str(math.floor(row.utc))
        if element == "FRAC":
            return f"{row.utc - math.floor(row.utc):.9f}"
        if element == "UNIT":
            return {"VOLT": "Volt DC", "CURR": "Amp DC", "RES": "Ohm"}[row.unit]
        if element == "SOURUNIT":
            return "Amp DC" if self.state.source == "CURR" else "Volt DC"
        if element == "DATE":
            return time.strftime("%m/%d/%Y", stamp)
        if element in ("TIME", "TST"):
            return time.strftime("%m/%d/%Y %H:%M:%S", stamp) + f".{int((row.utc % 1) * 1e9):09d}"
        if element == "FORM":
            return f"{row.value:+.5f} {'V' if row.unit == 'VOLT' else 'A' if row.unit == 'CURR' else 'Ohm'}"
        return f"{row.source:+.5f} {'A' if self.state.source == 'CURR' else 'V'}"  # SOURFORM

    def _read(self, params: list[str]) -> str:
        buffer = self._buffer(params, 0)
        row = self._measure_row()
        buffer.add(row)
        return self._elements(row, params[1:])

    def _fetch(self, params: list[str]) -> str:
        buffer = self._buffer(params, 0)
        if not buffer.rows:
            raise ScpiError(-230, "Data corrupt or stale; the buffer is empty")
        return self._elements(buffer.rows[-1], params[1:])

    def _measure(self, function: str, params: list[str]) -> str:
        self.sense = function
        return self._read(params)

    def _trace_clear(self, params: list[str]) -> None:
        self._buffer(params, 0).rows.clear()

    def _trace_points(self, params: list[str]) -> None:
        size = int(number(one(params), low=1, high=6875000))
        buffer = self._buffer(params, 1)
        buffer.capacity = size
        while len(buffer.rows) > size:
            buffer.rows.popleft()

    def _trace_make(self, params: list[str]) -> None:
        if len(params) < 2:
            raise ScpiError.of(scpi.MISSING_PARAMETER)
        self.buffers[scpi.unquote(params[0])] = _Buffer(int(number(params[1], low=1, high=6875000)))

    def _trace_data(self, params: list[str]) -> str:
        if len(params) < 2:
            raise ScpiError.of(scpi.MISSING_PARAMETER)
        start, end = int(number(params[0])), int(number(params[1]))
        buffer = self._buffer(params, 2)
        rows = list(buffer.rows)
        if not 1 <= start <= end <= len(rows):
            raise ScpiError(-222, f"Data out of range; buffer holds {len(rows)} readings")
        return ",".join(self._elements(row, params[3:]) for row in rows[start - 1 : end])

    def _trace_stat(self, params: list[str], fn: Callable[[list[float]], float]) -> str:
        rows = self._buffer(params, 0).rows
        if not rows:
            return self.fmt(NO_VALUE)
        return self.fmt(fn([r.value for r in rows]))


@dataclass
class _Row:
    t: float  # s since the last reset
    utc: float  # the instrument's clock (UTC seconds)
    value: float
    source: float
    source_status: int
    unit: str


@dataclass
class _Buffer:
    capacity: int
    rows: deque[_Row] = field(default_factory=deque)

    def add(self, row: _Row) -> None:
        self.rows.append(row)
        while len(self.rows) > self.capacity:
            self.rows.popleft()


_ELEMENTS_2450 = {
    "READing": "READ",
    "SOURce": "SOUR",
    "SOURSTATus": "SOURSTAT",
    "SOURUNIT": "SOURUNIT",
    "SOURFORMatted": "SOURFORM",
    "STATus": "STAT",
    "RELative": "REL",
    "SEConds": "SEC",
    "FRACtional": "FRAC",
    "UNIT": "UNIT",
    "DATE": "DATE",
    "TIME": "TIME",
    "TSTamp": "TST",
    "FORMatted": "FORM",
}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _stddev(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


# ========================================================================================
class Keithley2400Emulator(SmuEmulator):
    """Model 2400 SourceMeter (SCPI, 2400S-900-01 §18)."""

    model = "2400"
    vendor = "KEITHLEY INSTRUMENTS INC."
    number_format = "{:+.6E}"
    time_format = "{:+.10E}"
    #: Status word bits (2400S-900-01 §18, :FORMat:ELEMents STATus).
    COMPLIANCE_BIT = 8
    FRONT_BIT = 4

    def _reset_dialect(self) -> None:
        self.sense_on: list[str] = ["CURR"]
        self.elements: list[str] = ["VOLT", "CURR", "RES", "TIME", "STAT"]
        self.auto_off = False
        self.last: str | None = None

    def _build(self) -> None:
        t = self.tree
        self.source_function_commands()
        for fn, low, high in (("CURR", -1.05, 1.05), ("VOLT", -210.0, 210.0)):
            self.level_commands("[SOURce[1]]", fn, low, high)
        for fn in ("CURRent", "VOLTage"):
            key = FUNCTIONS[fn]
            self.setting(
                f"[SOURce[1]] {fn} RANGe", f"SOUR:{key}:RANG", "+1.050000E-04" if key == "CURR" else "+2.100000E+01"
            )
            self.setting(f"[SOURce[1]] {fn} RANGe AUTO", f"SOUR:{key}:RANG:AUTO", "1", self._bool_text)
            self.setting(f"[SOURce[1]] {fn} MODE", f"SOUR:{key}:MODE", "FIX", lambda s: choice(s, {"FIXed": "FIX"}))
        self.setting("[SOURce[1]] DELay", "SOUR:DEL", "+0.000000E+00")
        self.setting("[SOURce[1]] DELay AUTO", "SOUR:DEL:AUTO", "1", self._bool_text)
        t.add("[SOURce[1]] CLEar [IMMediate]", set=self._source_clear)
        t.add("[SOURce[1]] CLEar AUTO", set=self._set_auto_off, query=lambda _: str(int(self.auto_off)))
        t.add(
            "[SENSe[1]] VOLTage [DC] PROTection [LEVel]",
            set=self._set_vprot,
            query=lambda _: self.fmt(self.state.voltage_limit),
        )
        t.add(
            "[SENSe[1]] CURRent [DC] PROTection [LEVel]",
            set=self._set_iprot,
            query=lambda _: self.fmt(self.state.current_limit),
        )
        t.add("[SENSe[1]] VOLTage [DC] PROTection TRIPped", query=lambda _: self._trip("CURR"))
        t.add("[SENSe[1]] CURRent [DC] PROTection TRIPped", query=lambda _: self._trip("VOLT"))
        for fn in ("CURRent", "VOLTage", "RESistance"):
            key = fn[:4].upper()
            dc = " [DC]" if fn != "RESistance" else ""
            self.setting(f"[SENSe[1]] {fn}{dc} NPLCycles", f"SENS:{key}:NPLC", "+1.000000E+00")
            self.setting(f"[SENSe[1]] {fn}{dc} RANGe [UPPer]", f"SENS:{key}:RANG", "+1.050000E-04")
            self.setting(f"[SENSe[1]] {fn}{dc} RANGe AUTO", f"SENS:{key}:RANG:AUTO", "1", self._bool_text)
        self.setting(
            "[SENSe[1]] RESistance MODE", "SENS:RES:MODE", "MAN", lambda s: choice(s, {"MANual": "MAN", "AUTO": "AUTO"})
        )
        self.setting("[SENSe[1]] FUNCtion CONCurrent", "SENS:FUNC:CONC", "1", self._bool_text)
        t.add(
            "[SENSe[1]] FUNCtion [ON]",
            set=self._func_on,
            query=lambda _: ",".join(f'"{f}:DC"' if f != "RES" else '"RES"' for f in self.sense_on),
        )
        t.add("[SENSe[1]] FUNCtion OFF", set=self._func_off)
        t.add("[SENSe[1]] FUNCtion [ON] ALL", set=lambda _: self._set_sense(["VOLT", "CURR", "RES"]))
        t.add("[SENSe[1]] FUNCtion ALL", set=lambda _: self._set_sense(["VOLT", "CURR", "RES"]))
        t.add("[SENSe[1]] FUNCtion OFF ALL", set=lambda _: self._set_sense([]))
        self.setting("[SENSe[1]] AVERage [STATe]", "SENS:AVER", "0", self._bool_text)
        self.setting("[SENSe[1]] AVERage TCONtrol", "SENS:AVER:TCON", "REP")
        self.setting("[SENSe[1]] AVERage COUNt", "SENS:AVER:COUN", "+1.000000E+01")
        self.output_commands()
        t.add("OUTPut[1] SMODe", set=self._set_off_mode, query=lambda _: self.state.off_mode["CURR"])
        t.add("FORMat ELEMents [SENSe[1]]", set=self._set_elements, query=lambda _: ",".join(self.elements))
        self.setting("FORMat [DATA]", "FORM", "ASC", lambda s: choice(s, {"ASCii": "ASC"}))
        t.add("READ", query=lambda _: self._read())
        t.add("FETCh", query=lambda _: self._fetch())
        t.add("INITiate [IMMediate]", set=lambda _: self._initiate())
        t.add("MEASure [VOLTage] [DC]", query=lambda _: self._measure("VOLT"))
        t.add("MEASure CURRent [DC]", query=lambda _: self._measure("CURR"))
        t.add("MEASure RESistance", query=lambda _: self._measure("RES"))
        t.add("ABORt", set=lambda _: None)
        for node in ("TRIGger", "ARM"):
            self.setting(f"{node} [SEQuence[1]] COUNt", f"{node}:COUN", "+1", self._count)
            self.setting(f"{node} [SEQuence[1]] SOURce", f"{node}:SOUR", "IMM")
            self.setting(f"{node} [SEQuence[1]] [TCONfigure] DIRection", f"{node}:DIR", "ACC")
        self.setting("TRIGger [SEQuence[1]] DELay", "TRIG:DEL", "+0.000000E+00")
        self.setting("ARM [SEQuence[1]] TIMer", "ARM:TIM", "+1.000000E-01")
        t.add("TRIGger CLEar", set=lambda _: None)
        self.error_queue_commands()
        t.add("SYSTem ERRor ALL", query=lambda _: self._errors_all(codes_only=False))
        t.add("SYSTem ERRor CODE [NEXT]", query=lambda _: str(self.status.pop()[0]))
        t.add("SYSTem ERRor CODE ALL", query=lambda _: self._errors_all(codes_only=True))
        t.add("STATus QUEue [NEXT]", query=lambda _: scpi.format_error(self.status.pop()))
        t.add("STATus PRESet", set=lambda _: None)
        t.add("SYSTem PRESet", set=lambda _: self.reset())
        t.add("SYSTem TIME RESet", set=lambda _: setattr(self, "t_reset", self.cell.clock.now()))
        t.add("SYSTem BEEPer [IMMediate]", set=lambda _: None)
        t.add("SYSTem VERSion", query=lambda _: "1996.0")
        self.setting("SYSTem BEEPer STATe", "SYST:BEEP:STAT", "1", self._bool_text)
        self.setting("SYSTem RSENse", "SYST:RSEN", "0", self._bool_text)
        self.setting("SYSTem AZERo [STATe]", "SYST:AZER", "1")
        self.setting("SYSTem LFRequency", "SYST:LFR", "60")
        self.setting("SYSTem LFRequency AUTO", "SYST:LFR:AUTO", "1", self._bool_text)
        self.setting("ROUTe TERMinals", "ROUT:TERM", "FRON", lambda s: choice(s, {"FRONt": "FRON", "REAR": "REAR"}))
        self.setting("DISPlay [WINDow[1]] ENABle", "DISP:ENAB", "1", self._bool_text)
        self.setting("DISPlay ENABle", "DISP:ENAB", "1", self._bool_text)

    # --- 2400 handlers -----------------------------------------------------------------------------
    @staticmethod
    def _bool_text(text: str) -> str:
        return "1" if boolean(text) else "0"

    @staticmethod
    def _count(text: str) -> str:
        value = int(number(text, default=1, low=1, high=2500))
        if value != 1:
            raise ScpiError(-221, "Settings conflict; this emulator takes one reading per trigger")
        return "+1"

    def _source_clear(self, _: list[str]) -> None:
        self.state.output = False
        self.apply()

    def _set_auto_off(self, params: list[str]) -> None:
        self.auto_off = boolean(one(params))

    def _set_vprot(self, params: list[str]) -> None:
        self.state.voltage_limit = number(one(params), default=21.0, low=0.2, high=210.0)
        self.apply()

    def _set_iprot(self, params: list[str]) -> None:
        self.state.current_limit = number(one(params), default=105e-6, low=1e-9, high=1.05)
        self.apply()

    def _trip(self, function: str) -> str:
        return "1" if self.state.source == function and self.tripped() else "0"

    def _set_off_mode(self, params: list[str]) -> None:
        mode = choice(one(params), OFF_MODES)
        self.state.off_mode = {"CURR": mode, "VOLT": mode}
        self.apply()

    def _function_names(self, params: list[str]) -> list[str]:
        names = []
        for raw in params:
            name = scpi.unquote(raw).upper().replace(":DC", "")
            names.append(choice(name, {"CURRent": "CURR", "VOLTage": "VOLT", "RESistance": "RES"}))
        if not names:
            raise ScpiError.of(scpi.MISSING_PARAMETER)
        return names

    def _set_sense(self, names: list[str]) -> None:
        self.sense_on = [f for f in ("VOLT", "CURR", "RES") if f in names]

    def _func_on(self, params: list[str]) -> None:
        self._set_sense(self.sense_on + self._function_names(params))

    def _func_off(self, params: list[str]) -> None:
        off = self._function_names(params)
        self._set_sense([f for f in self.sense_on if f not in off])

    def _set_elements(self, params: list[str]) -> None:
        options = {"VOLTage": "VOLT", "CURRent": "CURR", "RESistance": "RES", "TIME": "TIME", "STATus": "STAT"}
        elements = [choice(p, options) for p in params if p]
        if not elements:
            raise ScpiError.of(scpi.MISSING_PARAMETER)
        self.elements = [e for e in ("VOLT", "CURR", "RES", "TIME", "STAT") if e in elements]

    def status_word(self, r: Reading) -> int:
        st = self.state
        word = self.FRONT_BIT if st.settings.get("ROUT:TERM", "FRON") == "FRON" else 0
        if r.limited and st.output:
            word |= self.COMPLIANCE_BIT
        for bit, fn in ((11, "VOLT"), (12, "CURR"), (13, "RES")):
            if fn in self.sense_on:
                word |= 1 << bit
        word |= 1 << (14 if st.source == "VOLT" else 15)
        return word

    def _format_reading(self, r: Reading) -> str:
        values = {
            "VOLT": r.E,
            "CURR": r.I,
            "RES": (r.E / r.I if abs(r.I) > 1e-15 else NO_VALUE) if "RES" in self.sense_on else NO_VALUE,
            "TIME": r.t - self.t_reset,
            "STAT": float(self.status_word(r)),
        }
        return ",".join(
            self.time_format.format(values[e]) if e == "TIME" else self.fmt(values[e]) for e in self.elements
        )

    def _read(self) -> str:
        st = self.state
        if not st.output and not self.auto_off:
            raise ScpiError(803, "Output disabled")
        switched = not st.output
        if switched:
            st.output = True
            self.apply()
        try:
            text = self._format_reading(self.reading())
        finally:
            if switched:
                st.output = False
                self.apply()
        self.last = text
        return text

    def _initiate(self) -> None:
        self._read()

    def _fetch(self) -> str:
        if self.last is None:
            raise ScpiError(-230, "Data corrupt or stale")
        return self.last

    def _measure(self, function: str) -> str:
        self._set_sense([*self.sense_on, function])
        previous = self.auto_off
        self.auto_off = True  # :MEASure? = :CONFigure + :READ? with auto output-off
        try:
            return self._read()
        finally:
            self.auto_off = previous

    def _errors_all(self, *, codes_only: bool) -> str:
        errors = []
        while self.status.queue:
            errors.append(self.status.pop())
        if not errors:
            errors = [(0, "No error")]
        return ",".join(str(e[0]) if codes_only else scpi.format_error(e) for e in errors)


# ========================================================================================
class _Handler(LineHandler):
    """One connection: lines in, replies out, through the shared instrument."""

    def __init__(self, session: Session, instrument: SmuEmulator) -> None:
        self.session = session
        self.instrument = instrument

    def on_line(self, line: bytes) -> None:
        reply = self.instrument.handle(line)
        if reply is not None:
            self.session.send(reply.encode("ascii") + b"\n")


class SmuEmulatorServer:
    """A running SMU emulator: ``resource`` for VISA, ``faults``, ``stop()``, a context manager."""

    def __init__(self, instrument: SmuEmulator, port: int = 0) -> None:
        self.instrument = instrument
        self.server = TcpServer(lambda session: _Handler(session, instrument), port=port)
        self.faults = self.server.faults
        self.resource = f"TCPIP::{self.server.host}::{self.server.port}::SOCKET"
        self._started = False

    @property
    def port(self) -> int:
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

    def drop(self) -> None:
        """Pull the cable now (the instrument keeps its output as it was, as real ones do)."""
        self.server.drop_all()

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
    known = {"serial", "firmware", "off_mode"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"unknown Keithley emulator option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    cell = LiveCell(params, cell_type, speed=speed)
    return SmuEmulatorServer(cls(cell, **options), port=port).start()


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
