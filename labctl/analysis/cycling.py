"""Per-cycle summaries of galvanostatic cycling: symmetric Li|Li cells and full cells.

Input is the list of steps in the order they ran, each a (t, V, I) trace in SI units.
Steps are grouped into half-cycles by the sign of their current: consecutive steps with the
same sign (a CC step followed by a CV hold) form one half-cycle, rest steps (|I| ≈ 0) are
skipped. Charges are integrated per step (trapezoid), never across the gap between steps,
so a skipped rest does not leak into a capacity.

Symmetric Li|Li: per half-cycle the time-averaged |V| (mean overpotential), the peak |V| and
the end |V|; per cycle (half-cycles 2k and 2k+1) the hysteresis V̄(positive half) −
V̄(negative half), i.e. the full voltage gap between stripping and plating.

Full cells: per cycle the charge and discharge capacity (mAh and mAh/cm²), the CE
(capacity of the second half-cycle / the first one: what came back out over what went in),
capacity retention relative to a reference cycle, and the charge-weighted mean voltage
∫V|I|dt / ∫|I|dt of each half. Charge means positive current (into the positive electrode
of the cell) unless ``charge_sign=-1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labctl.jsonable import to_jsonable

_C_PER_MAH = 3.6  # 1 mAh = 3.6 C


@dataclass(frozen=True, eq=False)
class Segment:
    """One measured step: time ``t`` (s), cell voltage ``V`` (V), current ``I_A`` (A).

    ``Q`` (C), when the instrument reports it, is the charge passed since the start
    of the step (the instrument's own integral, sampled at far more than the logged
    points): capacities and energies then use it, since a trapezoid over logged
    points overestimates a decaying CV current at coarse sampling.
    """

    t: np.ndarray
    V: np.ndarray
    I_A: np.ndarray
    Q: np.ndarray | None = None


@dataclass(frozen=True)
class HalfCycleSummary:
    index: int
    sign: int
    n_steps: int
    duration_s: float
    charge_C: float
    capacity_mAh: float
    mean_current_A: float
    mean_V: float
    mean_abs_V: float
    charge_weighted_V: float
    peak_abs_V: float
    end_abs_V: float
    energy_Wh: float = math.nan  # integral(V|I|dt): energy stored (charge) or delivered (discharge)


@dataclass(frozen=True)
class SymmetricCyclingResult:
    """Symmetric-cell summary; ``hysteresis_V[k]`` belongs to half-cycles 2k and 2k+1."""

    half_cycles: tuple[HalfCycleSummary, ...]
    hysteresis_V: tuple[float, ...]
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class FullCellCycle:
    cycle: int
    charge_capacity_mAh: float
    discharge_capacity_mAh: float
    charge_capacity_mAh_cm2: float
    discharge_capacity_mAh_cm2: float
    coulombic_efficiency: float
    retention: float
    mean_charge_V: float
    mean_discharge_V: float


@dataclass(frozen=True)
class FullCellCyclingResult:
    """Full-cell summary, one :class:`FullCellCycle` per (possibly incomplete) cycle; NaN = missing half."""

    cycles: tuple[FullCellCycle, ...]
    area_cm2: float
    first: str
    reference_cycle: int
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def group_half_cycles(
    steps: Sequence[Segment | Mapping[str, Any]], *, rest_current_A: float | None = None
) -> list[tuple[int, list[Segment]]]:
    """(sign, steps) per half-cycle: same-sign consecutive steps merged, rests dropped.

    A step is a rest when its median |I| is at most ``rest_current_A`` (default: 1e-3 of the
    largest median |I| of all steps).
    """
    return [(sign, _segments(steps, members)) for sign, members in _half_cycle_indices(steps, rest_current_A)]


def _half_cycle_indices(
    steps: Sequence[Segment | Mapping[str, Any]], rest_current_A: float | None
) -> list[tuple[int, list[int]]]:
    """``group_half_cycles`` as indices into ``steps``.

    Each step is read (and checked) once here and let go, and the summaries
    read one half-cycle's steps at a time: a long run's traces, when ``steps``
    reads them on demand (StepResult data kept in the run file), never all
    sit in memory together.
    """
    if len(steps) == 0:
        raise ValueError("steps is empty")
    med = np.array([float(np.median(_coerce(s, i).I_A)) for i, s in enumerate(steps)])
    limit = 1e-3 * float(np.max(np.abs(med))) if rest_current_A is None else float(rest_current_A)
    groups: list[tuple[int, list[int]]] = []
    for i, m in enumerate(med):
        if abs(m) <= limit:
            continue
        sign = 1 if m > 0 else -1
        if groups and groups[-1][0] == sign:
            groups[-1][1].append(i)
        else:
            groups.append((sign, [i]))
    if not groups:
        raise ValueError("steps contains no step with a non-zero current (all rests?)")
    return groups


def _segments(steps: Sequence[Segment | Mapping[str, Any]], members: list[int]) -> list[Segment]:
    return [_coerce(steps[i], i) for i in members]


def symmetric_cycling_summary(
    steps: Sequence[Segment | Mapping[str, Any]],
    *,
    rest_current_A: float | None = None,
    end_window_fraction: float = 0.05,
) -> SymmetricCyclingResult:
    """Per-half-cycle overpotentials and per-cycle hysteresis of a symmetric Li|Li cell."""
    groups = _half_cycle_indices(steps, rest_current_A)
    halves = tuple(
        _summarize(i, sign, _segments(steps, members), end_window_fraction) for i, (sign, members) in enumerate(groups)
    )
    hyst = []
    for k in range(len(halves) // 2):
        a, b = halves[2 * k], halves[2 * k + 1]
        pos, neg = (a, b) if a.sign > 0 else (b, a)
        hyst.append(pos.mean_V - neg.mean_V)
    return SymmetricCyclingResult(
        half_cycles=halves,
        hysteresis_V=tuple(float(h) for h in hyst),
        conventions={
            "half_cycle": "consecutive same-sign current steps; rests (|I| small) skipped",
            "mean_abs_V": "time-weighted mean of |V| over the half-cycle (trapezoid)",
            "end_abs_V": f"median |V| over the last {end_window_fraction:.3g} of the samples",
            "hysteresis_V": "mean V of the positive-current half minus mean V of the negative-current "
            "half, for half-cycle pairs (2k, 2k+1)",
        },
    )


def full_cell_cycling_summary(
    steps: Sequence[Segment | Mapping[str, Any]],
    area_cm2: float,
    *,
    first: Literal["charge", "discharge"] = "charge",
    charge_sign: int = 1,
    reference_cycle: int = 0,
    rest_current_A: float | None = None,
) -> FullCellCyclingResult:
    """Capacities, CE, retention and mean voltages per cycle of a full cell."""
    if not (area_cm2 > 0 and math.isfinite(area_cm2)):
        raise ValueError(f"area_cm2 must be a positive finite number, got {area_cm2!r}")
    if first not in ("charge", "discharge"):
        raise ValueError(f"first must be 'charge' or 'discharge', got {first!r}")
    if charge_sign not in (1, -1):
        raise ValueError(f"charge_sign must be +1 or -1, got {charge_sign!r}")
    groups = _half_cycle_indices(steps, rest_current_A)
    first_sign = charge_sign if first == "charge" else -charge_sign
    # Drop leading half-cycles of the wrong kind (e.g. a formation discharge before the first charge).
    dropped = 0
    while groups and groups[0][0] != first_sign:
        groups.pop(0)
        dropped += 1
    if not groups:
        raise ValueError(f"no {first} half-cycle found in steps (check charge_sign)")

    halves = [_summarize(i, sign, _segments(steps, members), 0.05) for i, (sign, members) in enumerate(groups)]
    rows = _cycle_rows(halves, first)
    if not 0 <= reference_cycle < len(rows):
        raise ValueError(f"reference_cycle {reference_cycle} is outside the {len(rows)} cycles found")
    ref = rows[reference_cycle]["dis"]
    cycles = tuple(
        FullCellCycle(
            cycle=i,
            charge_capacity_mAh=r["ch"],
            discharge_capacity_mAh=r["dis"],
            charge_capacity_mAh_cm2=r["ch"] / area_cm2,
            discharge_capacity_mAh_cm2=r["dis"] / area_cm2,
            coulombic_efficiency=r["ce"],
            retention=r["dis"] / ref if ref and math.isfinite(ref) else math.nan,
            mean_charge_V=r["v_ch"],
            mean_discharge_V=r["v_dis"],
        )
        for i, r in enumerate(rows)
    )
    return FullCellCyclingResult(
        cycles=cycles,
        area_cm2=float(area_cm2),
        first=first,
        reference_cycle=reference_cycle,
        conventions={
            "charge": f"current sign {charge_sign:+d}",
            "cycle": f"{first} half-cycle followed by the opposite half-cycle",
            "coulombic_efficiency": "capacity of the second half-cycle / capacity of the first in each cycle",
            "retention": f"discharge capacity / discharge capacity of cycle {reference_cycle}",
            "mean_V": "charge-weighted mean voltage: integral(V|I|dt) / integral(|I|dt)",
            "capacity": "trapezoid integral of |I| per step, summed over the half-cycle; 1 mAh = 3.6 C",
            "dropped_leading_half_cycles": dropped,
        },
    )


# --------------------------------------------------------------------------- internals


def cycle_metrics(charge: HalfCycleSummary | None, discharge: HalfCycleSummary | None, first: str) -> dict[str, float]:
    """One full-cell cycle's numbers from its two halves (None = missing, NaN results).

    The single definition every full-cell analysis uses (``full_cell_cycling_summary``
    here, the C-rate protocols' ``labctl.analysis.fullcell``): capacities (mAh),
    CE = capacity of the second half / the first (``first`` is "charge" or
    "discharge"), charge-weighted mean voltages and energies (Wh).
    """
    a, b = (charge, discharge) if first == "charge" else (discharge, charge)
    q_in = a.capacity_mAh if a is not None else math.nan
    q_out = b.capacity_mAh if b is not None else math.nan
    return {
        "ch": charge.capacity_mAh if charge is not None else math.nan,
        "dis": discharge.capacity_mAh if discharge is not None else math.nan,
        "ce": q_out / q_in if q_in > 0 else math.nan,
        "v_ch": _charge_weighted_V(charge),
        "v_dis": _charge_weighted_V(discharge),
        "e_ch": charge.energy_Wh if charge is not None else math.nan,
        "e_dis": discharge.energy_Wh if discharge is not None else math.nan,
    }


def _cycle_rows(halves: list[HalfCycleSummary], first: str) -> list[dict[str, float]]:
    """Charge and discharge capacity, CE and mean voltages of each (first, second) pair of halves."""
    rows: list[dict[str, float]] = []
    for k in range(0, len(halves), 2):
        a = halves[k]
        b = halves[k + 1] if k + 1 < len(halves) else None
        ch, dis = (a, b) if first == "charge" else (b, a)
        rows.append(cycle_metrics(ch, dis, first))
    return rows


def _coerce(step: Segment | Mapping[str, Any], index: int) -> Segment:
    if isinstance(step, Segment):
        seg = step
    elif isinstance(step, Mapping):
        try:
            cur = step["I_A"] if "I_A" in step else step["I"]
            seg = Segment(step["t"], step["V"] if "V" in step else step["E"], cur, step.get("Q"))
        except KeyError as exc:
            raise ValueError(f"step {index}: missing key {exc.args[0]!r}") from None
    else:
        raise ValueError(f"step {index}: expected Segment or mapping with t, V (or E), I_A (or I)")
    t, V, cur = (np.asarray(x, dtype=float) for x in (seg.t, seg.V, seg.I_A))
    if not (t.ndim == V.ndim == cur.ndim == 1 and t.size == V.size == cur.size):
        raise ValueError(f"step {index}: t, V and I_A must be 1-D arrays of equal length")
    if t.size < 2:
        raise ValueError(f"step {index}: needs at least 2 samples, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(V)) and np.all(np.isfinite(cur))):
        raise ValueError(f"step {index}: t, V or I_A contains NaN or infinite values")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"step {index}: t must be strictly increasing")
    q = None if seg.Q is None else np.asarray(seg.Q, dtype=float)
    if q is not None and not (q.shape == t.shape and np.all(np.isfinite(q))):
        q = None  # not reported (NaN) or malformed: integrate the current instead
    return Segment(t, V, cur, q)


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def summarize_half_cycle(
    segments: Sequence[Segment | Mapping[str, Any]], sign: int, index: int = 0
) -> HalfCycleSummary:
    """One half-cycle (its steps' traces, in order) summarised: charge, energy, mean voltages."""
    return _summarize(index, sign, _segments(segments, list(range(len(segments)))), 0.05)


def _summarize(index: int, sign: int, segs: list[Segment], end_fraction: float) -> HalfCycleSummary:
    dur = sum(float(s.t[-1] - s.t[0]) for s in segs)
    q = sum(_step_charge(s) for s in segs)
    v_int = sum(_trapz(s.V, s.t) for s in segs)
    av_int = sum(_trapz(np.abs(s.V), s.t) for s in segs)
    vq_int = sum(_step_energy(s) for s in segs)
    v_all = np.concatenate([s.V for s in segs])
    n_end = max(1, math.ceil(end_fraction * v_all.size))
    return HalfCycleSummary(
        index=index,
        sign=sign,
        n_steps=len(segs),
        duration_s=dur,
        charge_C=q,
        capacity_mAh=q / _C_PER_MAH,
        mean_current_A=sign * q / dur if dur > 0 else math.nan,
        mean_V=v_int / dur if dur > 0 else math.nan,
        mean_abs_V=av_int / dur if dur > 0 else math.nan,
        charge_weighted_V=vq_int / q if q > 0 else math.nan,
        peak_abs_V=float(np.max(np.abs(v_all))),
        end_abs_V=float(np.median(np.abs(v_all[-n_end:]))),
        energy_Wh=vq_int / 3600.0,
    )


def _step_charge(s: Segment) -> float:
    """|charge| of one step (C): the instrument's Q when reported, else the trapezoid of |I|."""
    if s.Q is not None:
        return float(abs(s.Q[-1]))
    return _trapz(np.abs(s.I_A), s.t)


def _step_energy(s: Segment) -> float:
    """integral(V|I|dt) of one step (J): V against the instrument's Q when reported."""
    if s.Q is not None:
        dq = np.abs(np.diff(np.abs(s.Q)))
        return float(abs(s.Q[0]) * s.V[0] + np.sum(0.5 * (s.V[1:] + s.V[:-1]) * dq))
    return _trapz(s.V * np.abs(s.I_A), s.t)


def _charge_weighted_V(h: HalfCycleSummary | None) -> float:
    return math.nan if h is None else h.charge_weighted_V
