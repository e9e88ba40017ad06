"""The Keithley 2400 emulator: its SCPI command set (2400 User's Manual 2400S-900-01 §18).

See ``drivers.sim.wire.keithley`` for what is emulated and how; the shared
base is ``drivers.sim.wire.keithley_smu``. What this dialect adds, from the manual:

* compliance ``:SENS:VOLT:PROT`` takes −210…210 V (the magnitude is the limit;
  pymeasure's ``apply_current()`` sets 0.1 V, which the instrument accepts);
* ``MINimum``/``MAXimum``/``DEFault`` as query arguments of the numeric settings
  (``:SOUR:VOLT? MAX`` → ``+2.100000E+02``);
* the trigger model's counts: ``:TRIG:COUN`` 1…2500 (``:ARM:COUN`` × ``:TRIG:COUN``
  ≤ 2500), ``:READ?`` returning every reading of the sweep, and the reading buffer
  (``:TRAC:POIN``, ``:TRAC:FEED SENS``, ``:TRAC:FEED:CONT NEXT|NEV``,
  ``:TRAC:DATA?``, ``:TRAC:POIN:ACT?``, ``:TRAC:CLE``) with its statistics
  (``:CALC3:FORM MEAN|SDEV|MAX|MIN|PKPK``, ``:CALC3:DATA?``, over the buffer's
  voltage and current readings);
* the time a reading takes: source delay (``:SOUR:DEL``; the auto delay is taken as
  1 ms), trigger delay, and NPLC / line frequency per function measured, × the
  repeat filter's count (``:SENS:AVER:TCON REP``). Auto-zero's extra conversions are
  not modelled.
"""

from __future__ import annotations

import math

from drivers.kit import scpi
from drivers.kit.scpi import ScpiError, boolean, choice, number, one
from drivers.sim.wire.keithley_smu import FUNCTIONS, NO_VALUE, OFF_MODES, SmuEmulator
from drivers.sim.wire.live_cell import Reading


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
        self.buffer: list[tuple[float, float, str]] = []  # (E, I, formatted reading)
        self.buffer_points = 100
        self.buffer_feeding = False

    def _build(self) -> None:
        """The command tree, by subsystem (2400S-900-01 §18)."""
        self._source_tree()
        self._sense_tree()
        self._measure_tree()
        self._buffer_tree()
        self._system_tree()

    def _source_tree(self) -> None:
        """SOURce: function, levels, ranges, delays, clear; the compliance limits (SENSe PROTection)."""
        t = self.tree
        self.source_function_commands()
        for fn, low, high in (("CURR", -1.05, 1.05), ("VOLT", -210.0, 210.0)):
            self.level_commands("[SOURce[1]]", fn, low, high, bounds_query=True)
        for fn in ("CURRent", "VOLTage"):
            key = FUNCTIONS[fn]
            self.setting(
                f"[SOURce[1]] {fn} RANGe", f"SOUR:{key}:RANG", "+1.050000E-04" if key == "CURR" else "+2.100000E+01"
            )
            self.setting(f"[SOURce[1]] {fn} RANGe AUTO", f"SOUR:{key}:RANG:AUTO", "1", self._bool_text)
            self.setting(f"[SOURce[1]] {fn} MODE", f"SOUR:{key}:MODE", "FIX", lambda s: choice(s, {"FIXed": "FIX"}))
        self.numeric_setting("[SOURce[1]] DELay", "SOUR:DEL", 0.0, 0.0, 9999.999, on_set="SOUR:DEL:AUTO")
        self.setting("[SOURce[1]] DELay AUTO", "SOUR:DEL:AUTO", "1", self._bool_text)
        t.add("[SOURce[1]] CLEar [IMMediate]", set=self._source_clear)
        t.add("[SOURce[1]] CLEar AUTO", set=self._set_auto_off, query=lambda _: str(int(self.auto_off)))
        t.add(
            "[SENSe[1]] VOLTage [DC] PROTection [LEVel]",
            set=self._set_vprot,
            query=lambda p: self.fmt(self.bounded(p, self.state.voltage_limit, -210.0, 210.0, 21.0)),
        )
        t.add(
            "[SENSe[1]] CURRent [DC] PROTection [LEVel]",
            set=self._set_iprot,
            query=lambda p: self.fmt(self.bounded(p, self.state.current_limit, -1.05, 1.05, 105e-6)),
        )
        t.add("[SENSe[1]] VOLTage [DC] PROTection TRIPped", query=lambda _: self._trip("CURR"))
        t.add("[SENSe[1]] CURRent [DC] PROTection TRIPped", query=lambda _: self._trip("VOLT"))

    def _sense_tree(self) -> None:
        """SENSe: NPLC, ranges, the functions measured, averaging."""
        t = self.tree
        for fn in ("CURRent", "VOLTage", "RESistance"):
            key = fn[:4].upper()
            dc = " [DC]" if fn != "RESistance" else ""
            self.numeric_setting(f"[SENSe[1]] {fn}{dc} NPLCycles", f"SENS:{key}:NPLC", 1.0, 0.01, 10.0)
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
        self.numeric_setting("[SENSe[1]] AVERage COUNt", "SENS:AVER:COUN", 10.0, 1.0, 100.0)

    def _measure_tree(self) -> None:
        """OUTPut, FORMat, READ/FETCh/MEASure, the trigger and arm layers."""
        t = self.tree
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
            t.add(
                f"{node} [SEQuence[1]] COUNt",
                set=lambda p, node=node: self._set_count(node, p),
                query=lambda p, node=node: str(int(self.bounded(p, self._count(node), 1, 2500, 1))),
            )
            self.setting(f"{node} [SEQuence[1]] SOURce", f"{node}:SOUR", "IMM")
            self.setting(f"{node} [SEQuence[1]] [TCONfigure] DIRection", f"{node}:DIR", "ACC")
        self.numeric_setting("TRIGger [SEQuence[1]] DELay", "TRIG:DEL", 0.0, 0.0, 999.9999)
        self.setting("ARM [SEQuence[1]] TIMer", "ARM:TIM", "+1.000000E-01")
        t.add("TRIGger CLEar", set=lambda _: None)

    def _buffer_tree(self) -> None:
        """TRACe (the reading buffer, 1…2500 points) and CALC3 (statistics over it)."""
        t = self.tree
        t.add(
            "TRACe POINts",
            set=self._set_buffer_points,
            query=lambda p: str(int(self.bounded(p, self.buffer_points, 1, 2500, 100))),
        )
        t.add("TRACe POINts ACTual", query=lambda _: str(len(self.buffer)))
        t.add("TRACe CLEar", set=lambda _: self.buffer.clear())
        feeds = {"SENSe": "SENS", "SENSe1": "SENS", "CALCulate": "CALC1", "CALCulate1": "CALC1", "CALCulate2": "CALC2"}
        self.setting("TRACe FEED", "TRAC:FEED", "SENS", lambda s: choice(s, feeds))
        t.add("TRACe FEED CONTrol", set=self._set_feed, query=lambda _: "NEXT" if self.buffer_feeding else "NEV")
        t.add("TRACe DATA", query=lambda _: ",".join(text for _, _, text in self.buffer))
        forms = {"MEAN": "MEAN", "SDEViation": "SDEV", "MAXimum": "MAX", "MINimum": "MIN", "PKPK": "PKPK"}
        self.setting("CALCulate3 FORMat", "CALC3:FORM", "MEAN", lambda s: choice(s, forms))
        t.add("CALCulate3 DATA", query=lambda _: self._statistic())

    def _system_tree(self) -> None:
        """SYSTem and STATus: the error queue, presets, beeper, line frequency, terminals."""
        t = self.tree
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

    def _count(self, node: str) -> int:
        return int(self.state.settings.get(f"{node}:COUN", "1"))

    def _set_count(self, node: str, params: list[str]) -> None:
        value = int(number(one(params), default=1, low=1, high=2500))
        other = self._count("ARM" if node == "TRIGger" else "TRIGger")
        if value * other > 2500:
            raise ScpiError(-221, "Settings conflict; arm count x trigger count > 2500")
        self.state.settings[f"{node}:COUN"] = str(value)

    def _set_buffer_points(self, params: list[str]) -> None:
        self.buffer_points = int(number(one(params), default=100, low=1, high=2500))
        self.buffer.clear()

    def _set_feed(self, params: list[str]) -> None:
        mode = choice(one(params), {"NEXT": "NEXT", "NEVer": "NEV"})
        self.buffer_feeding = mode == "NEXT"
        if self.buffer_feeding:
            self.buffer.clear()

    def _statistic(self) -> str:
        if not self.buffer:
            raise ScpiError(-230, "Data corrupt or stale; the buffer is empty")
        form = self.state.settings.get("CALC3:FORM", "MEAN")
        out = []
        for column in (0, 1):
            values = [row[column] for row in self.buffer]
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1))
            stats = {"MEAN": mean, "SDEV": spread, "MAX": max(values), "MIN": min(values)}
            stats["PKPK"] = stats["MAX"] - stats["MIN"]
            out.append(stats[form])
        return ",".join(self.fmt(v) for v in out)

    def reading_cost(self) -> float:
        """Source delay + trigger delay + NPLC/line frequency per function measured, × the
        repeat filter's count (2400S-900-01 §3 "Measurement speed", §6 filters)."""
        line = self.setting_value("SYST:LFR", 60.0)
        functions = self.sense_on or ["CURR"]
        integration = sum(self.setting_value(f"SENS:{fn}:NPLC", 1.0) for fn in functions) / line
        if self.state.settings.get("SENS:AVER", "0") == "1" and self.state.settings.get(
            "SENS:AVER:TCON", "REP"
        ).upper().startswith("REP"):
            integration *= self.setting_value("SENS:AVER:COUN", 10.0)
        auto_delay = self.state.settings.get("SOUR:DEL:AUTO", "1") == "1"
        source_delay = 0.001 if auto_delay else self.setting_value("SOUR:DEL", 0.0)
        return source_delay + self.setting_value("TRIG:DEL", 0.0) + integration

    def _source_clear(self, _: list[str]) -> None:
        self.state.output = False
        self.apply()

    def _set_auto_off(self, params: list[str]) -> None:
        self.auto_off = boolean(one(params))

    def _set_vprot(self, params: list[str]) -> None:
        """−210…210 V; the compliance is symmetric, so its magnitude is the limit."""
        self.state.voltage_limit = abs(number(one(params), default=21.0, low=-210.0, high=210.0))
        self.apply()

    def _set_iprot(self, params: list[str]) -> None:
        self.state.current_limit = abs(number(one(params), default=105e-6, low=-1.05, high=1.05))
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
        texts = []
        try:
            for _ in range(self._count("ARM") * self._count("TRIGger")):
                reading = self.reading()
                text = self._format_reading(reading)
                texts.append(text)
                if self.buffer_feeding and len(self.buffer) < self.buffer_points:
                    self.buffer.append((reading.E, reading.I, text))
                    self.buffer_feeding = len(self.buffer) < self.buffer_points
        finally:
            if switched:
                st.output = False
                self.apply()
        self.last = ",".join(texts)
        return self.last

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
