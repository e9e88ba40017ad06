"""Sub-steps the protocols share, composed with ``yield from``.

Each is a tiny generator that yields one Step and returns its StepResult, so a
protocol's plan reads like a methods section ("rest 60 s at open circuit, plate
5 mAh/cm² at 0.5 mA/cm², strip to 1 V ...") and the Step details (limit
conventions, safety time budgets, labels) are written once. Sign convention:
negative current plates lithium on the working electrode, positive strips it
(and charges a full cell).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labctl.steps import (
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Limits,
    Rest,
    SetTemperature,
    Step,
    StepResult,
)
from labctl.units import mv_to_v

SubPlan = Generator[Step, StepResult, StepResult]


class OnDemand(Mapping[str, Any]):
    """A record whose values are computed when looked up, not before.

    Analyses take records such as ``{"t": ..., "V": ..., "I_A": ...}``; built
    from a StepResult with getters that read ``result.data``, a protocol can
    hand over every step of a long run while the analysis reads one step at a
    time from the run file (the engine keeps no samples in memory).
    """

    def __init__(self, **getters: Callable[[], Any]) -> None:
        self._getters = getters

    def __getitem__(self, key: str) -> Any:
        return self._getters[key]()

    def __contains__(self, key: object) -> bool:
        return key in self._getters  # without computing the value

    def __iter__(self) -> Iterator[str]:
        return iter(self._getters)

    def __len__(self) -> int:
        return len(self._getters)


def step_trace(result: StepResult) -> OnDemand:
    """A step's (t, V, I_A, Q) trace, read from its data when looked up."""
    return OnDemand(
        t=lambda: result.data["t"],
        V=lambda: result.data["E"],
        I_A=lambda: result.data["I"],
        Q=lambda: result.data["Q"],
    )


#: A charge-limited half-cycle is stopped after this many times its nominal
#: duration, so a cell that cannot pass the charge (a leak, a dead contact)
#: cannot hold the channel for ever.
CHARGE_TIME_BUDGET = 3.0


@dataclass(frozen=True)
class SweepValues:
    """The impedance-sweep parameters eis, arrhenius and transference share (lab units)."""

    f_start: float
    f_stop: float
    points_per_decade: int
    amplitude: float
    r_leads: float
    r_leads_source: str


def rest(duration_s: float, label: str = "rest") -> Generator[Step, StepResult, StepResult | None]:
    """Open circuit for ``duration_s`` (none when 0); the last E is the OCV."""
    if duration_s <= 0:
        return None
    return (yield Rest(duration=duration_s, label=label))


def impedance_step(sweep: SweepValues, label: str = "EIS", bias_V: float = 0.0) -> Impedance:
    """The potentiostatic sweep (bias relative to OCV; 0 = at open circuit)."""
    return Impedance(
        f_start=sweep.f_start,
        f_stop=sweep.f_stop,
        points_per_decade=sweep.points_per_decade,
        amplitude=mv_to_v(sweep.amplitude),
        bias=bias_V,
        bias_vs_ocv=True,
        label=label,
    )


def eis_sweep(sweep: SweepValues, label: str = "EIS", bias_V: float = 0.0) -> SubPlan:
    """One impedance sweep, at OCV or under a DC bias relative to it."""
    return (yield impedance_step(sweep, label, bias_V))


def constant_current(current_A: float, limits: Limits, sample_period: float, label: str) -> SubPlan:
    """A galvanostatic step (signed current: negative plates, positive strips or charges)."""
    return (yield ConstantCurrent(current=current_A, limits=limits, sample_period=sample_period, label=label))


def plate_charge(current_A: float, charge_C: float, floor_V: float, sample_period: float, label: str) -> SubPlan:
    """Plate ``charge_C`` at ``current_A`` (magnitude), stopped at ``floor_V`` (safety)."""
    limits = Limits(max_charge=charge_C, voltage_below=floor_V, max_time=CHARGE_TIME_BUDGET * charge_C / current_A)
    return (yield from constant_current(-current_A, limits, sample_period, label))


def strip_charge(
    current_A: float, charge_C: float | None, cutoff_V: float, sample_period: float, label: str, budget_C: float
) -> SubPlan:
    """Strip ``charge_C`` (None: everything, to the cutoff) at ``current_A``, stopped at ``cutoff_V``.

    ``budget_C`` bounds the time when no charge is given (the most there can be to strip).
    """
    budget = charge_C if charge_C is not None else budget_C
    limits = Limits(max_charge=charge_C, voltage_above=cutoff_V, max_time=CHARGE_TIME_BUDGET * budget / current_A)
    return (yield from constant_current(current_A, limits, sample_period, label))


def hold_voltage(dv_V: float, limits: Limits, sample_period: float, label: str) -> SubPlan:
    """Hold ``dv_V`` relative to the open-circuit voltage (DC polarisation)."""
    return (yield ConstantVoltage(voltage=dv_V, vs_ocv=True, limits=limits, sample_period=sample_period, label=label))


def reach_temperature(celsius: float, tolerance_K: float, settle_s: float, timeout_s: float) -> SubPlan:
    """Set the chamber and wait until the cell is stable there (or the timeout)."""
    return (
        yield SetTemperature(
            celsius=celsius,
            tolerance=tolerance_K,
            settle_time=settle_s,
            timeout=timeout_s,
            sample_period=10.0,
            label=f"{celsius:g} °C",
        )
    )


def leave_chamber_at(celsius: float) -> SubPlan:
    """The chamber set point left at the end (no waiting for it)."""
    return (yield SetTemperature(celsius=celsius, settle_time=0.0, tolerance=5.0, label="final"))


def reached(result: StepResult) -> bool:
    """Whether a temperature step ended stable at its set point."""
    return result.end_reason == EndReason.TEMPERATURE_STABLE
