"""Keysight E4980A precision LCR meter: impedance spectra from 20 Hz to 2 MHz.

Built for conductivity measurements on blocking cells (SS|SE|SS): the bulk
arc and the start of the electrode spike of most solid electrolytes lie
above 20 Hz. SCPI over VISA (``TCPIP::host::5025::SOCKET`` with pyvisa-py
``@py``, or GPIB/USB resources), on pymeasure's ``Instrument``.

Impedance steps run as list sweeps (E4980A/AL User's Guide, "List Sweep"
and the SCPI reference): the step's frequencies go out in chunks of up to
201 points with ``:LIST:FREQ``, each chunk is triggered on the bus
(``:TRIG:SOUR BUS``, ``:TRIG:IMM``), its end is seen in the operation status
event register (bit 3 "list sweep measurement complete", ``:STAT:OPER:EVEN?``,
guide Table 8-3) and its data read with ``:FETC?`` as
``<R>,<X>,<status>,<IN/OUT>`` per point (``:FUNC:IMP:TYPE RX``, ``:FORM:ASC:LONG
ON``). Chunks are sized to about ``chunk_seconds`` of measuring, so points
stream to the run file as they are measured and an abort waits at most one
poll. A point with status +1 (overload, data 9.9E37) or −1 (no data) is an
instrument fault; +3/+4 (source overload, ALC unable to regulate) keep the
data, as the guide says it is real data.

DC bias: a step with ``bias`` ≠ 0 (absolute, ``bias_vs_ocv=False``) switches
``:BIAS:VOLT``/``:BIAS:STAT ON`` for its sweep and off after it. The meter
cannot measure an open-circuit voltage, so a bias relative to OCV is refused.

Rest steps are "output off, measure nothing": bias off, no measurement
running, the time passes and rows with ``I = 0`` and ``E`` unknown (NaN) are
recorded at the step's sample period, so an ``eis`` protocol (Rest, then
Impedance) runs unchanged.

Safe state (every exit path: abort, error, program exit): ``:BIAS:STAT
OFF``, ``:ABOR`` (no measurement running), ``:TRIG:SOUR HOLD`` (nothing
re-triggers it), ``:VOLT:LEV 0`` (oscillator at its minimum: the E4980A has
no output relay, so a 0 V test signal and no bias is the nearest to "output
off" it offers), then ``:BIAS:STAT?`` must read 0. If the connection is gone
the driver reconnects once to get there. Pause (``hold``) only stops the
measurement (``:ABOR``); a DC bias stays, as the present potential.

Errors: no reply within ``timeout`` → InstrumentTimeout; a reply that does not
parse → GarbledReply; the connection closed → ConnectionLost; an entry in
the error queue (``:SYST:ERR?``, checked after setting up and after every
chunk) → InstrumentErrorCode with the instrument's own code and message.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from drivers.keysight.options import E4980AOptions
from drivers.kit.pacing import empty_block, wait_until
from drivers.kit.visa import typed_errors
from labctl.channel import (
    Capabilities,
    Channel,
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentErrorCode,
    InstrumentInfo,
    InstrumentTimeout,
    StepContext,
    StepOutcome,
    StepRun,
    UnsupportedStep,
    with_one_reconnect,
)
from labctl.clock import Clock, ScaledClock
from labctl.steps import SPECTRUM_DTYPE, EndReason, Impedance, Rest, Step, empty_samples

log = logging.getLogger(__name__)

FREQUENCY_RANGE = (20.0, 2e6)
MAX_LIST_POINTS = 201
#: Operation status event register, bit 3: "list sweep measurement complete" (guide Table 8-3).
LIST_SWEEP_COMPLETE = 0x08
#: Typical measurement time per point (s) and test-signal periods at low f, per aperture.
APERTURE_TIME = {"SHOR": 0.0056, "MED": 0.088, "LONG": 0.22}
APERTURE_PERIODS = {"SHOR": 1.0, "MED": 3.0, "LONG": 6.0}
IMPEDANCE_TYPES = (
    "CPD", "CPQ", "CPG", "CPRP", "CSD", "CSQ", "CSRS", "LPD", "LPQ", "LPG",
    "LPRP", "LPRD", "LSD", "LSQ", "LSRS", "LSRD", "RX", "ZTD", "ZTR", "GB", "YTD", "YTR",
)  # fmt: skip
STATUS_TEXT = {
    -1: "no data",
    1: "overload",
    3: "signal source overloaded",
    4: "ALC unable to regulate",
}


# --- the instrument (pymeasure) ---------------------------------------------------------


class E4980AInstrument(SCPIMixin, Instrument):
    """The E4980A's SCPI commands used here, as pymeasure properties.

    Only setters are used on the measuring path (their bytes are pinned by
    ``expected_protocol`` tests); replies are read with ``ask`` and parsed by
    the channel, which turns malformed replies into ``GarbledReply``.
    """

    impedance_type = Instrument.control(
        ":FUNC:IMP:TYPE?",
        ":FUNC:IMP:TYPE %s",
        "Measured parameter pair, e.g. RX (R and X in ohm) or ZTR (|Z| and phase in rad).",
        validator=strict_discrete_set,
        values=IMPEDANCE_TYPES,
        cast=str,
    )
    auto_range = Instrument.control(
        ":FUNC:IMP:RANG:AUTO?",
        ":FUNC:IMP:RANG:AUTO %d",
        "Automatic impedance range selection.",
        map_values=True,
        values={True: 1, False: 0},
    )
    ac_level = Instrument.control(
        ":VOLT:LEV?",
        ":VOLT:LEV %g",
        "Test signal level in V rms (0..2 V; 0..20 V with option 001).",
        validator=strict_range,
        values=(0.0, 20.0),
    )
    frequency = Instrument.control(
        ":FREQ:CW?",
        ":FREQ:CW %g",
        "Spot test frequency in Hz.",
        validator=strict_range,
        values=FREQUENCY_RANGE,
    )
    bias_voltage = Instrument.control(
        ":BIAS:VOLT:LEV?",
        ":BIAS:VOLT:LEV %g",
        "DC bias voltage in V (±2 V; ±40 V with option 001).",
        validator=strict_range,
        values=(-40.0, 40.0),
    )
    bias_enabled = Instrument.control(
        ":BIAS:STAT?",
        ":BIAS:STAT %d",
        "DC bias output on/off.",
        map_values=True,
        values={True: 1, False: 0},
    )
    trigger_source = Instrument.control(
        ":TRIG:SOUR?",
        ":TRIG:SOUR %s",
        "Trigger source: INT, EXT, BUS or HOLD.",
        validator=strict_discrete_set,
        values=("INT", "EXT", "BUS", "HOLD"),
        cast=str,
    )
    continuous = Instrument.control(
        ":INIT:CONT?",
        ":INIT:CONT %d",
        "Trigger system returns to wait-for-trigger after each measurement.",
        map_values=True,
        values={True: 1, False: 0},
    )
    list_mode = Instrument.control(
        ":LIST:MODE?",
        ":LIST:MODE %s",
        "List sweep mode: SEQ (one trigger sweeps every point) or STEP (one point per trigger).",
        validator=strict_discrete_set,
        values=("SEQ", "STEP"),
        cast=str,
    )
    display_page = Instrument.setting(
        ":DISP:PAGE %s",
        "Display page; LIST selects list-sweep measurements.",
        validator=strict_discrete_set,
        values=("MEAS", "BNUM", "BCO", "LIST", "MSET", "CSET", "LTAB", "LSET", "CAT", "SYST"),
    )
    data_format = Instrument.setting(
        ":FORM:DATA %s", "Data transfer format (ASC).", validator=strict_discrete_set, values=("ASC",)
    )
    ascii_long = Instrument.setting(
        ":FORM:ASC:LONG %d",
        "Ten significant digits in ASCII data (SN.NNNNNNNNNESNN).",
        map_values=True,
        values={True: 1, False: 0},
    )

    def __init__(self, adapter: Any, name: str = "Keysight E4980A", **kwargs: Any) -> None:
        super().__init__(adapter, name, **kwargs)

    def set_aperture(self, aperture: str, averages: int) -> None:
        """Integration time (SHOR, MED, LONG) and averaging count (1..256)."""
        strict_discrete_set(aperture, ("SHOR", "MED", "LONG"))
        strict_range(averages, (1, 256))
        self.write(f":APER {aperture},{int(averages)}")

    def set_list_frequencies(self, frequencies: list[float]) -> None:
        """The list-sweep frequencies (1..201 points, 20 Hz..2 MHz)."""
        if not 1 <= len(frequencies) <= MAX_LIST_POINTS:
            raise ValueError(f"a list sweep has 1..{MAX_LIST_POINTS} points, got {len(frequencies)}")
        for f in frequencies:
            strict_range(f, FREQUENCY_RANGE)
        self.write(":LIST:FREQ " + ",".join(format_frequency(f) for f in frequencies))

    def trigger_immediate(self) -> None:
        self.write(":TRIG:IMM")

    def abort(self) -> None:
        self.write(":ABOR")


def format_frequency(freq: float) -> str:
    """Frequencies as sent (and recorded): 9 significant digits."""
    return f"{freq:.9g}"


# --- replies ---------------------------------------------------------------------------------


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_numbers(text: str, count: int | None = None, what: str = "reply") -> list[float]:
    """Comma-separated ASCII numbers; GarbledReply if any field is not one."""
    fields_ = [f.strip() for f in text.strip().split(",")]
    if not all(_NUMBER.match(f) for f in fields_):
        raise GarbledReply(f"E4980A: {what} is not a list of numbers: {text[:80]!r}")
    values = [float(f) for f in fields_]
    if count is not None and len(values) != count:
        raise GarbledReply(f"E4980A: {what} has {len(values)} values, expected {count}: {text[:80]!r}")
    return values


@dataclass(frozen=True)
class ListPoint:
    """One list-sweep point as fetched: data A, data B, status, IN/OUT."""

    a: float
    b: float
    status: int
    in_out: int


def parse_list_data(text: str, points: int) -> list[ListPoint]:
    """``:FETC?`` after a list sweep: ``<A>,<B>,<status>,<IN/OUT>`` per point."""
    values = parse_numbers(text, 4 * points, "list sweep data")
    return [
        ListPoint(values[k], values[k + 1], int(values[k + 2]), int(values[k + 3])) for k in range(0, len(values), 4)
    ]


def parse_error(text: str) -> tuple[int, str]:
    """``:SYST:ERR?`` -> (code, message); ``+0,"No error"`` -> (0, "No error")."""
    match = re.fullmatch(r'\s*([-+]?\d+)\s*,\s*"?([^"]*)"?\s*', text)
    if match is None:
        raise GarbledReply(f"E4980A: error query reply does not parse: {text[:80]!r}")
    return int(match.group(1)), match.group(2)


def parse_idn(text: str) -> tuple[str, str, str, str]:
    """``*IDN?`` -> (manufacturer, model, serial, firmware)."""
    parts = [p.strip() for p in text.strip().split(",")]
    if len(parts) != 4 or not parts[1]:
        raise GarbledReply(f"E4980A: identification does not parse: {text[:80]!r}")
    return parts[0], parts[1], parts[2], parts[3]


def point_time(freq: float, aperture: str, averages: int) -> float:
    """Expected measuring time of one point (s): for chunking and the sweep deadline."""
    return (APERTURE_TIME[aperture] + APERTURE_PERIODS[aperture] / freq) * max(averages, 1)


# --- the channel -----------------------------------------------------------------------------


class E4980AChannel(Channel):
    """An E4980A as a Channel: Impedance (list sweep) and Rest steps."""

    name = "e4980a"

    def __init__(
        self,
        instrument: E4980AInstrument | Callable[[], E4980AInstrument],
        clock: Clock,
        options: E4980AOptions | None = None,
        resource: str = "",
    ) -> None:
        """``instrument``: a connected instrument, or a factory that connects one
        (used by ``open`` and to reconnect for the safe state)."""
        self.options = options or E4980AOptions()
        self.resource = resource
        self._clock = clock
        self._connect = None if isinstance(instrument, E4980AInstrument) else instrument
        self._inst: E4980AInstrument | None = instrument if isinstance(instrument, E4980AInstrument) else None
        self._lock = threading.RLock()
        self._info: InstrumentInfo | None = None
        self._bias_on = False
        self._max_level = self.options.max_level or 2.0
        self._max_bias = self.options.max_bias or 2.0
        self.capabilities = self._capabilities()

    def _capabilities(self) -> Capabilities:
        return Capabilities(
            step_kinds=frozenset({"Rest", "Impedance"}),
            max_current=0.0,  # no DC current steps
            voltage_range=(-self._max_bias, self._max_bias),
            frequency_range=FREQUENCY_RANGE,
            impedance_modes=frozenset({"potentiostatic"}),
        )

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- transport ------------------------------------------------------------------
    @property
    def instrument(self) -> E4980AInstrument:
        if self._inst is None:
            self.open()
        assert self._inst is not None
        return self._inst

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Map transport exceptions to the typed instrument errors (``drivers.kit.visa``)."""
        resource = None if self._inst is None else getattr(self._inst.adapter, "connection", None)
        with typed_errors(f"E4980A: {what}", resource, self.options.timeout * 1000.0, garbled=(UnicodeDecodeError,)):
            yield

    def _write(self, command: str) -> None:
        with self._lock, self._io(command):
            self.instrument.write(command)

    def _ask(self, query: str) -> str:
        with self._lock, self._io(query):
            return str(self.instrument.ask(query)).strip()

    def _set(self, name: str, value: Any) -> None:
        """Set a pymeasure property (its bytes are the ones the unit tests pin)."""
        with self._lock, self._io(name):
            setattr(self.instrument, name, value)

    def check_errors(self) -> None:
        """Raise InstrumentErrorCode for the oldest error in the queue (draining it)."""
        with self._lock:
            code, message = parse_error(self._ask(":SYST:ERR?"))
            if code == 0:
                return
            more = []
            for _ in range(10):  # drain, so the next check starts clean
                next_code, next_message = parse_error(self._ask(":SYST:ERR?"))
                if next_code == 0:
                    break
                more.append(f"{next_code} {next_message}")
        extra = f" (then: {'; '.join(more)})" if more else ""
        raise InstrumentErrorCode(code, f"E4980A: {message}{extra}")

    # -- life cycle -----------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if self._inst is None:
                if self._connect is None:
                    raise ConnectionLost("E4980A: no connection and no way to make one")
                with self._io("connect"):
                    self._inst = self._connect()
            self._info = None
            self.identify()

    def close(self) -> None:
        with self._lock:
            inst, self._inst = self._inst, None
            if inst is not None and self._connect is not None:
                with contextlib.suppress(Exception):
                    inst.adapter.close()

    def identify(self) -> InstrumentInfo:
        with self._lock:
            if self._info is None:
                maker, model, serial, firmware = parse_idn(self._ask("*IDN?"))
                options = self._ask("*OPT?")
                option_001 = "001" in [o.strip() for o in options.split(",")]
                self._max_level = self.options.max_level or (20.0 if option_001 else 2.0)
                self._max_bias = self.options.max_bias or (40.0 if option_001 else 2.0)
                self.capabilities = self._capabilities()
                self._info = InstrumentInfo(
                    driver="e4980a",
                    model=f"{maker} {model}".strip(),
                    serial=serial,
                    firmware=firmware,
                    resource=self.resource,
                    extra={"options": options},
                )
            return self._info

    # -- safety -----------------------------------------------------------------------------
    def _safe_commands(self) -> None:
        with self._lock:
            self._set("bias_enabled", False)
            self._write(":ABOR")
            self._set("trigger_source", "HOLD")
            self._set("ac_level", 0.0)
            state = self._ask(":BIAS:STAT?")
            if state not in ("0", "OFF", "+0"):
                raise InstrumentError(f"E4980A: DC bias still reads {state!r} after switching it off")
            self._bias_on = False

    def safe_state(self) -> None:
        """Bias off, no measurement, no trigger, 0 V test signal (reconnecting once if needed)."""
        with self._lock:
            if self._connect is None:  # an adapter given from outside: nothing to reconnect
                self._safe_commands()
                return
            with_one_reconnect(self._safe_commands, self._reopen, instrument="E4980A", goal="reach the safe state")

    def _reopen(self) -> None:
        self.close()
        self.open()

    def hold(self) -> None:
        """Pause: stop measuring; a DC bias (the present potential) stays as it is."""
        with self._lock:
            self._write(":ABOR")

    # -- steps ---------------------------------------------------------------------------------
    def run_step(self, step: Step, ctx: StepContext) -> StepRun:
        refusal = self.capabilities.refusal(step)
        if refusal is not None:
            raise UnsupportedStep(refusal)
        if isinstance(step, Impedance):
            return (yield from self._impedance(step, ctx))
        if isinstance(step, Rest):
            return (yield from self._rest(step, ctx))
        raise UnsupportedStep(f"{step.kind} steps are not supported by the E4980A")

    def _rest(self, step: Rest, ctx: StepContext) -> StepRun:
        """Output off (bias off, nothing measuring), time passes; rows record it."""
        with self._lock:
            self._set("bias_enabled", False)
            self._write(":ABOR")
            self._bias_on = False
        t0 = ctx.run_time()
        end = step.effective_limits().max_time or step.duration
        k = 1
        while True:
            due = min(t0 + k * step.sample_period, t0 + end)
            if not (yield from wait_until(ctx, due, empty_block())):
                return StepOutcome(EndReason.ABORTED, "interrupted")
            row = empty_samples(1)
            row["t"], row["I"], row["Q"] = ctx.run_time(), 0.0, 0.0
            yield row
            if due >= t0 + end - 1e-9:
                reason = EndReason.COMPLETED if end >= step.duration else EndReason.TIME
                return StepOutcome(reason, f"{reason.value} after {ctx.run_time() - t0:.6g} s (output off)")
            k += 1

    def _check_impedance(self, step: Impedance) -> float:
        """The DC bias the step needs (0 = off); refuse what the meter cannot do."""
        if step.amplitude > self._max_level:
            raise UnsupportedStep(f"amplitude {step.amplitude:g} V rms exceeds the E4980A's {self._max_level:g} V")
        if step.bias != 0.0 and step.bias_vs_ocv:
            raise UnsupportedStep("the E4980A cannot measure OCV, so it cannot apply a bias relative to it")
        if abs(step.bias) > self._max_bias:
            raise UnsupportedStep(f"bias {step.bias:g} V exceeds the E4980A's ±{self._max_bias:g} V")
        return 0.0 if step.bias_vs_ocv else step.bias

    def _configure(self, amplitude: float, bias: float) -> None:
        """Everything a list sweep of RX data needs, then check the error queue."""
        o = self.options
        with self._lock:
            self._write(":ABOR")
            self._set("data_format", "ASC")
            self._set("ascii_long", True)
            self._set("impedance_type", "RX")
            self._set("auto_range", True)
            with self._io(":APER"):
                self.instrument.set_aperture(o.aperture, o.averages)
            self._set("ac_level", amplitude)
            if bias != 0.0:
                self._set("bias_voltage", bias)
                self._set("bias_enabled", True)
                self._bias_on = True
            else:
                self._set("bias_enabled", False)
                self._bias_on = False
            self._set("trigger_source", "BUS")
            self._set("list_mode", "SEQ")
            self._set("display_page", "LIST")
            self._set("continuous", True)
            self.check_errors()

    def _chunks(self, freqs: np.ndarray) -> list[np.ndarray]:
        o = self.options
        chunks, current, spent = [], [], 0.0
        for f in freqs:
            dt = point_time(float(f), o.aperture, o.averages)
            if current and (spent + dt > o.chunk_seconds or len(current) >= MAX_LIST_POINTS):
                chunks.append(np.array(current))
                current, spent = [], 0.0
            current.append(float(f))
            spent += dt
        if current:
            chunks.append(np.array(current))
        return chunks

    def _impedance(self, step: Impedance, ctx: StepContext) -> StepRun:
        bias = self._check_impedance(step)
        freqs = step.frequencies()
        rows: list[np.ndarray] = []

        def spectrum() -> np.ndarray:
            return np.concatenate(rows) if rows else np.empty(0, dtype=SPECTRUM_DTYPE)

        if len(freqs) == 0:
            return StepOutcome(EndReason.COMPLETED, "no frequencies left", spectrum())
        self._configure(step.amplitude, bias)
        t0 = ctx.run_time()
        max_time = step.limits.max_time
        try:
            for chunk in self._chunks(freqs):
                block = yield from self._sweep(chunk, bias, ctx)
                if block is None:
                    return StepOutcome(EndReason.ABORTED, "interrupted", spectrum())
                rows.append(block)
                yield block
                if max_time is not None and ctx.run_time() - t0 >= max_time:
                    return StepOutcome(EndReason.TIME, "time", spectrum())
        finally:
            if self._bias_on and not ctx.interrupt.is_set():
                with contextlib.suppress(InstrumentError):
                    self._set("bias_enabled", False)
                    self._bias_on = False
        n = sum(len(r) for r in rows)
        return StepOutcome(EndReason.COMPLETED, f"{n} frequencies", spectrum())

    def _sweep(
        self, chunk: np.ndarray, bias: float, ctx: StepContext
    ) -> Generator[np.ndarray, None, np.ndarray | None]:
        """Measure one list; the rows, or None when interrupted."""
        o = self.options
        durations = np.array([point_time(float(f), o.aperture, o.averages) for f in chunk])
        sent = [float(format_frequency(float(f))) for f in chunk]
        with self._lock:
            with self._io(":LIST:FREQ"):
                self.instrument.set_list_frequencies(sent)
            parse_numbers(self._ask(":STAT:OPER:EVEN?"), 1, "status event register")  # read clears it
            with self._io(":TRIG:IMM"):
                self.instrument.trigger_immediate()
        t_start = ctx.run_time()
        speed = ctx.clock.speed
        expected = float(durations.sum())
        deadline = time.monotonic() + 3.0 * expected / speed + self.options.timeout
        # Most of the wait is known: sleep through it, then poll the event register.
        first = t_start + expected
        poll = max(self.options.poll_interval, 0.001) * ctx.clock.speed
        if not (yield from wait_until(ctx, first, empty_block(SPECTRUM_DTYPE))):
            self._abort_quietly()
            return None
        while True:
            event = int(parse_numbers(self._ask(":STAT:OPER:EVEN?"), 1, "status event register")[0])
            if event & LIST_SWEEP_COMPLETE:
                break
            if time.monotonic() > deadline:
                self._abort_quietly()
                raise InstrumentTimeout(
                    f"E4980A: list sweep of {len(chunk)} points not complete after "
                    f"{3.0 * expected / speed + self.options.timeout:.3g} s"
                )
            if not (yield from wait_until(ctx, ctx.run_time() + poll, empty_block(SPECTRUM_DTYPE))):
                self._abort_quietly()
                return None
        points = parse_list_data(self._ask(":FETC?"), len(chunk))
        t_end = ctx.run_time()
        # Spread the chunk's time over its points as the meter spent it.
        ends = t_start + (t_end - t_start) * np.cumsum(durations) / expected
        good: list[np.ndarray] = []
        for f, pt, t in zip(sent, points, ends, strict=True):
            if pt.status in (-1, 1) or not (math.isfinite(pt.a) and math.isfinite(pt.b)):
                if good:
                    yield np.concatenate(good)
                raise InstrumentErrorCode(
                    pt.status, f"E4980A: {STATUS_TEXT.get(pt.status, 'bad status')} at {f:g} Hz (data {pt.a:g})"
                )
            if pt.status != 0:
                log.warning("E4980A: %s at %g Hz (data kept)", STATUS_TEXT.get(pt.status, pt.status), f)
            row = np.empty(1, dtype=SPECTRUM_DTYPE)
            row["freq"], row["z_re"], row["z_im"] = f, pt.a, pt.b
            row["E_dc"], row["I_dc"], row["t"], row["T"] = bias, np.nan, t, np.nan
            good.append(row)
        self.check_errors()
        return np.concatenate(good)

    def _abort_quietly(self) -> None:
        with contextlib.suppress(InstrumentError):
            self._write(":ABOR")


# --- factory -----------------------------------------------------------------------------


def create(resource: str, options: Mapping[str, Any] | None = None, clock: Clock | None = None) -> E4980AChannel:
    """The driver factory named in ``drivers.registry`` (not connected until ``open``).

    ``resource``: a VISA address, e.g. ``TCPIP::192.168.1.20::5025::SOCKET``
    (LAN socket) or ``GPIB0::17::INSTR``. ``options``: see ``E4980AOptions``;
    ``clock_speed`` (wire emulators only) runs the driver's clock that many
    times faster than real time.
    """
    opts = E4980AOptions.parse(options)
    if clock is None or clock.speed != opts.clock_speed:
        clock = ScaledClock(opts.clock_speed)

    def connect() -> E4980AInstrument:
        return E4980AInstrument(
            resource,
            visa_library=opts.visa_library,
            timeout=int(opts.timeout * 1000),
            read_termination="\n",
            write_termination="\n",
        )

    return E4980AChannel(connect, clock, opts, resource=resource)
