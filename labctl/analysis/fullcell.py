"""Full-cell cycling in the papers' terms: mAh/g, CE, energy, retention, cycle at 80 %, dQ/dV.

Input is only what any channel records (each step's t, V, I trace), grouped by
the protocol into cycles: a charge (CC, then CV) and a discharge (CC). The
per-cycle numbers come from ``labctl.analysis.cycling.cycle_metrics`` (the one
definition the plain ``cycling`` protocol shares); this module adds what needs
the cathode: specific capacities (mAh/g of active material), areal capacities,
energies, voltage gap, retention against a chosen reference cycle, the cycle
at which retention falls below 80 %, the fade per cycle (log-linear fit), the
mean CE, and dQ/dV of selected cycles.

Memory: a run of thousands of cycles keeps one row of floats per cycle
(:class:`CycleTable`, numpy columns grown by doubling), never the traces, and
the result stores the table as columns (one HDF5 dataset each), not a list of
per-cycle dicts.

Conventions (recorded with every result): cycles numbered from 1; a cycle is
a charge followed by a discharge; CE = discharge / charge capacity of the
same cycle; mean voltages are charge-weighted (∫V|I|dt / ∫|I|dt); energies
∫V|I|dt; retention = discharge capacity / that of the reference cycle;
fade per cycle = 1 − exp(slope) of ln(discharge capacity) against the cycle
number over the cycles at the reference cycle's C-rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.analysis.cycling import Segment, cycle_metrics, summarize_half_cycle
from labctl.jsonable import to_jsonable

#: Retention below which a cell is conventionally at end of life.
END_OF_LIFE = 0.8

#: Stored per cycle (raw, in mAh / Wh / V / s); everything else is derived.
RAW_FIELDS = (
    "c_rate_charge",
    "c_rate_discharge",
    "charge_mAh",
    "discharge_mAh",
    "charge_Wh",
    "discharge_Wh",
    "mean_charge_V",
    "mean_discharge_V",
    "cv_charge_mAh",
    "t_end_s",
    "complete",
)


class CycleTable:
    """Per-cycle rows as numpy columns, grown by doubling: O(cycles) floats, nothing else."""

    def __init__(self, capacity: int = 64) -> None:
        self._data = np.full((max(capacity, 1), len(RAW_FIELDS)), np.nan)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, row: Mapping[str, float]) -> None:
        if self.n == len(self._data):
            grown = np.full((2 * len(self._data), len(RAW_FIELDS)), np.nan)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n] = [float(row.get(name, math.nan)) for name in RAW_FIELDS]
        self.n += 1

    def column(self, name: str) -> np.ndarray:
        return self._data[: self.n, RAW_FIELDS.index(name)].copy()

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)


def cycle_row(
    charge_steps: Sequence[Segment | Mapping[str, Any]],
    discharge_steps: Sequence[Segment | Mapping[str, Any]],
    *,
    c_rate_charge: float,
    c_rate_discharge: float,
    complete: bool = True,
) -> dict[str, float]:
    """The raw row of one cycle from its charge steps (CC then CV) and discharge steps.

    Each step is a (t, V, I_A) trace (``Segment`` or a mapping read on demand);
    steps with fewer than two samples are skipped. The CV part of the charge is
    the charge passed by every charge step after the first.
    """
    ch_steps = [s for s in charge_steps if _n(s) >= 2]
    dis_steps = [s for s in discharge_steps if _n(s) >= 2]
    ch = summarize_half_cycle(ch_steps, +1) if ch_steps else None
    dis = summarize_half_cycle(dis_steps, -1) if dis_steps else None
    m = cycle_metrics(ch, dis, "charge")
    cv = summarize_half_cycle(ch_steps[1:], +1).capacity_mAh if len(ch_steps) > 1 else 0.0
    t_end = float(np.asarray(_get(dis_steps[-1], "t"))[-1]) if dis_steps else math.nan
    return {
        "c_rate_charge": c_rate_charge,
        "c_rate_discharge": c_rate_discharge,
        "charge_mAh": m["ch"],
        "discharge_mAh": m["dis"],
        "charge_Wh": m["e_ch"],
        "discharge_Wh": m["e_dis"],
        "mean_charge_V": m["v_ch"],
        "mean_discharge_V": m["v_dis"],
        "cv_charge_mAh": cv,
        "t_end_s": t_end,
        "complete": 1.0 if (complete and ch is not None and dis is not None) else 0.0,
    }


def _n(step: Segment | Mapping[str, Any]) -> int:
    return int(np.asarray(_get(step, "t")).size)


def _get(step: Segment | Mapping[str, Any], name: str) -> Any:
    return getattr(step, name) if isinstance(step, Segment) else step[name]


# --------------------------------------------------------------------------- dQ/dV


@dataclass(frozen=True)
class DqDv:
    """dQ/dV of one half-cycle on a voltage grid (mAh/g/V); ``peak_V`` (the centroid of the
    main peak above half its height) is where the plateau is."""

    V: np.ndarray
    dQdV_mAh_g_V: np.ndarray
    peak_V: float

    def as_dict(self) -> dict[str, Any]:
        return {"V": self.V.tolist(), "dQdV_mAh_g_V": self.dQdV_mAh_g_V.tolist(), "peak_V": self.peak_V}


def dq_dv(
    V: np.ndarray,
    I_A: np.ndarray,
    t: np.ndarray,
    mass_g: float,
    bin_V: float = 0.005,
    Q: np.ndarray | None = None,
) -> DqDv:
    """dQ/dV of one constant-current half-cycle on a uniform voltage grid.

    The charge passed (the instrument's ``Q`` when given, else the trapezoid of
    |I|) is taken as a function of voltage, made monotonic (noise), interpolated
    at the bin edges and differenced: no division by a small ΔV between two
    samples, and the curve integrates to the capacity (Σ dQ/dV·bin = Q/m) at any
    sampling. Use constant-current parts only (a CV hold has no dQ/dV).
    """
    V, I_A, t = (np.asarray(x, dtype=float) for x in (V, I_A, t))
    if V.size < 2:
        raise ValueError("dq_dv needs at least 2 samples")
    if not (mass_g > 0 and bin_V > 0):
        raise ValueError("mass_g and bin_V must be positive")
    if Q is not None and np.all(np.isfinite(Q)):
        q = np.abs(np.asarray(Q, dtype=float)) / 3.6  # mAh
    else:
        q = np.concatenate([[0.0], np.cumsum(0.5 * (np.abs(I_A[1:]) + np.abs(I_A[:-1])) * np.diff(t))]) / 3.6
    if V[-1] < V[0]:  # a discharge: read it from the low-voltage end
        V, q = V[::-1], q[-1] - q[::-1]
    V = np.maximum.accumulate(V)
    q = np.maximum.accumulate(q)
    lo = math.floor(float(V[0]) / bin_V) * bin_V
    n_bins = max(1, math.ceil((float(V[-1]) - lo) / bin_V))
    edges = lo + np.arange(n_bins + 1) * bin_V
    per_bin = np.diff(np.interp(edges, V, q)) / mass_g / bin_V
    centres = 0.5 * (edges[1:] + edges[:-1])
    return DqDv(V=centres, dQdV_mAh_g_V=per_bin, peak_V=_peak(centres, per_bin))


def _peak(v: np.ndarray, y: np.ndarray) -> float:
    """Centroid of the contiguous bins above half the maximum around it: finer than one bin
    and not thrown to a neighbouring bin by noise on a broad peak."""
    top = int(np.argmax(y))
    half = 0.5 * y[top]
    lo, hi = top, top
    while lo > 0 and y[lo - 1] >= half:
        lo -= 1
    while hi < y.size - 1 and y[hi + 1] >= half:
        hi += 1
    w = y[lo : hi + 1]
    return float(np.sum(v[lo : hi + 1] * w) / np.sum(w)) if np.sum(w) > 0 else float(v[top])


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "stderr": self.stderr}


@dataclass(frozen=True)
class FullCellResult:
    """Per-cycle table (columns) and headline numbers of a full-cell run."""

    table: dict[str, np.ndarray]
    reference_cycle: int
    capacity_mAh_g: float
    retention_last: float
    cycle_below_80: int | None
    fade_per_cycle: Estimate | None
    ce_mean: Estimate | None
    valid: bool
    reason: str
    warnings: tuple[str, ...]
    conventions: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = to_jsonable(
            {
                "cycles_completed": int(np.sum(self.table["complete"] > 0)) if len(self.table["cycle"]) else 0,
                "reference_cycle": self.reference_cycle,
                "capacity_mAh_g": self.capacity_mAh_g,
                "retention_last": self.retention_last,
                "cycle_below_80": self.cycle_below_80,
                "fade_per_cycle": None if self.fade_per_cycle is None else self.fade_per_cycle.as_dict(),
                "ce_mean": None if self.ce_mean is None else self.ce_mean.as_dict(),
                "valid": self.valid,
                "reason": self.reason,
                "warnings": list(self.warnings),
                "conventions": self.conventions,
                "units": self.units,
            }
        )
        out["table"] = {name: column.tolist() for name, column in self.table.items()}  # columns: one dataset each
        return out


UNITS = {
    "cycle": "",
    "c_rate_charge": "C",
    "c_rate_discharge": "C",
    "charge_mAh_g": "mAh/g",
    "discharge_mAh_g": "mAh/g",
    "charge_mAh_cm2": "mAh/cm2",
    "discharge_mAh_cm2": "mAh/cm2",
    "coulombic_efficiency": "",
    "charge_energy_mWh": "mWh",
    "discharge_energy_mWh": "mWh",
    "discharge_energy_Wh_kg": "Wh/kg (cathode active mass)",
    "mean_charge_V": "V",
    "mean_discharge_V": "V",
    "voltage_gap_V": "V",
    "retention": "",
    "cv_fraction": "",
    "t_end_h": "h",
    "complete": "",
}


def summarise(
    table: CycleTable,
    *,
    mass_g: float,
    area_cm2: float,
    reference_cycle: int = 1,
    one_c_A: float | None = None,
    end_of_life: float = END_OF_LIFE,
) -> FullCellResult:
    """The per-cycle table in papers' units and the headline numbers, from the raw rows.

    ``reference_cycle`` (1-based) is the retention reference and sets the rate
    the fade and the mean CE are taken at; ``one_c_A`` is only recorded (the
    C-rate convention).
    """
    if not (mass_g > 0 and area_cm2 > 0):
        raise ValueError("mass_g and area_cm2 must be positive")
    n = len(table)
    col = table.column
    q_ch, q_dis = col("charge_mAh"), col("discharge_mAh")
    complete = col("complete") > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ce = q_dis / q_ch
        out_table = {
            "cycle": np.arange(1, n + 1, dtype=np.int64),
            "c_rate_charge": col("c_rate_charge"),
            "c_rate_discharge": col("c_rate_discharge"),
            "charge_mAh_g": q_ch / mass_g,
            "discharge_mAh_g": q_dis / mass_g,
            "charge_mAh_cm2": q_ch / area_cm2,
            "discharge_mAh_cm2": q_dis / area_cm2,
            "coulombic_efficiency": ce,
            "charge_energy_mWh": col("charge_Wh") * 1e3,
            "discharge_energy_mWh": col("discharge_Wh") * 1e3,
            "discharge_energy_Wh_kg": col("discharge_Wh") / (mass_g * 1e-3),
            "mean_charge_V": col("mean_charge_V"),
            "mean_discharge_V": col("mean_discharge_V"),
            "voltage_gap_V": col("mean_charge_V") - col("mean_discharge_V"),
            "retention": np.full(n, np.nan),
            "cv_fraction": col("cv_charge_mAh") / q_ch,
            "t_end_h": col("t_end_s") / 3600.0,
            "complete": complete.astype(np.int8),
        }
    warnings: list[str] = []

    conventions = {
        "cycle": "numbered from 1; a cycle is a charge (CC, then CV when used) followed by a discharge (CC)",
        "coulombic_efficiency": "discharge capacity / charge capacity of the same cycle",
        "specific_capacity": f"mAh per g of cathode active material ({mass_g * 1e3:.6g} mg)",
        "mean_V": "charge-weighted mean voltage: integral(V|I|dt) / integral(|I|dt)",
        "voltage_gap_V": "mean charge voltage - mean discharge voltage",
        "energy": "integral(V|I|dt) over the half-cycle",
        "retention": f"discharge capacity / discharge capacity of cycle {reference_cycle}",
        "cycle_below_80": f"first cycle (>= the reference) with retention < {end_of_life:g}",
        "fade_per_cycle": "1 - exp(slope) of a least-squares line through ln(discharge capacity) vs cycle, "
        "complete cycles at the reference cycle's C-rate from the reference on; stderr from the fit residuals",
        "ce_mean": "mean CE of the complete cycles at the reference cycle's C-rates from the reference on, "
        "leaving out the first cycle after any change of rate (and cycle 1), whose CE carries the change in "
        "the charge left in the cell at the discharge cut-off; stderr = sd/sqrt(n)",
        "c_rate": "1 C = nominal specific capacity (mAh/g) x active mass (g), in one hour"
        + (f" = {one_c_A * 1e3:.6g} mA" if one_c_A is not None else ""),
    }
    empty = FullCellResult(
        out_table, reference_cycle, math.nan, math.nan, None, None, None, False, "", (), conventions, UNITS
    )
    if n == 0 or not complete.any():
        return _replace(empty, reason="no complete cycle (a charge and a discharge) was recorded")
    if not 1 <= reference_cycle <= n or not complete[reference_cycle - 1]:
        return _replace(
            empty, reason=f"reference cycle {reference_cycle} was not completed ({int(complete.sum())} of {n} cycles)"
        )
    ref = reference_cycle - 1
    ref_q = q_dis[ref]
    retention = q_dis / ref_q
    out_table["retention"] = retention
    below = np.flatnonzero(complete[ref:] & (retention[ref:] < end_of_life))
    cycle_80 = int(below[0] + ref + 1) if below.size else None
    if cycle_80 is None:
        warnings.append(f"retention stayed at or above {end_of_life:g} through cycle {n}: cycle_below_80 not reached")
    incomplete = np.flatnonzero(~complete) + 1
    if incomplete.size:
        warnings.append(f"{incomplete.size} incomplete cycle(s) left out (first: cycle {int(incomplete[0])})")
    over = np.flatnonzero(complete & (ce > 1.0 + 1e-3)) + 1
    if over.size:
        warnings.append(f"CE above 1 in {over.size} cycle(s) (first: cycle {int(over[0])}): capacity not conserved?")
    fade = _fade(retention, complete, out_table["c_rate_discharge"], out_table["c_rate_charge"], ref, warnings)
    rate_ch, rate_dis = out_table["c_rate_charge"], out_table["c_rate_discharge"]
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = ~(np.isclose(rate_ch[1:], rate_ch[:-1]) & np.isclose(rate_dis[1:], rate_dis[:-1]))
    steady = complete & ~new_block & (np.arange(n) >= ref) & _at_reference_rate(rate_ch, rate_dis, ref)
    ce_sel = ce[steady]
    ce_mean = None
    if ce_sel.size >= 1:
        sd = float(np.std(ce_sel, ddof=1)) / math.sqrt(ce_sel.size) if ce_sel.size > 1 else math.nan
        ce_mean = Estimate(float(np.mean(ce_sel)), sd)
    else:
        warnings.append("no steady cycle at the reference rate after the reference: ce_mean not computed")
    last = int(np.flatnonzero(complete)[-1])
    return FullCellResult(
        table=out_table,
        reference_cycle=reference_cycle,
        capacity_mAh_g=float(ref_q / mass_g),
        retention_last=float(retention[last]),
        cycle_below_80=cycle_80,
        fade_per_cycle=fade,
        ce_mean=ce_mean,
        valid=True,
        reason="",
        warnings=tuple(warnings),
        conventions=conventions,
        units=UNITS,
    )


def _replace(result: FullCellResult, **changes: Any) -> FullCellResult:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _at_reference_rate(rate_ch: np.ndarray, rate_dis: np.ndarray, ref: int) -> np.ndarray:
    return np.isclose(rate_dis, rate_dis[ref], rtol=1e-9) & np.isclose(rate_ch, rate_ch[ref], rtol=1e-9)


def _fade(
    retention: np.ndarray,
    complete: np.ndarray,
    rate_dis: np.ndarray,
    rate_ch: np.ndarray,
    ref: int,
    warnings: list[str],
) -> Estimate | None:
    """Geometric fade per cycle over the cycles at the reference's rates, with its standard error."""
    idx = np.arange(retention.size)
    same = complete & (idx >= ref) & _at_reference_rate(rate_ch, rate_dis, ref) & (retention > 0)
    x, y = idx[same].astype(float), np.log(retention[same])
    if x.size < 3:
        warnings.append(f"only {x.size} complete cycle(s) at the reference rate: fade_per_cycle not fitted")
        return None
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    sxx = float(np.sum((x - x.mean()) ** 2))
    se = math.sqrt(float(np.sum(resid**2)) / (x.size - 2) / sxx) if x.size > 2 and sxx > 0 else math.nan
    return Estimate(float(-math.expm1(slope)), float(math.exp(slope) * se))
