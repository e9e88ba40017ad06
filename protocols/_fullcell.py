"""What the three C-rate protocols (formation, rate_capability, long_cycling) share.

A full-cell cycle in the papers' terms, made only of ordinary steps any
channel runs (simulator, SMU, battery cycler): CC charge at +C·I₁C to v_max,
then CV at v_max until |I| < cv_cutoff·I₁C (C/20 by default; none when 0),
optional rest, CC discharge at −C·I₁C to v_min, optional rest. 1 C comes from
the cell's cathode (``labctl.cathode``): nominal mAh/g × active mass.

Each cycle's steps are read back once (from the run file when there is one),
reduced to one row of numbers in a ``CycleTable`` and let go, so a run of
thousands of cycles holds one row per cycle, not its StepResults or traces.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.analysis.cycling import Segment
from labctl.analysis.fullcell import CycleTable, cycle_row, dq_dv, summarise
from labctl.cathode import CATHODE_PARAMS, CathodeSpec
from labctl.params import Param, ParameterError
from labctl.protocol import GEOMETRY_PARAMS, Cell, GeometryValues, Protocol
from labctl.safety import Demand
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, SetTemperature, Step, StepResult
from protocols._steps import rest

#: A CC half-cycle is given up after this many times its nominal duration plus one hour.
TIME_BUDGET_FACTOR = 2.0

COMMON_PARAMS = (
    *CATHODE_PARAMS,
    Param(
        "cv_cutoff",
        0.05,
        "C",
        "end the CV hold at v_max when |I| falls below this (0 = no CV)",
        minimum=0.0,
        maximum=1.0,
    ),
    Param("cv_max_time", 2.0, "h", "safety time limit of the CV hold", minimum=0.01, maximum=100.0),
    Param("rest", 0.0, "s", "open-circuit rest after each half-cycle", minimum=0.0, maximum=86400.0),
    Param("sample_period", 30.0, "s", "sampling interval", minimum=0.01, maximum=3600.0),
    Param(
        "dqdv_cycles",
        (1.0, 2.0, 10.0, 100.0),
        "",
        "cycles whose dQ/dV is stored (those that exist)",
        minimum=1,
        maximum=1e6,
        kind="floats",
    ),
    Param("dqdv_bin", 5.0, "mV", "voltage bin of dQ/dV", minimum=0.1, maximum=100.0),
    *GEOMETRY_PARAMS,
)


@dataclass(frozen=True)
class FullCellValues(GeometryValues):
    """The parameters every C-rate protocol has (lab units)."""

    cathode: str | None
    loading: float | None
    specific_capacity: float | None
    v_min: float | None
    v_max: float | None
    cv_cutoff: float
    cv_max_time: float
    rest: float
    sample_period: float
    dqdv_cycles: tuple[float, ...]
    dqdv_bin: float


def cathode_of(cell: Cell) -> CathodeSpec:
    if cell.cathode is None:
        raise ParameterError("cathode", "this protocol needs the cell's cathode (chemistry, loading, mAh/g)")
    return cell.cathode


def check_common(p: FullCellValues, cell: Cell | None) -> None:
    if p.v_min is not None and p.v_max is not None and p.v_min >= p.v_max:
        raise ParameterError("v_min", f"{p.v_min:g} V must be below v_max {p.v_max:g} V")
    if any(not float(c).is_integer() for c in p.dqdv_cycles):
        raise ParameterError("dqdv_cycles", "cycle numbers must be whole numbers (allowed: a list of cycles from 1)")


def one_c_A(cell: Cell) -> float:
    return cathode_of(cell).one_c_A(cell.area_cm2)


def _budget_s(c_rate: float) -> float:
    return (TIME_BUDGET_FACTOR / c_rate + 1.0) * 3600.0


@dataclass
class Cycling:
    """The running state of a C-rate protocol: its table, dQ/dV curves, how it stopped."""

    p: FullCellValues
    cell: Cell
    table: CycleTable
    dqdv: dict[str, Any]
    stopped: str = ""
    cv_timeouts: int = 0

    @classmethod
    def start(cls, p: FullCellValues, cell: Cell) -> Cycling:
        return cls(p, cell, CycleTable(), {})

    def cycle(self, c_charge: float, c_discharge: float, label: str) -> Generator[Step, StepResult, bool]:
        """One CC-CV charge / CC discharge cycle; False when the run must stop (a fault)."""
        p, cat = self.p, cathode_of(self.cell)
        i1c = cat.one_c_A(self.cell.area_cm2)
        number = len(self.table) + 1
        name = f"cycle {number}{' ' + label if label else ''}"
        charge: list[StepResult] = []
        cc = yield ConstantCurrent(
            current=c_charge * i1c,
            limits=Limits(voltage_above=cat.v_max, max_time=_budget_s(c_charge)),
            sample_period=p.sample_period,
            label=f"{name} CC charge {c_charge:g} C",
        )
        charge.append(cc)
        complete = cc.end_reason == EndReason.VOLTAGE_ABOVE
        if cc.ended_by_fault:
            return self._stop(cc)
        if p.cv_cutoff > 0 and complete:
            cv = yield ConstantVoltage(
                voltage=cat.v_max,
                limits=Limits(current_below=p.cv_cutoff * i1c, max_time=p.cv_max_time * 3600.0),
                sample_period=p.sample_period,
                label=f"{name} CV {cat.v_max:g} V to {p.cv_cutoff:g} C",
            )
            charge.append(cv)
            if cv.ended_by_fault:
                return self._stop(cv)
            self.cv_timeouts += cv.end_reason == EndReason.TIME
        yield from rest(p.rest, f"{name} rest")
        dis = yield ConstantCurrent(
            current=-c_discharge * i1c,
            limits=Limits(voltage_below=cat.v_min, max_time=_budget_s(c_discharge)),
            sample_period=p.sample_period,
            label=f"{name} CC discharge {c_discharge:g} C",
        )
        if dis.ended_by_fault:
            return self._stop(dis)
        complete = complete and dis.end_reason == EndReason.VOLTAGE_BELOW
        yield from rest(p.rest, f"{name} rest")
        self._record(number, charge, dis, c_charge, c_discharge, complete)
        return True

    def _record(
        self, number: int, charge: Sequence[StepResult], dis: StepResult, c_ch: float, c_dis: float, complete: bool
    ) -> None:
        """Reduce the cycle to its row (and dQ/dV when selected): each step's rows are read once
        (from the run file when there is one) and dropped with this call."""
        charge_segs = [_segment(r) for r in charge]
        ch = [seg for seg in charge_segs if seg is not None]
        dis_seg = _segment(dis)
        dis_list = [dis_seg] if dis_seg is not None else []
        self.table.append(cycle_row(ch, dis_list, c_rate_charge=c_ch, c_rate_discharge=c_dis, complete=complete))
        if number in {int(c) for c in self.p.dqdv_cycles}:
            mass = cathode_of(self.cell).active_mass_g(self.cell.area_cm2)
            bin_V = self.p.dqdv_bin * 1e-3
            curves: dict[str, Any] = {}
            # the CC part of the charge only: a CV hold has no dQ/dV
            for half, seg in (("charge", charge_segs[0]), ("discharge", dis_seg)):
                if seg is not None:
                    curves[half] = dq_dv(seg.V, seg.I_A, seg.t, mass, bin_V, Q=seg.Q).as_dict()
            self.dqdv[f"cycle_{number}"] = curves

    def _stop(self, result: StepResult) -> bool:
        self.stopped = f"'{result.step.label}' ended by {result.end_reason.value}: cycling stopped"
        return False

    def results(self, reference_cycle: int = 1) -> dict[str, Any]:
        cat = cathode_of(self.cell)
        area = self.cell.area_cm2
        summary = summarise(
            self.table,
            mass_g=cat.active_mass_g(area),
            area_cm2=area,
            reference_cycle=reference_cycle,
            one_c_A=cat.one_c_A(area),
        )
        out = summary.as_dict()
        warnings = list(out["warnings"])
        if self.stopped:
            warnings.append(self.stopped)
        if self.cv_timeouts:
            warnings.append(f"{self.cv_timeouts} CV hold(s) ended on cv_max_time before the current cut-off")
        out["warnings"] = warnings
        out["stopped"] = self.stopped or "all cycles done"
        out["cathode"] = cat.as_dict()
        out["one_c_mA"] = cat.one_c_A(area) * 1e3
        out["active_mass_mg"] = cat.active_mass_g(area) * 1e3
        out["dqdv"] = self.dqdv
        out["units"] = {**out["units"], "one_c_mA": "mA", "active_mass_mg": "mg", "capacity_mAh_g": "mAh/g"}
        return out


def demands_for(p: FullCellValues, cell: Cell, max_c_rate: float, celsius: float | None = None) -> list[Demand]:
    cat = cathode_of(cell)
    i1c = cat.one_c_A(cell.area_cm2)
    out = [
        Demand("current", max_c_rate * i1c, "specific_capacity", f"{max_c_rate:g} C × {i1c * 1e3:.4g} mA"),
        Demand("voltage", cat.v_max, "v_max"),
        Demand("voltage", cat.v_min, "v_min"),
    ]
    if celsius is not None:
        out.append(Demand("temperature", celsius, "temperature"))
    return out


def preview_for(p: FullCellValues, cell: Cell, max_c_rate: float, celsius: float | None = None) -> list[Step]:
    cat = cathode_of(cell)
    i1c = cat.one_c_A(cell.area_cm2)
    steps: list[Step] = [ConstantCurrent(current=max_c_rate * i1c, limits=Limits(max_time=1.0))]
    if p.cv_cutoff > 0:
        steps.append(ConstantVoltage(voltage=cat.v_max, limits=Limits(max_time=1.0)))
    if celsius is not None:
        steps.append(SetTemperature(celsius=celsius))
    return steps


def _segment(result: StepResult) -> Segment | None:
    """A step's (t, V, I, Q) read back once; None when it has fewer than two samples."""
    if result.n_samples < 2 or result.data is None:
        return None
    rows = np.asarray(result.data)
    return Segment(rows["t"], rows["E"], rows["I"], rows["Q"])


STEP_KINDS = frozenset({"ConstantCurrent", "ConstantVoltage", "Rest"})


def full_cell_protocol(
    *,
    fastest_rate: Callable[[Any], float],
    temperature: Callable[[Any], float | None] = lambda p: None,
    **declaration: Any,
) -> Protocol:
    """A full-cell protocol: cell type, step kinds, and the preview and safety demands of its
    fastest C-rate (and chamber temperature), so each protocol declares only what is its own."""
    return Protocol(
        cell_type="full",
        step_kinds=STEP_KINDS,
        preview=lambda p, cell: preview_for(p, cell, fastest_rate(p), temperature(p)),
        demands=lambda p, cell: demands_for(p, cell, fastest_rate(p), temperature(p)),
        **declaration,
    )
