"""The step vocabulary: what a protocol asks a channel to do, and what came of it.

Steps are frozen dataclasses in SI units (V, A, s, C, Hz, °C for set points).
They carry no behaviour that talks to hardware, so a protocol can build them,
a test can compare them and the run file can store them as JSON.

Samples travel as numpy structured blocks (``SAMPLE_DTYPE``), never as single
points: per-point Python overhead is what makes acquisition code slow.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np

#: One row per acquired point. ``t`` is seconds since the start of the run
#: (cell time, from the engine's clock), ``Q`` the charge passed since the start
#: of the step, ``T`` the cell temperature in °C (NaN when nobody measures it).
SAMPLE_DTYPE = np.dtype([("t", "<f8"), ("E", "<f8"), ("I", "<f8"), ("Q", "<f8"), ("T", "<f8")])
SAMPLE_UNITS = {"t": "s", "E": "V", "I": "A", "Q": "C", "T": "degC"}

#: One row per impedance frequency. Z = z_re + j*z_im (z_im is negative for a
#: capacitive response); E_dc/I_dc are the DC level during the point, t the run
#: time at which it was measured and T the cell temperature (°C, NaN if unknown).
SPECTRUM_DTYPE = np.dtype(
    [
        ("freq", "<f8"),
        ("z_re", "<f8"),
        ("z_im", "<f8"),
        ("E_dc", "<f8"),
        ("I_dc", "<f8"),
        ("t", "<f8"),
        ("T", "<f8"),
    ]
)
SPECTRUM_UNITS = {"freq": "Hz", "z_re": "ohm", "z_im": "ohm", "E_dc": "V", "I_dc": "A", "t": "s", "T": "degC"}


def empty_samples(n: int = 0) -> np.ndarray:
    """A block of ``n`` samples with every field NaN (T stays NaN when unknown)."""
    block = np.empty(n, dtype=SAMPLE_DTYPE)
    for name in SAMPLE_DTYPE.names:
        block[name] = np.nan
    return block


class EndReason(enum.StrEnum):
    """Why a step ended. Faults are end reasons too, not crashes."""

    COMPLETED = "completed"  # the step did all it was asked (duration, sweep end, all frequencies)
    TIME = "time"  # limits.max_time reached
    VOLTAGE_ABOVE = "voltage_above"
    VOLTAGE_BELOW = "voltage_below"
    CURRENT_BELOW = "current_below"  # |I| decayed below limits.current_below
    CURRENT_ABOVE = "current_above"  # |I| rose above limits.current_above
    CHARGE = "charge"  # |Q| reached limits.max_charge
    STEADY = "steady"  # |dI/dt| fell below limits.steady_slope
    TEMPERATURE_STABLE = "temperature_stable"
    SHORT_CIRCUIT = "short_circuit"
    COMPLIANCE = "compliance"  # hardware clamp tripped
    SAFETY_LIMIT = "safety_limit"  # the cell's safety window (not the step's limits)
    INSTRUMENT_FAULT = "instrument_fault"
    TIMEOUT = "timeout"  # e.g. chamber never stabilised
    ABORTED = "aborted"
    PAUSED = "paused"  # a segment cut by pause; the engine continues the step

    @property
    def is_fault(self) -> bool:
        return self in _FAULTS


_FAULTS = {
    EndReason.SHORT_CIRCUIT,
    EndReason.COMPLIANCE,
    EndReason.SAFETY_LIMIT,
    EndReason.INSTRUMENT_FAULT,
    EndReason.TIMEOUT,
}

OnLimit = Literal["next", "abort"]


@dataclass(frozen=True)
class Limits:
    """Conditions that end a step; ``None`` means not checked.

    Voltage limits compare the measured cell voltage E; the current and charge
    limits compare magnitudes so the same limit works for plating and
    stripping (``current_above`` is the LSV's "stop when the current runs
    away"). ``steady_slope`` (A/s) ends a potentiostatic hold when the
    current's slope, fitted over the last ``steady_window`` seconds, is below it
    in magnitude (the DC-polarisation "current is steady" criterion).

    ``on_limit="abort"`` makes any limit that ends the step end the whole run
    (status aborted, the limit named as the reason): use it for steps whose
    limits are guards, not for a step meant to end by time or charge.
    """

    max_time: float | None = None
    voltage_above: float | None = None
    voltage_below: float | None = None
    current_below: float | None = None
    current_above: float | None = None
    max_charge: float | None = None
    steady_slope: float | None = None
    steady_window: float = 600.0
    on_limit: OnLimit = "next"

    def __post_init__(self) -> None:
        for name in ("max_time", "current_below", "current_above", "max_charge", "steady_slope"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Limits.{name} must be a positive finite number, got {value!r}")
        if (
            self.voltage_above is not None
            and self.voltage_below is not None
            and self.voltage_below >= self.voltage_above
        ):
            raise ValueError(
                f"Limits.voltage_below ({self.voltage_below} V) must be below "
                f"Limits.voltage_above ({self.voltage_above} V)"
            )
        if self.on_limit not in ("next", "abort"):
            raise ValueError(f"Limits.on_limit must be 'next' or 'abort', got {self.on_limit!r}")

    def shifted(self, elapsed: float, charge: float) -> Limits:
        """The limits left after ``elapsed`` seconds and ``charge`` coulombs: used
        when a paused step is continued so it goes forward, never replays."""
        return dataclasses.replace(
            self,
            max_time=None if self.max_time is None else max(self.max_time - elapsed, 1e-9),
            max_charge=None if self.max_charge is None else max(self.max_charge - abs(charge), 1e-15),
        )


@dataclass(frozen=True)
class StepProgress:
    """How far a step got before a pause cut it: what ``Step.remaining`` needs
    to continue it forward (never replaying what the cell already went through).

    ``elapsed`` is the active (powered or measuring) time, pauses excluded;
    ``charge`` the charge passed so far; ``points_done`` the impedance points
    measured; ``first_potential``/``last_potential`` the first and latest
    measured E (None before any sample).
    """

    elapsed: float
    charge: float = 0.0
    points_done: int = 0
    first_potential: float | None = None
    last_potential: float | None = None


@dataclass(frozen=True)
class Step:
    """Base of every step. ``sample_period`` is the acquisition interval in s."""

    limits: Limits = field(default_factory=Limits, kw_only=True)
    sample_period: float = field(default=1.0, kw_only=True)
    label: str = field(default="", kw_only=True)

    #: True when the channel must drive the cell (output on) during the step.
    powered: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.sample_period > 0 and math.isfinite(self.sample_period)):
            raise ValueError(f"{type(self).__name__}.sample_period must be > 0 s, got {self.sample_period!r}")

    @property
    def kind(self) -> str:
        return type(self).__name__

    def effective_limits(self) -> Limits:
        """The limits the channel enforces (a Rest's duration becomes max_time)."""
        return self.limits

    def remaining(self, progress: StepProgress) -> Step | None:
        """What is left of this step after ``progress`` (None when nothing is).

        The default serves steps that end by their limits: the time and charge
        already spent are taken off them. Subclasses with more to continue
        (a sweep's range, a spectrum's frequencies) override it.
        """
        limits = self._limits_left(progress)
        if limits is None:
            return None
        return dataclasses.replace(self, limits=limits)

    def _limits_left(self, progress: StepProgress) -> Limits | None:
        """The effective limits minus what was spent; None when time ran out."""
        limits = self.effective_limits().shifted(progress.elapsed, progress.charge)
        if limits.max_time is not None and limits.max_time <= 1e-6:
            return None
        return limits

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        data["limits"] = dataclasses.asdict(self.limits)
        data["kind"] = self.kind
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclass(frozen=True)
class Rest(Step):
    """Open circuit for ``duration`` s, recording the open-circuit voltage."""

    duration: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "powered", False)
        _require(self.duration > 0, f"Rest.duration must be > 0 s, got {self.duration!r}")

    def remaining(self, progress: StepProgress) -> Step | None:
        limits = self._limits_left(progress)
        if limits is None:
            return None
        return dataclasses.replace(self, duration=limits.max_time or self.duration, limits=limits)

    def effective_limits(self) -> Limits:
        max_time = self.duration
        if self.limits.max_time is not None:
            max_time = min(max_time, self.limits.max_time)
        return dataclasses.replace(self.limits, max_time=max_time)


@dataclass(frozen=True)
class ConstantCurrent(Step):
    """Galvanostatic step. Positive current oxidises the working electrode
    (strips Li from it); negative current plates Li onto it."""

    current: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(math.isfinite(self.current), "ConstantCurrent.current must be finite")
        _require(
            any(
                v is not None
                for v in (
                    self.limits.max_time,
                    self.limits.max_charge,
                    self.limits.voltage_above,
                    self.limits.voltage_below,
                )
            ),
            "ConstantCurrent needs a time, charge or voltage limit to end",
        )


@dataclass(frozen=True)
class ConstantVoltage(Step):
    """Potentiostatic hold at ``voltage`` (vs the counter/reference electrode),
    or at OCV + ``voltage`` when ``vs_ocv`` (DC polarisation by ΔV)."""

    voltage: float = 0.0
    vs_ocv: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(math.isfinite(self.voltage), "ConstantVoltage.voltage must be finite")
        _require(
            self.limits.max_time is not None
            or self.limits.current_below is not None
            or self.limits.steady_slope is not None
            or self.limits.max_charge is not None,
            "ConstantVoltage needs a time, current, steadiness or charge limit to end",
        )


@dataclass(frozen=True)
class VoltageSweep(Step):
    """Linear sweep from ``start`` (V, or "ocv") to ``stop`` at ``rate`` V/s.
    The sweep ends with COMPLETED at ``stop`` unless a limit ends it first."""

    start: Union[float, Literal["ocv"]] = "ocv"
    stop: float = 0.0
    rate: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.rate > 0, f"VoltageSweep.rate must be > 0 V/s, got {self.rate!r}")
        _require(
            self.start == "ocv" or isinstance(self.start, (int, float)),
            f"VoltageSweep.start must be a voltage or 'ocv', got {self.start!r}",
        )

    def remaining(self, progress: StepProgress) -> Step | None:
        """The rest of the sweep, from the potential reached to ``stop``."""
        limits = self._limits_left(progress)
        if limits is None:
            return None
        if progress.last_potential is None:
            return dataclasses.replace(self, limits=limits)
        origin = progress.first_potential if self.start == "ocv" else float(self.start)
        direction = self.stop - (origin if origin is not None else progress.last_potential)
        if (self.stop - progress.last_potential) * direction <= 0:
            return None
        return dataclasses.replace(self, start=progress.last_potential, limits=limits)


@dataclass(frozen=True)
class Impedance(Step):
    """Impedance sweep from ``f_start`` to ``f_stop`` (either direction, log
    spaced, ``points_per_decade``) with a sine of ``amplitude`` (V rms for
    potentiostatic, A rms for galvanostatic) around ``bias`` (V or A; relative to
    OCV when ``bias_vs_ocv``)."""

    f_start: float = 1e5
    f_stop: float = 0.1
    points_per_decade: int = 10
    amplitude: float = 0.01
    bias: float = 0.0
    bias_vs_ocv: bool = True
    mode: Literal["potentiostatic", "galvanostatic"] = "potentiostatic"
    #: Points already measured (a paused sweep continues here, never replays).
    skip_points: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.f_start > 0 and self.f_stop > 0, "Impedance frequencies must be > 0 Hz")
        _require(self.f_start != self.f_stop, "Impedance.f_start and f_stop must differ")
        _require(
            1 <= self.points_per_decade <= 100,
            f"Impedance.points_per_decade must be 1..100, got {self.points_per_decade!r}",
        )
        _require(self.amplitude > 0, f"Impedance.amplitude must be > 0, got {self.amplitude!r}")
        _require(
            self.mode in ("potentiostatic", "galvanostatic"),
            f"Impedance.mode must be potentiostatic or galvanostatic, got {self.mode!r}",
        )
        object.__setattr__(self, "powered", True)

    def remaining(self, progress: StepProgress) -> Step | None:
        """The frequencies not yet measured (a spectrum has no time limit to shift)."""
        if progress.points_done >= len(self.frequencies()):
            return None
        return dataclasses.replace(self, skip_points=self.skip_points + progress.points_done)

    def frequencies(self) -> np.ndarray:
        """The frequencies still to measure, in sweep order, both ends included."""
        decades = abs(math.log10(self.f_stop / self.f_start))
        n = max(round(decades * self.points_per_decade) + 1, 2)
        return np.logspace(math.log10(self.f_start), math.log10(self.f_stop), n)[self.skip_points :]


@dataclass(frozen=True)
class SetTemperature(Step):
    """Bring the chamber to ``celsius`` and wait until the reading stays within
    ``tolerance`` for ``settle_time`` s (TEMPERATURE_STABLE), or give up after
    ``timeout`` s (TIMEOUT). The cell is at open circuit meanwhile."""

    celsius: float = 25.0
    tolerance: float = 0.5
    settle_time: float = 600.0
    timeout: float = 4 * 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "powered", False)
        _require(-100 <= self.celsius <= 300, f"SetTemperature.celsius out of -100..300 °C: {self.celsius!r}")
        _require(self.tolerance > 0, "SetTemperature.tolerance must be > 0 K")
        _require(self.settle_time >= 0, "SetTemperature.settle_time must be >= 0 s")
        _require(self.timeout > 0, "SetTemperature.timeout must be > 0 s")

    def remaining(self, progress: StepProgress) -> Step | None:
        """Wait for stability again (the hold may have let the chamber drift),
        within what is left of the timeout (at least a second)."""
        return dataclasses.replace(self, timeout=max(self.timeout - progress.elapsed, 1.0))


STEP_TYPES: dict[str, type[Step]] = {
    cls.__name__: cls for cls in (Rest, ConstantCurrent, ConstantVoltage, VoltageSweep, Impedance, SetTemperature)
}


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a step stored with ``Step.to_dict`` (e.g. from a run file)."""
    data = dict(data)
    cls = STEP_TYPES[data.pop("kind")]
    limits = Limits(**data.pop("limits", {}))
    return cls(limits=limits, **data)


@dataclass(frozen=True)
class SampleStats:
    """A step's samples in a few numbers, kept instead of the samples.

    ``first``/``last`` are the first and last rows, ``minimum``/``maximum``
    each field's extremes (NaN when no sample had a value), all as
    ``{field: value}``. A protocol that only needs these never reads the
    step's rows back from the run file.
    """

    n: int = 0
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    minimum: dict[str, float] = field(default_factory=dict)
    maximum: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: np.ndarray) -> SampleStats:
        """The statistics of an array of SAMPLE_DTYPE rows."""
        acc = SampleAccumulator()
        acc.add(rows)
        return acc.stats()


class SampleAccumulator:
    """Builds a SampleStats block by block, in O(fields) memory.

    The engine feeds it every block it streams, so a step's extremes are known
    without keeping its samples. One vectorised reduction per block: blocks are
    viewed as an (n, fields) float array.
    """

    def __init__(self) -> None:
        self.n = 0
        self._first: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        if not len(block):
            return
        table = _as_float_table(block)
        low = np.fmin.reduce(table, axis=0)  # fmin: NaN only where a whole column is NaN
        high = np.fmax.reduce(table, axis=0)
        if self._first is None:
            self._first = table[0].copy()
            self._min, self._max = low, high
        else:
            assert self._min is not None and self._max is not None
            self._min = np.fmin(self._min, low)
            self._max = np.fmax(self._max, high)
        self._last = table[-1].copy()
        self.n += len(block)

    @property
    def last_row(self) -> dict[str, float]:
        return _row_dict(self._last)

    @property
    def first_row(self) -> dict[str, float]:
        return _row_dict(self._first)

    def stats(self) -> SampleStats:
        return SampleStats(
            n=self.n,
            first=_row_dict(self._first),
            last=_row_dict(self._last),
            minimum=_row_dict(self._min),
            maximum=_row_dict(self._max),
        )


def _as_float_table(block: np.ndarray) -> np.ndarray:
    """A SAMPLE_DTYPE block as an (n, 5) float64 array (a view when it can be)."""
    if block.dtype == SAMPLE_DTYPE and block.flags.c_contiguous:
        return block.view("<f8").reshape(len(block), len(SAMPLE_DTYPE.names))
    names = block.dtype.names or ()
    columns = [
        np.asarray(block[name], dtype="<f8") if name in names else np.full(len(block), np.nan)
        for name in SAMPLE_DTYPE.names
    ]
    return np.column_stack(columns)


def _row_dict(values: np.ndarray | None) -> dict[str, float]:
    if values is None:
        return {}
    return {name: float(v) for name, v in zip(SAMPLE_DTYPE.names, values, strict=True)}


class StepRows:
    """A finished step's samples, read back from the run file when asked for.

    Behaves like the SAMPLE_DTYPE array it stands for where protocols use one
    (``len``, ``rows["E"]``, ``rows[-1]``, ``np.asarray(rows)``, ``.dtype``),
    but holds no samples itself: the first access reads rows ``[start, stop)``
    through ``read`` (the run-file writer's, which works mid-run in SWMR mode
    and after the file is closed). The array read is cached only weakly: as
    long as a caller holds it (or a field view of it) further accesses reuse
    it; once dropped, the memory is given back, so a protocol that keeps a
    thousand StepResults keeps no samples.
    """

    __slots__ = ("__weakref__", "_cached", "_read", "start", "stop")

    def __init__(self, start: int, stop: int, read: RowReader) -> None:
        if stop < start:
            raise ValueError(f"StepRows: stop ({stop}) before start ({start})")
        self.start = start
        self.stop = stop
        self._read = read
        self._cached: weakref.ref[np.ndarray] | None = None

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def dtype(self) -> np.dtype:
        return SAMPLE_DTYPE

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def read(self) -> np.ndarray:
        """The rows as an array (read now unless a caller still holds them)."""
        rows = self._cached() if self._cached is not None else None
        if rows is None:
            rows = self._read(self.start, self.stop)
            if len(rows) != len(self):
                raise RuntimeError(f"step rows {self.start}..{self.stop}: {len(rows)} rows read back")
            self._cached = weakref.ref(rows)
        return rows

    def __getitem__(self, key: Any) -> Any:
        return self.read()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.read())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self.read()
        return rows if dtype is None else rows.astype(dtype)

    def __repr__(self) -> str:
        return f"StepRows(rows {self.start}..{self.stop} of the run file)"


#: Reads rows ``[start, stop)`` of a run's samples.
RowReader = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class StepResult:
    """What a step did, handed back to the protocol generator.

    ``last`` is the final sample (a SAMPLE_DTYPE row as a dict), ``stats``
    the step's sample statistics (count, first, last, extremes) and
    ``spectrum`` the impedance data for Impedance steps (a spectrum is at most
    a few hundred points, so it is kept).

    ``data`` holds the step's samples: a ``StepRows`` view that reads them
    back from the run file on first access when the run has one (the engine
    keeps no samples then), or an in-memory array for runs without a file
    (tests) and results rebuilt from a file (``labctl analyze``). Protocols
    that only need a summary should use ``last``/``charge``/``stats``.
    """

    index: int
    step: Step
    end_reason: EndReason
    t_start: float
    duration: float
    charge: float
    last: dict[str, float] = field(default_factory=dict)
    spectrum: np.ndarray | None = None
    data: np.ndarray | StepRows | None = None
    message: str = ""
    stats: SampleStats | None = None

    @property
    def ended_by_fault(self) -> bool:
        return self.end_reason.is_fault

    @property
    def n_samples(self) -> int:
        """How many samples the step recorded (no read of the data)."""
        if self.stats is not None:
            return self.stats.n
        return 0 if self.data is None else len(self.data)

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly digest for the run file and the event stream."""
        return {
            "index": self.index,
            "kind": self.step.kind,
            "label": self.step.label,
            "end_reason": self.end_reason.value,
            "t_start": self.t_start,
            "duration": self.duration,
            "charge": self.charge,
            "last": {k: (None if not math.isfinite(v) else v) for k, v in self.last.items()},
            "message": self.message,
        }
