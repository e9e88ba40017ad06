"""The Keithley 2450 emulator: its SCPI command set (2450 Reference Manual 2450-901-01 §6).

See ``drivers.sim.wire.keithley`` for what is emulated and how (the shared base is
``drivers.sim.wire.keithley_smu``); this module holds
the 2450's command tree, its reading buffers and buffer elements.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.kit import scpi
from drivers.kit.scpi import ScpiError, boolean, choice, number, one
from drivers.sim.wire.keithley_smu import FUNCTIONS, NO_VALUE, OFF_MODES, SmuEmulator


class Keithley2450Emulator(SmuEmulator):
    """Model 2450 in its SCPI command set (not the SCPI 2400 emulation, not TSP)."""

    model = "2450"
    queue_capacity = 100

    def _reset_dialect(self) -> None:
        self.sense = "CURR"
        self.buffers: dict[str, _Buffer] = {"defbuffer1": _Buffer(100000), "defbuffer2": _Buffer(100000)}

    def _build(self) -> None:
        """The command tree, by subsystem (2450-901-01 §6)."""
        self.tree.add("*LANG", set=lambda p: self._language(one(p)), query=lambda _: "SCPI")
        self._source_tree()
        self._sense_tree()
        self._measure_tree()
        self._system_tree()

    def _source_tree(self) -> None:
        """SOURce: function, levels, limits and their trips, read-back, ranges, delays, off states."""
        t = self.tree
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
            # setting a delay turns the auto delay off (2450-901-01 ":SOURce[1]:<function>:DELay")
            self.numeric_setting(
                f"[SOURce[1]] {fn} DELay", f"SOUR:{key}:DEL", 0.0, 0.0, 10000.0, on_set=f"SOUR:{key}:DEL:AUTO"
            )
            self.setting(f"[SOURce[1]] {fn} DELay AUTO", f"SOUR:{key}:DEL:AUTO", "1", self._bool_text)
            t.add(f"OUTPut[1] {fn} SMODe", set=self._off_mode_setter(key), query=self._off_mode_getter(key))
        self.setting("[SOURce[1]] VOLTage PROTection [LEVel]", "SOUR:VOLT:PROT", "NONE")
        t.add("[SOURce[1]] VOLTage PROTection [LEVel] TRIPped", query=lambda _: "0")

    def _sense_tree(self) -> None:
        """SENSe: the function measured, NPLC, ranges, auto-zero, averaging."""
        t = self.tree
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

    def _measure_tree(self) -> None:
        """OUTPut, READ/FETCh/MEASure and the reading buffers (TRACe)."""
        t = self.tree
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

    def _system_tree(self) -> None:
        """SYSTem and STATus, the error queue, terminals, data format."""
        t = self.tree
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

    def reading_cost(self) -> float:
        """Source delay + NPLC / line frequency of the measure function, × the repeat filter's
        count (2450-901-01 "[:SENSe[1]]:<function>:NPLCycles", ":AVERage", ":SOURce:<f>:DELay");
        the auto source delay is taken as 1 ms."""
        sense, source = self.sense, self.state.source
        integration = self.setting_value(f"SENS:{sense}:NPLC", 1.0) / self.setting_value("SYST:LFR", 60.0)
        averaging = self.state.settings.get(f"SENS:{sense}:AVER", "0") == "1"
        if averaging and self.state.settings.get(f"SENS:{sense}:AVER:TCON", "REP").upper().startswith("REP"):
            integration *= self.setting_value(f"SENS:{sense}:AVER:COUN", 10.0)
        auto_delay = self.state.settings.get(f"SOUR:{source}:DEL:AUTO", "1") == "1"
        return (0.001 if auto_delay else self.setting_value(f"SOUR:{source}:DEL", 0.0)) + integration

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
