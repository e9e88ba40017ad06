"""Keysight E4980A precision LCR meter, emulated over SCPI/TCP on the cell physics.

What a client sees is an E4980A on its LAN socket port (SCPI, LF-terminated
lines): the subset of the command set a list-sweep impedance measurement
needs (E4980A/AL User's Guide, ch. 8 "Overview of Remote Control" and the
SCPI command reference):

* identification and IEEE 488.2 common commands: ``*IDN?``, ``*RST``,
  ``*CLS``, ``*OPC?``, ``*OPC``, ``*WAI``, ``*ESR?``, ``*STB?``, ``*OPT?``,
  ``*ESE``/``*ESE?``, ``*SRE``/``*SRE?``, and ``*TRG`` — a command, not a query:
  with the trigger source BUS it triggers a measurement and places the result
  in the output buffer, read like ``:FETC?`` (User's Guide, "*TRG"); ``*TRG?``
  is an undefined header. ``*STB?`` follows IEEE 488.2: bit 2 error queue
  not empty, bit 5 (ESB) only when ``*ESR`` & ``*ESE`` ≠ 0, bit 7 operation
  status summary (``:STAT:OPER`` & ``:STAT:OPER:ENAB``), bit 6 (MSS) when
  the other bits & ``*SRE`` ≠ 0;
* measurement set-up: ``:FUNC:IMP[:TYPE]`` (all 20 parameter pairs, CPD …
  YTR), ``:FUNC:IMP:RANG:AUTO``, ``:VOLT[:LEV]`` or ``:CURR[:LEV]`` (the
  test signal as a voltage, 0–2 Vrms, or a current, 0–20 mArms; setting one
  selects it), ``:FREQ[:CW]``,
  ``:APER {SHOR|MED|LONG}[,n]``, ``:BIAS:STAT``, ``:BIAS:VOLT[:LEV]``,
  ``:FORM[:DATA] ASC``, ``:FORM:ASC:LONG``, ``:DISP:PAGE``;
* list sweep: ``:LIST:FREQ f1,…,fn`` (≤ 201 points), ``:LIST:MODE
  {SEQ|STEP}``, ``:LIST:CLE:ALL``;
* trigger system: ``:TRIG[:SEQ1]:SOUR {INT|EXT|BUS|HOLD}``,
  ``:TRIG[:SEQ1][:IMM]``, ``:INIT[:IMM]``, ``:INIT:CONT``, ``:ABOR``;
* results: ``:FETC[:IMP][:FORM]?`` — spot: ``<A>,<B>,<status>``; list page:
  ``<A>,<B>,<status>,<IN/OUT>`` repeated per point (User's Guide, "Data
  Transfer"; status 0 normal, +1 overload with data 9.9E37, −1 no data);
* status: ``:STAT:OPER:COND?`` (bit 3 list sweeping, bit 4 measuring),
  ``:STAT:OPER[:EVEN]?`` (bit 3 list sweep complete, bit 4 measurement
  complete; read clears; User's Guide Tables 8-2/8-3), ``:STAT:OPER:ENAB``;
* errors: ``:SYST:ERR[:NEXT]?`` → ``+0,"No error"`` or ``-113,"Undefined
  header"`` etc., oldest first.

Numbers are sent in the fixed ASCII formats of the guide
(``SN.NNNNNESNN``, or ``SN.NNNNNNNNNESNN`` with ``:FORM:ASC:LONG ON``).
Headers, compound lines (``;``, with SCPI's "relative to the previous
header" rule), parameters and the error queue are ``drivers.kit.scpi``'s, the
parser every SCPI emulator here uses; an error ends the rest of its line.

Physics. The cell is a ``SimChannel`` (its own, or one shared with a chamber
emulator: ``serve(..., cell=shared_cell(...))``). Time between and during
measurements runs through the SimChannel as open-circuit Rest steps (a
ConstantVoltage hold while the DC bias is on), so the cell's history and
temperature (chamber) are the simulator's; each point's Z is the cell model's
spectrum at that state and temperature plus the simulator's seeded noise.
A point takes about the E4980A's measurement time (data-sheet typical:
≈5.6/88/220 ms for SHORT/MED/LONG, plus a few periods of the test signal at
low frequencies) at the emulated speed.

Not emulated: comparator/bin sorting (IN/OUT is always 0), correction
(OPEN/SHORT/LOAD), DC resistance and monitor functions, ``REAL`` data
format, continuous internal triggering faster than one measurement per 5 ms
of wall time.

Faults: the transport's (``server.faults``: no reply, garbled reply, dropped
connection) and the instrument's: ``inject_error(code, message)`` puts an
error in the queue, ``inject_overload(points)`` makes the next points read
status +1 / 9.9E37.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drivers.kit import scpi
from drivers.kit.scpi import CommandTree, ScpiError
from drivers.sim import SimChannel, SimParams
from drivers.sim import impedance as zel
from drivers.sim.wire.transport import EmulatorServer, LineHandler, Session, TcpServer
from labctl.channel import StepContext
from labctl.clock import ScaledClock
from labctl.steps import ConstantVoltage, EndReason, Limits, Rest

IDN = "Keysight Technologies,E4980A,MY54321098,B.07.02"
OPTIONS = "001,200,710"  # power/DC bias enhance (±40 V bias, 20 Vrms), 200 Vdc max bias, LAN

#: Data for an overloaded point or a point not measured (User's Guide, "Data Transfer").
NO_DATA = 9.9e37
FREQ_RANGE = (20.0, 2e6)
MAX_LIST_POINTS = 201
AC_LEVEL_MAX = 20.0  # Vrms with option 001
BIAS_MAX = 40.0  # V with option 001

#: Typical measurement time per point (s) and test-signal periods it needs at low f.
APERTURE_BASE = {"SHOR": 0.0056, "MED": 0.088, "LONG": 0.22}
APERTURE_PERIODS = {"SHOR": 1.0, "MED": 3.0, "LONG": 6.0}

IMPEDANCE_TYPES = (
    "CPD", "CPQ", "CPG", "CPRP", "CSD", "CSQ", "CSRS", "LPD", "LPQ", "LPG",
    "LPRP", "LPRD", "LSD", "LSQ", "LSRS", "LSRD", "RX", "ZTD", "ZTR", "GB", "YTD", "YTR",
)  # fmt: skip

#: Units the meter accepts after a number (User's Guide, "Numeric parameters").
UNITS = {"HZ": 1.0, "KHZ": 1e3, "MHZ": 1e6, "MAHZ": 1e6, "V": 1.0, "MV": 1e-3, "UV": 1e-6, "A": 1.0}
UNITS.update({"MA": 1e-3, "UA": 1e-6, "S": 1.0, "MS": 1e-3, "K": 1e3})


def _number(text: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A numeric parameter with the meter's unit suffixes (MIN/MAX map to the bounds)."""
    return scpi.number(text, low=minimum, high=maximum, units=UNITS)


def ascii_number(value: float, long: bool) -> str:
    """The E4980A's fixed-length ASCII number: ``+1.23456E+03`` (``LONG OFF``)."""
    return f"{value:+.9E}" if long else f"{value:+.5E}"


# --- the parameter pairs ----------------------------------------------------------------


def parameter_pair(kind: str, z: complex, freq: float) -> tuple[float, float]:
    """Primary and secondary parameter of ``kind`` for impedance ``z`` at ``freq``."""
    w = 2.0 * math.pi * freq
    r, x = z.real, z.imag
    y = 1.0 / z if z != 0 else complex(math.inf, 0.0)
    g, b = y.real, y.imag
    d_series = r / -x if x else math.inf  # D = R/|Xc| for a capacitor in series form
    d_parallel = g / b if b else math.inf
    table: dict[str, tuple[float, float]] = {
        "RX": (r, x),
        "ZTD": (abs(z), math.degrees(math.atan2(x, r))),
        "ZTR": (abs(z), math.atan2(x, r)),
        "GB": (g, b),
        "YTD": (abs(y), math.degrees(math.atan2(b, g))),
        "YTR": (abs(y), math.atan2(b, g)),
        "CSRS": (-1.0 / (w * x) if x else math.inf, r),
        "CSD": (-1.0 / (w * x) if x else math.inf, d_series),
        "CSQ": (-1.0 / (w * x) if x else math.inf, 1.0 / d_series if d_series else math.inf),
        "CPG": (b / w, g),
        "CPRP": (b / w, 1.0 / g if g else math.inf),
        "CPD": (b / w, d_parallel),
        "CPQ": (b / w, 1.0 / d_parallel if d_parallel else math.inf),
        "LSRS": (x / w, r),
        "LSD": (x / w, r / x if x else math.inf),
        "LSQ": (x / w, x / r if r else math.inf),
        "LSRD": (x / w, r),
        "LPRP": (-1.0 / (w * b) if b else math.inf, 1.0 / g if g else math.inf),
        "LPG": (-1.0 / (w * b) if b else math.inf, g),
        "LPD": (-1.0 / (w * b) if b else math.inf, g / -b if b else math.inf),
        "LPQ": (-1.0 / (w * b) if b else math.inf, -b / g if g else math.inf),
        "LPRD": (-1.0 / (w * b) if b else math.inf, 1.0 / g if g else math.inf),
    }
    return table[kind]


def point_time(freq: float, aperture: str, averages: int) -> float:
    """Cell seconds one measured point takes (approximating the data sheet's typical times)."""
    return (APERTURE_BASE[aperture] + APERTURE_PERIODS[aperture] / freq) * max(averages, 1)


# --- the instrument -------------------------------------------------------------------


@dataclass
class _Point:
    a: float = NO_DATA
    b: float = NO_DATA
    status: int = -1


@dataclass
class _Settings:
    """Everything ``*RST`` restores (E4980A defaults for the parts emulated)."""

    function: str = "CPD"
    auto_range: bool = True
    level: float = 1.0
    #: Test signal as a current (``:CURR``), Arms; ``signal`` says which level is in force.
    current_level: float = 0.0
    signal: str = "VOLT"
    frequency: float = 1000.0
    aperture: str = "MED"
    averages: int = 1
    bias_on: bool = False
    bias: float = 0.0
    ascii_long: bool = False
    page: str = "MEAS"
    list_freqs: list[float] = field(default_factory=list)
    list_mode: str = "SEQ"
    trigger_source: str = "INT"
    continuous: bool = False


class E4980AModel:
    """The emulated meter: settings, trigger system, status registers, error queue.

    One per server, shared by all its connections (one instrument). Sweeps
    run in a worker thread that drives the SimChannel; :ABOR stops it.
    """

    def __init__(self, sim: SimChannel) -> None:
        self.sim = sim
        self.lock = threading.RLock()
        self.done = threading.Condition(self.lock)
        self.settings = _Settings()
        #: Error queue and the standard event status register (IEEE 488.2), as every emulator keeps them.
        self.status = scpi.StatusModel(capacity=10)
        #: The command set on the kit's parser (built on first use: ``execute``).
        self.commands: CommandTree | None = None
        self.oper_condition = 0
        self.oper_event = 0
        self.oper_enable = 0
        self.initiated = False
        self.results: list[_Point] = []
        self.result_page = "MEAS"
        self.step_index = 0  # next point of a STEP-mode list
        self.sweeps = 0
        self.overloads = 0
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        #: Every command line received (tests and debugging).
        self.log: deque[str] = deque(maxlen=1000)

    # -- errors --------------------------------------------------------------------
    def push_error(self, code: int, message: str = "") -> None:
        with self.lock:
            self.status.push(code, message or scpi.STANDARD_ERRORS.get(code, "Error"))

    def next_error(self) -> str:
        with self.lock:
            code, message = self.status.pop()
        return f'{code:+d},"{message}"'  # the E4980A signs the code (+0,"No error")

    # -- state -------------------------------------------------------------------------
    @property
    def measuring(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def reset(self) -> None:
        self.abort()
        with self.lock:
            self.settings = _Settings()
            self.results = []
            self.initiated = False

    def abort(self) -> None:
        """:ABOR: stop a measurement, trigger system to idle."""
        worker = self._worker
        self._abort.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join(5.0)
        with self.lock:
            self._abort.clear()
            self.initiated = False
            self.oper_condition = 0
            self.done.notify_all()

    def initiate(self) -> None:
        with self.lock:
            self.initiated = True
            if self.settings.trigger_source == "INT" and not self.measuring:
                self._start()

    def trigger(self, from_bus: bool) -> None:
        """A trigger event (:TRIG:IMM ignores the source, *TRG needs BUS)."""
        with self.lock:
            waiting = self.initiated or self.settings.continuous
            if not waiting or self.measuring or (from_bus and self.settings.trigger_source != "BUS"):
                raise ScpiError.of(scpi.TRIGGER_IGNORED)
            self._start()

    def _start(self) -> None:
        s = self.settings
        if s.page == "LIST":
            if not s.list_freqs:
                raise ScpiError(-200, "List sweep has no points")
            freqs = list(s.list_freqs) if s.list_mode == "SEQ" else [s.list_freqs[self.step_index % len(s.list_freqs)]]
            if s.list_mode == "SEQ" or self.step_index == 0:
                self.results = [_Point() for _ in s.list_freqs]
        else:
            freqs = [s.frequency]
            self.results = [_Point()]
        self.result_page = s.page
        self.oper_condition = 0x10 | (0x08 if s.page == "LIST" else 0)
        self.initiated = s.continuous
        self._abort.clear()
        self._worker = threading.Thread(target=self._measure, args=(freqs,), name="e4980a-sweep", daemon=True)
        self._worker.start()

    # -- the measurement -------------------------------------------------------------------
    def _advance(self, seconds: float) -> bool:
        """Let the cell live ``seconds`` of cell time under the present DC condition."""
        s = self.settings
        step: Rest | ConstantVoltage
        if s.bias_on:
            step = ConstantVoltage(voltage=s.bias, limits=Limits(max_time=seconds), sample_period=seconds)
        else:
            step = Rest(duration=seconds, sample_period=seconds)
        ctx = StepContext(clock=self.sim.clock, t_origin=0.0, interrupt=self._abort)
        run = self.sim.run_step(step, ctx)
        try:
            while True:
                next(run)
        except StopIteration as stop:
            return stop.value.end_reason is not EndReason.ABORTED
        finally:
            run.close()

    def _measure(self, freqs: list[float]) -> None:
        s = self.settings
        self.sweeps += 1
        offset = 0 if s.page != "LIST" or s.list_mode == "SEQ" else self.step_index % len(s.list_freqs)
        completed = True
        for k, freq in enumerate(freqs):
            if self._abort.is_set():
                completed = False
                break
            duration = point_time(freq, s.aperture, s.averages)
            if not self._advance(duration):
                completed = False
                break
            point = self._point(freq, duration, seed=(self.sweeps, offset + k))
            with self.lock:
                if offset + k < len(self.results):
                    self.results[offset + k] = point
        with self.lock:
            if completed:
                if s.page == "LIST" and s.list_mode == "STEP":
                    self.step_index = (self.step_index + 1) % len(s.list_freqs)
                    if self.step_index == 0:
                        self.oper_event |= 0x08
                elif s.page == "LIST":
                    self.oper_event |= 0x08
                self.oper_event |= 0x10
            self.oper_condition = 0
            self.done.notify_all()
            again = completed and s.continuous and s.trigger_source == "INT"
            if again:
                threading.Thread(target=self._restart, daemon=True).start()

    def _restart(self) -> None:
        """Free-running internal trigger: the next measurement, at most one per 5 ms of wall time."""
        with self.lock:
            worker = self._worker
        if worker is not None:
            worker.join()
        time.sleep(0.005)
        with self.lock:
            if self.settings.continuous and self.settings.trigger_source == "INT" and not self.measuring:
                with contextlib.suppress(ScpiError):
                    self._start()

    def _point(self, freq: float, duration: float, seed: tuple[int, int]) -> _Point:
        s = self.settings
        if self.overloads > 0:
            self.overloads -= 1
            return _Point(NO_DATA, NO_DATA, 1)
        if s.level <= 0.0:
            return _Point(NO_DATA, NO_DATA, 1)  # no test signal: nothing to measure
        bench, p = self.sim.bench, self.sim.params
        t_abs = bench.state.t_abs
        celsius = float(bench.chamber.cell(t_abs - 0.5 * duration))
        rng = np.random.default_rng([p.seed, 4980, *seed])
        z = bench.cell.impedance(bench.state, np.array([freq]), celsius)
        z = complex(zel.with_noise(z, p.noise, rng)[0])
        a, b = parameter_pair(s.function, z, freq)
        return _Point(a, b, 0)

    def wait_done(self, timeout: float = 120.0) -> bool:
        with self.lock:
            return self.done.wait_for(lambda: not self.measuring, timeout)

    def fetch(self) -> str:
        """The last result in the data-transfer format of its display page."""
        self.wait_done()
        with self.lock:
            if not self.results or all(pt.status == -1 for pt in self.results):
                raise ScpiError.of(scpi.DATA_STALE)
            long = self.settings.ascii_long
            parts = []
            for pt in self.results:
                fields = [ascii_number(pt.a, long), ascii_number(pt.b, long), f"{pt.status:+d}"]
                if self.result_page == "LIST":
                    fields.append("+0")  # IN/OUT: comparator not emulated
                parts.append(",".join(fields))
            return ",".join(parts)


# --- the command table -----------------------------------------------------------------------

Handler = Callable[["E4980AModel", str], "str | None"]


def _set_function(m: E4980AModel, arg: str) -> None:
    word = arg.strip().upper()
    if word not in IMPEDANCE_TYPES:
        raise ScpiError.of(scpi.ILLEGAL_PARAMETER)
    m.settings.function = word


def _set_level(m: E4980AModel, arg: str) -> None:
    value = _number(arg, minimum=0.0, maximum=AC_LEVEL_MAX)
    if not 0.0 <= value <= AC_LEVEL_MAX:
        raise ScpiError.of(scpi.DATA_OUT_OF_RANGE)
    m.settings.level = value


def _set_frequency(m: E4980AModel, arg: str) -> None:
    value = _number(arg, minimum=FREQ_RANGE[0], maximum=FREQ_RANGE[1])
    if not FREQ_RANGE[0] <= value <= FREQ_RANGE[1]:
        raise ScpiError.of(scpi.DATA_OUT_OF_RANGE)
    m.settings.frequency = value


def _set_aperture(m: E4980AModel, arg: str) -> None:
    parts = [p for p in arg.split(",") if p.strip()]
    if not parts:
        raise ScpiError.of(scpi.MISSING_PARAMETER)
    m.settings.aperture = scpi.choice(parts[0], {"SHORt": "SHOR", "MEDium": "MED", "LONG": "LONG"})
    if len(parts) > 1:
        averages = _number(parts[1], minimum=1, maximum=256)
        if not (1 <= averages <= 256 and float(averages).is_integer()):
            raise ScpiError.of(scpi.DATA_OUT_OF_RANGE)
        m.settings.averages = int(averages)


def _set_bias(m: E4980AModel, arg: str) -> None:
    value = _number(arg, minimum=-BIAS_MAX, maximum=BIAS_MAX)
    if not -BIAS_MAX <= value <= BIAS_MAX:
        raise ScpiError.of(scpi.DATA_OUT_OF_RANGE)
    m.settings.bias = value


def _set_list(m: E4980AModel, arg: str) -> None:
    values = [_number(p) for p in arg.split(",") if p.strip()]
    if not values:
        raise ScpiError.of(scpi.MISSING_PARAMETER)
    if len(values) > MAX_LIST_POINTS:
        raise ScpiError(-108, "Too many list points")
    if any(not FREQ_RANGE[0] <= f <= FREQ_RANGE[1] for f in values):
        raise ScpiError.of(scpi.DATA_OUT_OF_RANGE)
    if m.measuring:
        raise ScpiError(-200, "List sweep in progress")
    m.settings.list_freqs = values
    m.step_index = 0


def _set_page(m: E4980AModel, arg: str) -> None:
    pages = {"MEASurement": "MEAS", "BNUMber": "BNUM", "BCOunt": "BCO", "LIST": "LIST", "MSETup": "MSET"}
    pages.update({"CSETup": "CSET", "LTABle": "LTAB", "LSETup": "LSET", "CATalog": "CAT", "SYSTem": "SYST"})
    m.settings.page = scpi.choice(arg, pages)


def _set_trigger_source(m: E4980AModel, arg: str) -> None:
    m.settings.trigger_source = scpi.choice(arg, {"INTernal": "INT", "EXTernal": "EXT", "BUS": "BUS", "HOLD": "HOLD"})


def _set_continuous(m: E4980AModel, arg: str) -> None:
    m.settings.continuous = scpi.boolean(arg)
    if m.settings.continuous:
        m.initiate()


def _set_format(m: E4980AModel, arg: str) -> None:
    if scpi.choice(arg.split(",")[0], {"ASCii": "ASC", "REAL": "REAL"}) != "ASC":
        raise ScpiError(-224, "Only ASCII data is emulated")


def _trg(m: E4980AModel, arg: str) -> scpi.Response:
    m.trigger(from_bus=True)
    m.wait_done()
    return scpi.Response(m.fetch())


def _immediate(m: E4980AModel, arg: str) -> None:
    m.trigger(from_bus=False)


def _oper_event(m: E4980AModel, arg: str) -> str:
    with m.lock:
        value, m.oper_event = m.oper_event, 0
    return str(value)


def _esr(m: E4980AModel, arg: str) -> str:
    with m.lock:
        return str(m.status.read_esr())


def _cls(m: E4980AModel, arg: str) -> None:
    with m.lock:
        m.status.clear()
        m.oper_event = 0


def _opc(m: E4980AModel, arg: str) -> None:
    with m.lock:
        m.status.esr |= 0x01


def _wai(m: E4980AModel, arg: str) -> None:
    m.wait_done()


def _stb(m: E4980AModel, arg: str) -> str:
    with m.lock:
        stb = m.status.stb() & ~0x40  # EAV (bit 2), ESB (bit 5) only through *ESE
        stb |= 0x80 if m.oper_event & m.oper_enable else 0
        if stb & m.status.sre & ~0x40:
            stb |= 0x40  # MSS: a summary bit enabled by *SRE
    return str(stb)


def _enable_register(name: str) -> Callable[[E4980AModel, str], None]:
    """``*ESE``/``*SRE``: an 8-bit enable mask, 0–255 (IEEE 488.2 §10.10, §10.34)."""

    def put(m: E4980AModel, arg: str) -> None:
        value = _number(arg, minimum=0, maximum=255)
        with m.lock:
            setattr(m.status, name, round(value))

    return put


def _set_current_level(m: E4980AModel, arg: str) -> None:
    m.settings.current_level = _number(arg, minimum=0.0, maximum=0.02)
    m.settings.signal = "CURR"


def _set_voltage_level(m: E4980AModel, arg: str) -> None:
    _set_level(m, arg)
    m.settings.signal = "VOLT"


def _list_query(m: E4980AModel, arg: str) -> str:
    return ",".join(ascii_number(f, m.settings.ascii_long) for f in m.settings.list_freqs)


def _set_enable(m: E4980AModel, arg: str) -> None:
    m.oper_enable = int(_number(arg)) & 0xFFFF


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _numeric(name: str) -> Callable[[E4980AModel, str], str]:
    """Query of a numeric setting, in the meter's ASCII number format."""
    return lambda m, a: ascii_number(getattr(m.settings, name), m.settings.ascii_long)


#: (header spec, setter, query): a setter/query of None means the form does not exist.
COMMANDS: list[tuple[str, Callable[[E4980AModel, str], Any] | None, Callable[[E4980AModel, str], str] | None]] = [
    ("*IDN", None, lambda m, a: IDN),
    ("*OPT", None, lambda m, a: OPTIONS),
    ("*RST", lambda m, a: m.reset(), None),
    ("*CLS", _cls, None),
    ("*OPC", _opc, lambda m, a: (m.wait_done(), "1")[1]),
    ("*WAI", _wai, None),
    ("*ESR", None, _esr),
    ("*STB", None, _stb),
    ("*TRG", _trg, None),
    ("*ESE", _enable_register("ese"), lambda m, a: str(m.status.ese)),
    ("*SRE", _enable_register("sre"), lambda m, a: str(m.status.sre)),
    ("[:SENSe]:FUNCtion:IMPedance[:TYPE]", _set_function, lambda m, a: m.settings.function),
    (
        "[:SENSe]:FUNCtion:IMPedance:RANGe:AUTO",
        lambda m, a: setattr(m.settings, "auto_range", scpi.boolean(a)),
        lambda m, a: _flag(m.settings.auto_range),
    ),
    ("[:SOURce]:VOLTage[:LEVel]", _set_voltage_level, _numeric("level")),
    ("[:SOURce]:CURRent[:LEVel]", _set_current_level, _numeric("current_level")),
    (
        "[:SOURce]:FREQuency[:CW]",
        _set_frequency,
        _numeric("frequency"),
    ),
    ("[:SENSe]:APERture", _set_aperture, lambda m, a: f"{m.settings.aperture},{m.settings.averages}"),
    (
        "[:SOURce]:BIAS:STATe",
        lambda m, a: setattr(m.settings, "bias_on", scpi.boolean(a)),
        lambda m, a: _flag(m.settings.bias_on),
    ),
    ("[:SOURce]:BIAS:VOLTage[:LEVel]", _set_bias, _numeric("bias")),
    ("[:SOURce]:LIST:FREQuency", _set_list, _list_query),
    (
        "[:SOURce]:LIST:MODE",
        lambda m, a: setattr(m.settings, "list_mode", scpi.choice(a, {"SEQuence": "SEQ", "STEPped": "STEP"})),
        lambda m, a: m.settings.list_mode,
    ),
    ("[:SOURce]:LIST:CLEar:ALL", lambda m, a: setattr(m.settings, "list_freqs", []), None),
    ("DISPlay:PAGE", _set_page, lambda m, a: m.settings.page),
    ("FORMat[:DATA]", _set_format, lambda m, a: "ASC"),
    (
        "FORMat:ASCii:LONG",
        lambda m, a: setattr(m.settings, "ascii_long", scpi.boolean(a)),
        lambda m, a: _flag(m.settings.ascii_long),
    ),
    ("TRIGger[:SEQuence[1]]:SOURce", _set_trigger_source, lambda m, a: m.settings.trigger_source),
    ("TRIGger[:SEQuence[1]][:IMMediate]", _immediate, None),
    ("INITiate[:IMMediate]", lambda m, a: m.initiate(), None),
    ("INITiate:CONTinuous", _set_continuous, lambda m, a: _flag(m.settings.continuous)),
    ("ABORt", lambda m, a: m.abort(), None),
    ("FETCh[:IMPedance][:FORMatted]", None, lambda m, a: m.fetch()),
    ("STATus:OPERation:CONDition", None, lambda m, a: str(m.oper_condition)),
    ("STATus:OPERation[:EVENt]", None, _oper_event),
    ("STATus:OPERation:ENABle", _set_enable, lambda m, a: str(m.oper_enable)),
    ("SYSTem:ERRor[:NEXT]", None, lambda m, a: m.next_error()),
]


def _pattern(spec: str) -> str:
    """``"[:SENSe]:FUNCtion"`` (the guide's notation) -> ``"[SENSe] FUNCtion"`` (``drivers.kit.scpi``)."""
    return spec if spec.startswith("*") else " ".join(spec.replace("[:", " [").replace(":", " ").split())


def command_tree(model: E4980AModel) -> CommandTree:
    """The meter's commands on the kit's SCPI parser (headers, compound messages, errors)."""
    tree = CommandTree(model.status, details=False)  # the meter reports the standard texts only

    def bind(handler: Handler | None) -> Callable[[list[str]], Any] | None:
        if handler is None:
            return None
        return lambda params: handler(model, ",".join(params))

    for spec, setter, query in COMMANDS:
        tree.add(_pattern(spec), set=bind(setter), query=bind(query))
    return tree


def execute(model: E4980AModel, message: str) -> str | None:
    """Run one message (one line, ``;``-separated units); the reply line or None.
    Errors go to the model's error queue."""
    if model.commands is None:
        model.commands = command_tree(model)
    return model.commands.execute(message)


class E4980AHandler(LineHandler):
    """One connection: each line may hold several ``;``-separated commands."""

    def __init__(self, session: Session, model: E4980AModel) -> None:
        self.session = session
        self.model = model

    def on_line(self, line: bytes) -> None:
        text = line.decode("ascii", errors="replace")
        self.model.log.append(text)
        reply = execute(self.model, text)
        if reply is not None:
            self.session.send((reply + "\n").encode("ascii"))


# --- serving ------------------------------------------------------------------------------------


def shared_cell(params: SimParams, cell_type: str = "auto", speed: float = 1.0) -> SimChannel:
    """One simulated cell for several emulators (LCR meter + chamber): pass it as
    ``cell=`` to each ``serve``. Its clock (``speed`` × real time) is theirs."""
    kind = params.cell if cell_type == "auto" else cell_type
    return SimChannel(params, "ss" if kind == "auto" else kind, ScaledClock(speed))


class E4980AServer(EmulatorServer):
    """A running E4980A emulator: ``resource`` is the VISA address to open."""

    def __init__(self, model: E4980AModel, server: TcpServer, companion: Any = None) -> None:
        self.model = model
        self.server = server
        self.faults = server.faults
        self.faults.cell_time = model.sim.clock.now
        self.resource = f"TCPIP::127.0.0.1::{server.port}::SOCKET"
        self.port = server.port
        #: A chamber emulator started on the same cell (``chamber=`` option), or None.
        self.chamber = companion

    @property
    def sim(self) -> SimChannel:
        return self.model.sim

    def inject_error(self, code: int = -310, message: str = "System error") -> None:
        """Put an instrument error in the queue (the driver sees it at its next check)."""
        self.model.push_error(code, message)

    def inject_overload(self, points: int = 1) -> None:
        """The next ``points`` measured points read status +1 (overload), data 9.9E37."""
        self.model.overloads += points

    def instrument_faults(self) -> dict[str, Callable[[], bool]]:
        """``--fault`` kinds of the meter: an error queue entry (-310), and an
        overloaded measured point (``compliance``: status +1, data 9.9E37)."""

        def error() -> bool:
            self.inject_error()
            return True

        def overload() -> bool:
            self.inject_overload(1)
            return True

        return {"instrument-error": error, "compliance": overload}

    def drop(self) -> None:
        """Pull the cable: close every open connection now."""
        self.server.drop_all()

    def stop(self) -> None:
        self.model.abort()
        self.server.stop()
        if self.chamber is not None:
            self.chamber.stop()


def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    cell: SimChannel | None = None,
    chamber: str | None = None,
    chamber_port: int = 0,
    **options: Any,
) -> E4980AServer:
    """Start an E4980A emulator on 127.0.0.1:``port`` (0 = a free port).

    ``cell``: a SimChannel shared with other emulators (see ``shared_cell``);
    otherwise the emulator gets its own cell running at ``speed`` × real time.
    ``chamber="espec"`` or ``"eurotherm"`` also starts that chamber emulator
    on the same cell (at ``chamber_port``), reachable as ``server.chamber``.
    """
    if options:
        raise TypeError(f"unknown E4980A emulator option(s): {', '.join(sorted(options))}")
    sim = cell if cell is not None else shared_cell(params, cell_type, speed)
    model = E4980AModel(sim)
    tcp = TcpServer(lambda session: E4980AHandler(session, model), port=int(port), terminators=(b"\n",)).start()
    companion = None
    if chamber:
        companion = _chamber_emulator(str(chamber))(params, port=int(chamber_port), speed=speed, cell=sim)
    return E4980AServer(model, tcp, companion)


def _chamber_emulator(name: str) -> Any:
    """The chamber emulators that can share an LCR emulator's cell."""
    if name == "espec":
        from drivers.sim.wire.espec import serve as serve_espec

        return serve_espec
    if name == "eurotherm":
        from drivers.sim.wire.eurotherm import serve as serve_eurotherm

        return serve_eurotherm
    raise ValueError(f"unknown chamber emulator {name!r} (allowed: espec, eurotherm)")
