"""Compiling a labctl Step into a MethodSCRIPT.

One script per step (MethodSCRIPT manual v1.8, §"Measurement loops" and
§"Flow control"):

* Rest             -> ``meas_loop_ocp``  (cell off)
* ConstantVoltage  -> ``meas_loop_ca``
* ConstantCurrent  -> ``meas_loop_cp``   (galvanostat mode; not on the Pico)
* VoltageSweep     -> ``meas_loop_lsv``
* Impedance        -> ``meas_loop_eis`` / ``meas_loop_geis``

The step's cutoffs run on the instrument wherever MethodSCRIPT can express
them, so a cell is protected even if the host stalls: time (and charge in a
galvanostatic step, as time = Q/|I|) is the loop's run time; voltage and
current limits are ``if <measured> <op> <limit>`` + ``breakloop`` inside the
loop, after the sample's packet is sent (so the sample that met the limit is
recorded, as ``labctl.limits.LimitWatcher`` does); the sweep and impedance
loops, which have no run time, compare ``timer_get`` against the time limit.
Each cutoff stores its code in ``code`` before breaking, and one packet after
``endloop`` reports it; a loop that ends by itself reports 0. What MethodSCRIPT
cannot express (steadiness of the current, charge of a potentiostatic step)
is left in ``ScriptPlan.host_limits`` for the host's LimitWatcher, which aborts
the script with ``Z``.

Potentials "vs OCV" use the OCV the driver last measured at rest; when there
is none (after a galvanostatic step or a sweep) the script measures it first
with a short ``meas_loop_ocp`` and builds the set point with
``copy_var``/``add_var`` on the instrument.

Potentiostatic holds (a CA step, an impedance sweep under a DC bias) leave the
cell on at the end of the script, so the potential is held between steps as a
potentiostat running a sequence does (an EIS "under ΔV" right after the ΔV
hold continues it); every other script switches the cell off in
``on_finished:``, which also runs after an abort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from drivers.palmsens.encoding import format_int, format_literal
from drivers.palmsens.models import ModelSpec
from labctl.steps import (
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Limits,
    Rest,
    Step,
    VoltageSweep,
)

#: Cutoff codes reported in the ``ja`` packet after the loop.
CODE_NONE = 0
CODE_REASONS: dict[int, EndReason] = {
    1: EndReason.VOLTAGE_ABOVE,
    2: EndReason.VOLTAGE_BELOW,
    3: EndReason.CURRENT_BELOW,
    4: EndReason.CURRENT_ABOVE,
    5: EndReason.TIME,
}
_CODES = {reason: code for code, reason in CODE_REASONS.items()}

#: A loop with no time limit of its own runs at most this long (a protocol bug, not a hang).
LONGEST_LOOP_S = 30 * 86400.0
#: Open-circuit measurement before a step that starts from the OCV.
OCP_INTERVAL_S = 0.1
OCP_DURATION_S = 0.5


class CompileError(ValueError):
    """The step cannot be written for this instrument (out of its ranges)."""


@dataclass(frozen=True)
class Settings:
    """Instrument settings the driver's options choose."""

    channel: int = 0
    #: Autoranging bounds of the current (A); None = the model's smallest/largest range.
    autorange_min: float | None = None
    autorange_max: float | None = None
    ocp_duration: float = OCP_DURATION_S
    ocp_interval: float = OCP_INTERVAL_S


@dataclass(frozen=True)
class ScriptPlan:
    """A compiled step: the script and how to read what it sends back."""

    step: Step
    technique: str  # ocp, ca, cp, lsv, eis, geis
    lines: tuple[str, ...]
    #: A meas_loop_ocp runs before the main loop; its packets carry the OCV.
    pre_ocp: bool
    #: Limits the host must check (None fields are enforced by the instrument).
    host_limits: Limits
    #: End reason when the main loop ends by itself (code 0).
    natural_reason: EndReason
    #: Absolute applied potential of a potentiostatic step when known before running.
    set_potential: float | None
    #: The script leaves the cell on (potentiostatic hold) instead of cell_off at its end.
    keeps_cell_on: bool
    #: Longest cell-time gap between two packets (s), for the host's watchdog.
    packet_gap: float
    #: Cell seconds the main loop runs at most (None: until a cutoff / the sweep end).
    run_time: float | None = None
    #: Added to the OCV measured in the script (vs-OCV set points built on the instrument).
    ocv_offset: float = 0.0
    #: The frequencies the sweep measures, in order, as the instrument spaces them
    #: (log-spaced between the first and the last): what ``StreamCheck`` expects.
    frequencies: tuple[float, ...] = ()
    notes: dict[str, float | str] = field(default_factory=dict)

    @property
    def impedance(self) -> bool:
        return self.technique in ("eis", "geis")

    def text(self) -> str:
        """What goes on the wire: ``e``, the script, the closing empty line."""
        return "e\n" + "\n".join(self.lines) + "\n\n"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def add(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def open(self, text: str) -> None:
        self.add(text)
        self.depth += 1

    def close(self, text: str) -> None:
        self.depth -= 1
        self.add(text)

    def cutoff(self, conditions: list[str], code: int) -> None:
        """Nested ifs (all must hold), then store the code and break."""
        for cond in conditions:
            self.open(f"if {cond}")
        self.add(f"store_var code {format_int(code)} ja")
        self.add("breakloop")
        for _ in conditions:
            self.close("endif")


def _lit(value: float) -> str:
    return format_literal(float(value))


def _check_potential(model: ModelSpec, value: float, what: str) -> None:
    lo, hi = model.potential_range
    if not lo <= value <= hi:
        raise CompileError(f"{what} {value:g} V is outside the {model.name}'s {lo:g}..{hi:g} V")


def _check_current(model: ModelSpec, value: float, what: str) -> None:
    if abs(value) > model.max_current:
        raise CompileError(f"{what} {value:g} A exceeds the {model.name}'s {model.max_current:g} A")


def _bandwidth(sample_period: float) -> str:
    """Four times the sampling frequency, between 1 Hz and 100 kHz (a choice: the
    manual asks for a bandwidth above the sampling rate to avoid aliasing noise)."""
    return _lit(min(max(4.0 / sample_period, 1.0), 1e5))


class Compiler:
    """Writes scripts for one instrument model with the driver's settings."""

    def __init__(self, model: ModelSpec, settings: Settings | None = None) -> None:
        self.model = model
        self.settings = settings or Settings()

    # -- shared pieces ------------------------------------------------------------------
    def _header(self, w: _Writer, variables: list[str], mode: str, bandwidth: str) -> None:
        for name in variables:
            w.add(f"var {name}")
        w.add("store_var code 0i ja")
        w.add(f"set_pgstat_chan {self.settings.channel}")
        w.add(f"set_pgstat_mode {self.model.pgstat_modes[mode]}")
        w.add(f"set_max_bandwidth {bandwidth}")
        lo, hi = self.model.potential_range
        top = max(abs(lo), abs(hi))
        w.add(f"set_range ab {_lit(top)}")
        w.add(f"set_autoranging ab {_lit(top)} {_lit(top)}")

    def _autorange(self, w: _Writer) -> None:
        ranges = self.model.current_ranges
        lo = self.settings.autorange_min or ranges[0][1]
        hi = self.settings.autorange_max or self.model.current_range_for(self.model.max_current)
        w.add(f"set_range ba {_lit(hi)}")
        w.add(f"set_autoranging ba {_lit(lo)} {_lit(hi)}")

    def _fixed_current_range(self, w: _Writer, current: float) -> None:
        full = self.model.current_range_for(current)
        w.add(f"set_range ba {_lit(full)}")
        w.add(f"set_autoranging ba {_lit(full)} {_lit(full)}")

    def _pre_ocp(self, w: _Writer) -> None:
        s = self.settings
        w.add("cell_off")
        w.open(f"meas_loop_ocp ocp {_lit(s.ocp_interval)} {_lit(s.ocp_duration)}")
        w.add("timer_get tm")
        self._packet(w, ["tm", "ocp"])
        w.close("endloop")

    @staticmethod
    def _packet(w: _Writer, names: list[str]) -> None:
        w.add("pck_start")
        for name in names:
            w.add(f"pck_add {name}")
        w.add("pck_end")

    @staticmethod
    def _voltage_cutoffs(w: _Writer, limits: Limits, var: str) -> tuple[str, ...]:
        done = []
        if limits.voltage_above is not None:
            w.cutoff([f"{var} >= {_lit(limits.voltage_above)}"], _CODES[EndReason.VOLTAGE_ABOVE])
            done.append("voltage_above")
        if limits.voltage_below is not None:
            w.cutoff([f"{var} <= {_lit(limits.voltage_below)}"], _CODES[EndReason.VOLTAGE_BELOW])
            done.append("voltage_below")
        return tuple(done)

    @staticmethod
    def _current_cutoffs(w: _Writer, limits: Limits, var: str) -> tuple[str, ...]:
        done = []
        if limits.current_below is not None:
            x = limits.current_below
            w.cutoff([f"{var} <= {_lit(x)}", f"{var} >= {_lit(-x)}"], _CODES[EndReason.CURRENT_BELOW])
            done.append("current_below")
        if limits.current_above is not None:
            x = limits.current_above
            w.cutoff([f"{var} >= {_lit(x)}"], _CODES[EndReason.CURRENT_ABOVE])
            w.cutoff([f"{var} <= {_lit(-x)}"], _CODES[EndReason.CURRENT_ABOVE])
            done.append("current_above")
        return tuple(done)

    @staticmethod
    def _time_cutoff(w: _Writer, limits: Limits) -> tuple[str, ...]:
        if limits.max_time is None:
            return ()
        w.cutoff([f"tm >= {_lit(limits.max_time)}"], _CODES[EndReason.TIME])
        return ("max_time",)

    @staticmethod
    def _finish(w: _Writer, cell_off: bool) -> None:
        w.add("pck_start")
        w.add("pck_add code")
        w.add("pck_end")
        if cell_off:
            w.add("on_finished:")
            w.add("cell_off")

    @staticmethod
    def _host(limits: Limits, on_device: tuple[str, ...]) -> Limits:
        return replace(limits, **{name: None for name in on_device})

    # -- the steps ------------------------------------------------------------------------
    def compile(self, step: Step, ocv_ref: float | None = None) -> ScriptPlan:
        """The script for ``step``; ``ocv_ref`` is the OCV last measured at rest."""
        if isinstance(step, Rest):
            return self._rest(step)
        if isinstance(step, ConstantVoltage):
            return self._hold(step, ocv_ref)
        if isinstance(step, ConstantCurrent):
            return self._galvanostatic(step)
        if isinstance(step, VoltageSweep):
            return self._sweep(step)
        if isinstance(step, Impedance):
            return self._impedance(step, ocv_ref)
        raise CompileError(f"{step.kind} steps have no MethodSCRIPT translation")

    def _rest(self, step: Rest) -> ScriptPlan:
        limits = step.effective_limits()
        run_time = float(limits.max_time)
        w = _Writer()
        self._header(w, ["ew", "tm", "code"], "low_speed", _bandwidth(step.sample_period))
        w.add("cell_off")
        w.add("timer_start")
        w.open(f"meas_loop_ocp ew {_lit(step.sample_period)} {_lit(run_time)}")
        w.add("timer_get tm")
        self._packet(w, ["tm", "ew"])
        done = ("max_time", *self._voltage_cutoffs(w, limits, "ew"))
        w.close("endloop")
        self._finish(w, cell_off=True)
        natural = EndReason.TIME if run_time < step.duration * (1 - 1e-12) else EndReason.COMPLETED
        return ScriptPlan(
            step,
            "ocp",
            tuple(w.lines),
            pre_ocp=False,
            host_limits=self._host(limits, done),
            natural_reason=natural,
            set_potential=None,
            keeps_cell_on=False,
            packet_gap=step.sample_period,
            run_time=run_time,
        )

    def _hold(self, step: ConstantVoltage, ocv_ref: float | None) -> ScriptPlan:
        limits = step.limits
        in_script_ocv = step.vs_ocv and ocv_ref is None
        e_set = None
        if not in_script_ocv:
            e_set = (ocv_ref + step.voltage) if step.vs_ocv else step.voltage
            _check_potential(self.model, e_set, "ConstantVoltage potential")
        run_time = limits.max_time if limits.max_time is not None else LONGEST_LOOP_S
        if in_script_ocv:
            run_time = max(run_time - self.settings.ocp_duration, step.sample_period)
        w = _Writer()
        names = ["ew", "iw", "tm", "code"] + (["ocp", "edc"] if in_script_ocv else [])
        self._header(w, names, "low_speed", _bandwidth(step.sample_period))
        self._autorange(w)
        w.add("timer_start")
        if in_script_ocv:
            self._pre_ocp(w)
            w.add("copy_var ocp edc")
            w.add(f"add_var edc {_lit(step.voltage)}")
            target = "edc"
        else:
            w.add(f"set_range_minmax da {_lit(e_set)} {_lit(e_set)}")
            target = _lit(e_set)
        w.add(f"set_e {target}")
        w.add("cell_on")
        w.open(f"meas_loop_ca ew iw {target} {_lit(step.sample_period)} {_lit(run_time)}")
        w.add("timer_get tm")
        self._packet(w, ["tm", "ew", "iw"])
        done = ("max_time", *self._voltage_cutoffs(w, limits, "ew"), *self._current_cutoffs(w, limits, "iw"))
        w.close("endloop")
        self._finish(w, cell_off=False)
        natural = EndReason.TIME if limits.max_time is not None else EndReason.TIMEOUT
        return ScriptPlan(
            step,
            "ca",
            tuple(w.lines),
            pre_ocp=in_script_ocv,
            host_limits=self._host(limits, done),
            natural_reason=natural,
            set_potential=e_set,
            keeps_cell_on=True,
            packet_gap=step.sample_period + (self.settings.ocp_duration if in_script_ocv else 0.0),
            run_time=run_time,
            ocv_offset=step.voltage if in_script_ocv else 0.0,
        )

    def _galvanostatic(self, step: ConstantCurrent) -> ScriptPlan:
        if not self.model.galvanostatic:
            raise CompileError(f"the {self.model.name} has no galvanostat (ConstantCurrent)")
        _check_current(self.model, step.current, "ConstantCurrent current")
        limits = step.limits
        t_charge = limits.max_charge / abs(step.current) if limits.max_charge and step.current else None
        candidates = [t for t in (limits.max_time, t_charge) if t is not None]
        run_time = min(candidates) if candidates else LONGEST_LOOP_S
        if t_charge is not None and t_charge <= (limits.max_time or math.inf):
            natural = EndReason.CHARGE
        elif limits.max_time is not None:
            natural = EndReason.TIME
        else:
            natural = EndReason.TIMEOUT
        w = _Writer()
        self._header(w, ["ew", "iw", "tm", "code"], "galvanostat", _bandwidth(step.sample_period))
        self._fixed_current_range(w, step.current)
        current = _lit(step.current)
        w.add(f"set_i {current}")
        w.add("cell_on")
        w.add("timer_start")
        w.open(f"meas_loop_cp ew iw {current} {_lit(step.sample_period)} {_lit(run_time)}")
        w.add("timer_get tm")
        self._packet(w, ["tm", "ew", "iw"])
        done = ("max_time", "max_charge", *self._voltage_cutoffs(w, limits, "ew"))
        w.close("endloop")
        self._finish(w, cell_off=True)
        return ScriptPlan(
            step,
            "cp",
            tuple(w.lines),
            pre_ocp=False,
            host_limits=self._host(limits, done),
            natural_reason=natural,
            set_potential=None,
            keeps_cell_on=False,
            packet_gap=step.sample_period,
            run_time=run_time,
            notes={"charge_time_s": t_charge} if t_charge is not None else {},
        )

    def _sweep(self, step: VoltageSweep) -> ScriptPlan:
        limits = step.limits
        from_ocv = step.start == "ocv"
        _check_potential(self.model, step.stop, "VoltageSweep stop")
        if not from_ocv:
            _check_potential(self.model, float(step.start), "VoltageSweep start")
        e_step = step.rate * step.sample_period
        w = _Writer()
        names = ["ew", "iw", "tm", "code"] + (["ocp"] if from_ocv else [])
        self._header(w, names, "low_speed", _bandwidth(step.sample_period))
        lo, hi = self.model.potential_range
        w.add(f"set_range_minmax da {_lit(lo)} {_lit(hi)}")
        self._autorange(w)
        w.add("timer_start")
        if from_ocv:
            self._pre_ocp(w)
            begin = "ocp"
        else:
            begin = _lit(float(step.start))
        w.add(f"set_e {begin}")
        w.add("cell_on")
        w.open(f"meas_loop_lsv ew iw {begin} {_lit(step.stop)} {_lit(e_step)} {_lit(step.rate)}")
        w.add("timer_get tm")
        self._packet(w, ["tm", "ew", "iw"])
        done = (
            *self._voltage_cutoffs(w, limits, "ew"),
            *self._current_cutoffs(w, limits, "iw"),
            *self._time_cutoff(w, limits),
        )
        w.close("endloop")
        self._finish(w, cell_off=True)
        return ScriptPlan(
            step,
            "lsv",
            tuple(w.lines),
            pre_ocp=from_ocv,
            host_limits=self._host(limits, done),
            natural_reason=EndReason.COMPLETED,
            set_potential=None,
            keeps_cell_on=False,
            packet_gap=step.sample_period + (self.settings.ocp_duration if from_ocv else 0.0),
        )

    def _impedance(self, step: Impedance, ocv_ref: float | None) -> ScriptPlan:
        lo_f, hi_f = self.model.frequency_range
        freqs = step.frequencies()
        if len(freqs) == 0:
            raise CompileError("no frequencies left to measure")
        for f in (freqs[0], freqs[-1]):
            if not lo_f <= f <= hi_f:
                raise CompileError(f"frequency {f:g} Hz is outside the {self.model.name}'s {lo_f:g}..{hi_f:g} Hz")
        galvanostatic = step.mode == "galvanostatic"
        if galvanostatic and not self.model.galvanostatic:
            raise CompileError(f"the {self.model.name} has no galvanostatic impedance")
        w = _Writer()
        gap = 10.0 / float(min(freqs)) + 5.0
        limits = step.limits
        sweep = f"{_lit(freqs[0])} {_lit(freqs[-1])} {format_int(len(freqs))}"
        if galvanostatic:
            _check_current(self.model, abs(step.bias) + math.sqrt(2) * step.amplitude, "GEIS current")
            w_names = ["fr", "zr", "zi", "tm", "code"]
            self._header(w, w_names, "galvanostat", _lit(min(max(4 * freqs.max(), 1.0), 1e6)))
            self._fixed_current_range(w, abs(step.bias) + math.sqrt(2) * step.amplitude)
            w.add(f"set_i {_lit(step.bias)}")
            w.add("cell_on")
            w.add("timer_start")
            head = f"meas_loop_geis fr zr zi {_lit(step.amplitude)} {sweep} {_lit(step.bias)}"
            pre_ocp, e_set, keeps_on, offset = False, None, False, 0.0
        else:
            measure_ocv = step.bias_vs_ocv and (step.bias == 0.0 or ocv_ref is None)
            names = ["fr", "zr", "zi", "tm", "code"] + (["ocp", "edc"] if measure_ocv else [])
            e_set = None
            if not measure_ocv:
                e_set = (ocv_ref + step.bias) if step.bias_vs_ocv else step.bias
                _check_potential(self.model, e_set, "Impedance DC potential")
            # The open-circuit measurement runs in low-speed mode, the sweep in high speed.
            mode = "low_speed" if measure_ocv else "high_speed"
            self._header(w, names, mode, _lit(min(max(4 * freqs.max(), 1.0), 1e6)))
            self._autorange(w)
            w.add("timer_start")
            if measure_ocv:
                self._pre_ocp(w)
                w.add("copy_var ocp edc")
                if step.bias != 0.0:
                    w.add(f"add_var edc {_lit(step.bias)}")
                w.add(f"set_pgstat_mode {self.model.pgstat_modes['high_speed']}")
                target = "edc"
            else:
                target = _lit(e_set)
            w.add(f"set_e {target}")
            w.add("cell_on")
            head = f"meas_loop_eis fr zr zi {_lit(step.amplitude)} {sweep} {target}"
            pre_ocp = measure_ocv
            # A sweep under a bias is a potentiostatic hold: keep it after the sweep.
            keeps_on = not (step.bias_vs_ocv and step.bias == 0.0)
            offset = step.bias if measure_ocv else 0.0
        w.open(head)
        w.add("timer_get tm")
        self._packet(w, ["tm", "fr", "zr", "zi"])
        done = self._time_cutoff(w, limits)
        w.close("endloop")
        self._finish(w, cell_off=not keeps_on)
        return ScriptPlan(
            step,
            "geis" if galvanostatic else "eis",
            tuple(w.lines),
            pre_ocp=pre_ocp,
            host_limits=self._host(limits, done),
            natural_reason=EndReason.COMPLETED,
            set_potential=e_set,
            keeps_cell_on=keeps_on,
            packet_gap=gap + (self.settings.ocp_duration if pre_ocp else 0.0),
            ocv_offset=offset,
            frequencies=tuple(float(f) for f in np.logspace(math.log10(freqs[0]), math.log10(freqs[-1]), len(freqs))),
            notes={"frequencies": len(freqs)},
        )
