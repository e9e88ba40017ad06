"""What the Keithley 2450 and 2400 emulators share: settings, error queue, the cell on the terminals.

The command trees are in ``keithley_2450`` and ``keithley_2400`` (each a
subclass of ``SmuEmulator``); the server and the registry's ``serve_2450`` /
``serve_2400`` are in ``keithley``. This module imports neither, so the three
form no import cycle. What is emulated and from which manuals: see
``drivers.sim.wire.keithley``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.kit import scpi
from drivers.kit.scpi import CommandTree, StatusModel, boolean, choice, number, one
from drivers.sim.wire.live_cell import CurrentSource, LiveCell, OpenCircuit, Reading, Source, VoltageSource

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

    def reading_cost(self) -> float:
        """Cell seconds one reading takes: the dialect's source and trigger delays, and its
        integration time (NPLC / line frequency per function measured, × the repeat
        filter's count). The instrument answers only when the measurement is done."""
        return 0.0

    def setting_value(self, key: str, default: float) -> float:
        """A stored numeric setting (``state.settings`` keeps the text the client sent)."""
        text = self.state.settings.get(key)
        if text is None:
            return default
        try:
            return float(text)
        except ValueError:
            return default

    def reading(self) -> Reading:
        """One measurement, answered when it is done; with the output relay open the
        meter sees nothing."""
        r = self.cell.read(self.settle, integrate=self.reading_cost())
        self.cell.clock.sleep_until(r.t)
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

    def bounded(self, params: list[str], value: float, low: float, high: float, default: float) -> float:
        """A numeric query's answer: the value, or with a ``MINimum``/``MAXimum``/``DEFault``
        argument the setting's bound or default (SCPI 1999 vol. 1 §7.2.1.1)."""
        if not params or not params[0].strip():
            return value
        if one(params).strip().upper() not in ("MIN", "MINIMUM", "MAX", "MAXIMUM", "DEF", "DEFAULT"):
            raise scpi.ScpiError(-224, "Illegal parameter value; a query takes MIN, MAX or DEF")
        return number(one(params), default=default, low=low, high=high)

    def numeric_setting(
        self, pattern: str, key: str, default: float, low: float, high: float, on_set: str | None = None
    ) -> None:
        """A numeric setting with its range (MIN/MAX/DEF as values and query arguments);
        ``on_set``: a boolean setting that turns off when this is set (an explicit source
        delay ends the auto delay)."""

        def put(params: list[str]) -> None:
            self.state.settings[key] = repr(number(one(params), default=default, low=low, high=high))
            if on_set is not None:
                self.state.settings[on_set] = "0"

        self.tree.add(
            pattern,
            set=put,
            query=lambda p: self.fmt(self.bounded(p, self.setting_value(key, default), low, high, default)),
        )

    def level_commands(self, prefix: str, function: str, low: float, high: float, bounds_query: bool = False) -> None:
        def put(params: list[str]) -> None:
            self.state.level[function] = number(one(params), default=0.0, low=low, high=high)
            self.apply()

        def get(params: list[str]) -> str:
            value = self.state.level[function]
            return self.fmt(self.bounded(params, value, low, high, 0.0) if bounds_query else value)

        self.tree.add(
            f"{prefix} {function}ent [LEVel] [IMMediate] [AMPLitude]"
            if function == "CURR"
            else f"{prefix} {function}age [LEVel] [IMMediate] [AMPLitude]",
            set=put,
            query=get,
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
