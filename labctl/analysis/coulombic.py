"""Coulombic efficiency of lithium plating/stripping on copper (Li‖Cu).

Average CE by the reservoir protocol of Adams et al., "Accurate Determination of Coulombic
Efficiency for Lithium Metal Anodes and Lithium Metal Batteries", Adv. Energy Mater. 8
(2018) 1702097: after a preconditioning plate/strip, plate a reservoir Q_T on Cu, cycle n
times (strip Q_C, plate Q_C), then strip everything to the cutoff (Q_S):

    CE_avg = (Q_S + n·Q_C) / (Q_T + n·Q_C)

The formula assumes the reservoir never ran out: every cycling strip delivered its full Q_C.
A strip that ended on the voltage cutoff before passing Q_C means the reservoir was
exhausted, fewer coulombs were cycled than the formula counts, and CE_avg is not valid.

The nucleation overpotential is read from the first plating step on bare Cu: the voltage
dips at the onset (nucleation) and relaxes to a growth plateau. Both numbers are stored,
with η_nuc = V_dip − V_plateau (negative for cathodic plating, the usual sign of V in a
Li‖Cu cell) and its magnitude.

Charges may be in any unit (C, mAh, mAh/cm²), as long as all inputs share it; the unit
string is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.jsonable import to_jsonable

#: End reasons (labctl.steps.EndReason values) meaning "the voltage hit a cutoff".
VOLTAGE_CUTOFF_END_REASONS: frozenset[str] = frozenset({"voltage_above", "voltage_below"})
_CE_FORMULA = "CE_avg = (Q_S + n*Q_C) / (Q_T + n*Q_C)  [Adams et al., Adv. Energy Mater. 8 (2018) 1702097]"


@dataclass(frozen=True)
class NucleationResult:
    """Nucleation dip and growth plateau of the first plating step on Cu (volts)."""

    dip_V: float
    dip_time_s: float
    plateau_V: float
    overpotential_V: float
    magnitude_V: float
    has_dip: bool
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class AverageCEResult:
    """CE_avg (fraction, not %) and whether the protocol's assumption held."""

    ce_avg: float
    valid: bool
    invalid_reasons: tuple[str, ...]
    exhausted_cycles: tuple[int, ...]
    Q_T: float
    Q_C: float
    Q_S: float
    n_cycles: int
    charge_unit: str
    nucleation: NucleationResult | None
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class CycleCEResult:
    """Per-cycle CE = Q_strip / Q_plate for plain plating/stripping cycles."""

    ce: tuple[float, ...]
    mean: float
    mean_excluding_first: float
    plate_charges: tuple[float, ...]
    strip_charges: tuple[float, ...]
    charge_unit: str
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def average_coulombic_efficiency(
    Q_T: float,
    Q_C: float,
    Q_S: float,
    cycle_strip_charges: Sequence[float],
    cycle_strip_end_reasons: Sequence[str] | None = None,
    *,
    final_strip_end_reason: str | None = None,
    charge_unit: str = "C",
    tolerance: float = 0.005,
    nucleation: NucleationResult | None = None,
) -> AverageCEResult:
    """CE_avg by Adams et al. (2018) with the reservoir-exhaustion check.

    ``cycle_strip_charges`` are the charges (magnitudes) passed by the n cycling strip
    steps, so n = len(cycle_strip_charges); ``cycle_strip_end_reasons`` their end reasons.
    A cycling strip counts as exhausted when it passed less than Q_C·(1 − tolerance) and
    (if reasons are given) ended on a voltage cutoff. ``final_strip_end_reason``, if given,
    must be a voltage cutoff, or Q_S is not "everything that was left".
    """
    strips = _checked_strips(Q_T, Q_C, Q_S, cycle_strip_charges, cycle_strip_end_reasons, tolerance)
    n = int(strips.size)

    exhausted_idx, reasons = _invalid_reasons(
        Q_T, Q_C, Q_S, strips, cycle_strip_end_reasons, final_strip_end_reason, tolerance
    )

    ce = (Q_S + n * Q_C) / (Q_T + n * Q_C)
    return AverageCEResult(
        ce_avg=float(ce),
        valid=not reasons,
        invalid_reasons=tuple(reasons),
        exhausted_cycles=exhausted_idx,
        Q_T=float(Q_T),
        Q_C=float(Q_C),
        Q_S=float(Q_S),
        n_cycles=n,
        charge_unit=charge_unit,
        nucleation=nucleation,
        conventions={
            "formula": _CE_FORMULA,
            "exhausted": f"cycling strip passed < Q_C*(1-{tolerance}) "
            + ("and ended on a voltage cutoff" if cycle_strip_end_reasons is not None else "(no end reasons given)"),
            "charge_unit": charge_unit,
        },
    )


def _checked_strips(
    Q_T: float,
    Q_C: float,
    Q_S: float,
    cycle_strip_charges: Sequence[float],
    cycle_strip_end_reasons: Sequence[str] | None,
    tolerance: float,
) -> np.ndarray:
    """The cycling strips' charge magnitudes, or a ValueError naming the bad input."""
    for name, v in (("Q_T", Q_T), ("Q_C", Q_C), ("Q_S", Q_S)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v!r}")
    if Q_T <= 0:
        raise ValueError(f"Q_T (reservoir charge) must be > 0, got {Q_T!r}")
    if Q_C <= 0:
        raise ValueError(f"Q_C (cycling charge) must be > 0, got {Q_C!r}")
    if Q_S < 0:
        raise ValueError(f"Q_S (final strip charge) must be >= 0, got {Q_S!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    strips = np.abs(np.asarray(cycle_strip_charges, dtype=float))
    if strips.ndim != 1 or strips.size == 0:
        raise ValueError("cycle_strip_charges must be a non-empty 1-D sequence (one charge per cycle)")
    if not np.all(np.isfinite(strips)):
        raise ValueError("cycle_strip_charges contains NaN or infinite values")
    n = int(strips.size)
    if cycle_strip_end_reasons is not None and len(cycle_strip_end_reasons) != n:
        raise ValueError(
            f"cycle_strip_end_reasons has {len(cycle_strip_end_reasons)} entries, cycle_strip_charges has {n}"
        )
    return strips


def _invalid_reasons(
    Q_T: float,
    Q_C: float,
    Q_S: float,
    strips: np.ndarray,
    cycle_strip_end_reasons: Sequence[str] | None,
    final_strip_end_reason: str | None,
    tolerance: float,
) -> tuple[tuple[int, ...], list[str]]:
    """The exhausted cycles and every reason the CE is not valid (empty: valid)."""
    short_of_qc = strips < Q_C * (1.0 - tolerance)
    if cycle_strip_end_reasons is not None:
        on_cutoff = np.array([_reason(r) in VOLTAGE_CUTOFF_END_REASONS for r in cycle_strip_end_reasons])
        exhausted = short_of_qc & on_cutoff
    else:
        exhausted = short_of_qc
    exhausted_idx = tuple(int(i) for i in np.flatnonzero(exhausted))
    reasons: list[str] = []
    if exhausted_idx:
        reasons.append(
            f"reservoir exhausted: cycling strip(s) {list(exhausted_idx)} ended on the cutoff before passing Q_C"
        )
    cut_short = np.flatnonzero(short_of_qc & ~exhausted)
    if cut_short.size:
        reasons.append(
            f"cycling strip(s) {cut_short.tolist()} passed less than Q_C without reaching the voltage cutoff"
        )
    final_reason = None if final_strip_end_reason is None else _reason(final_strip_end_reason)
    if final_reason is not None and final_reason not in VOLTAGE_CUTOFF_END_REASONS:
        reasons.append(f"final strip ended by {final_strip_end_reason!r}, not the voltage cutoff")
    if Q_T * (1.0 + tolerance) < Q_S:
        reasons.append(f"Q_S ({Q_S:.6g}) exceeds Q_T ({Q_T:.6g}): more lithium recovered than plated")
    return exhausted_idx, reasons


def nucleation_overpotential(
    t: np.ndarray,
    V: np.ndarray,
    *,
    early_fraction: float = 0.1,
    smooth_samples: int = 3,
) -> NucleationResult:
    """Nucleation spike (dip) and the growth plateau just after it, from a plating trace on Cu.

    As the literature reads it (Pei et al., Nano Lett. 17 (2017) 1132; Adams et al. 2018):
    the voltage spikes in the plating direction at onset (nucleation), relaxes to the
    growth plateau, then drifts (concentration polarisation, SEI) over the rest of a long
    plating. η_nuc = spike − plateau, the plateau taken *just after* the spike: the first
    minimum of the (running-median smoothed) magnitude after the spike, where the relaxation
    ends — not the late trace, which at low temperature has drifted by more than the spike.

    The plating direction is the sign of the median V (negative for a Li‖Cu cell read as
    V_Cu − V_Li), so the sign of η is right whatever the temperature: negative when the spike
    lies beyond the plateau. The spike is the extreme within the first ``early_fraction``.
    """
    t = np.asarray(t, dtype=float)
    V = np.asarray(V, dtype=float)
    if t.ndim != 1 or V.ndim != 1 or t.size != V.size:
        raise ValueError(f"t and V must be 1-D arrays of equal length, got shapes {t.shape} and {V.shape}")
    if t.size < 10:
        raise ValueError(f"t and V need at least 10 samples, got {t.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(V))):
        raise ValueError("t or V contains NaN or infinite values")
    if np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    if not 0 < early_fraction < 1:
        raise ValueError(f"early_fraction must be in (0, 1), got {early_fraction!r}")
    s = -1.0 if float(np.median(V)) <= 0 else 1.0
    x = s * V  # magnitude in the plating direction
    tau = (t - t[0]) / (t[-1] - t[0])
    early = np.flatnonzero(tau <= early_fraction)
    if early.size < 2:
        raise ValueError("the early part holds fewer than 2 samples")
    xs = _running_median(x, smooth_samples)
    noise = _robust_step_scatter(x)
    tol = max(3.0 * noise, 1e-4)
    # The spike: the first local maximum of the magnitude (it falls by more than tol after it).
    k, top = 0, xs[0]
    found = False
    for i in range(1, int(early[-1]) + 1):
        if xs[i] > top:
            k, top = i, xs[i]
        elif xs[i] < top - tol:
            found = True
            break
    if not found:  # no spike: the magnitude only rises (or stays flat) over the early part
        k = 0
    k_raw = max(range(max(k - smooth_samples // 2, 0), min(k + smooth_samples // 2 + 1, x.size)), key=lambda i: x[i])
    # The growth plateau: the first local minimum after it (rises by more than tol after it).
    m_idx, m_val = k, xs[k]
    for i in range(k + 1, x.size):
        if xs[i] < m_val:
            m_idx, m_val = i, xs[i]
        elif xs[i] > m_val + tol:
            break
    k = k_raw if found else 0
    lo, hi = max(m_idx - smooth_samples // 2, k + 1), min(m_idx + smooth_samples // 2 + 1, x.size)
    plateau_x = float(np.median(x[lo:hi])) if hi > lo else float(xs[m_idx])
    if not found:
        m_idx, plateau_x = 0, float(x[0])
    dip = s * float(x[k])
    plateau = s * plateau_x
    eta = dip - plateau
    return NucleationResult(
        dip_V=dip,
        dip_time_s=float(t[k] - t[0]),
        plateau_V=plateau,
        overpotential_V=float(eta),
        magnitude_V=float(abs(eta)),
        has_dip=bool(found and x[k] - plateau_x > tol),
        conventions={
            "dip": f"first local extreme of V in the plating direction within the first {early_fraction:.3g} "
            "of the step",
            "plateau": "growth plateau just after the spike: first minimum of the running-median "
            f"({smooth_samples} samples) magnitude after it (Pei et al., Nano Lett. 17 (2017) 1132)",
            "overpotential": "dip - plateau (signed: negative for cathodic plating read as V_Cu - V_Li); "
            "magnitude = |dip - plateau|",
            "plateau_time_s": float(t[m_idx] - t[0]),
        },
    )


def _running_median(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or x.size < n:
        return x.copy()
    half = n // 2
    padded = np.pad(x, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, n)
    return np.median(windows, axis=1)


def _robust_step_scatter(x: np.ndarray) -> float:
    d = np.diff(x)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2) if d.size >= 2 else 0.0


def cycle_coulombic_efficiency(
    plate_charges: Sequence[float], strip_charges: Sequence[float], *, charge_unit: str = "C"
) -> CycleCEResult:
    """Per-cycle CE_i = Q_strip,i / Q_plate,i (magnitudes), for plain plate/strip cycling."""
    p = np.abs(np.asarray(plate_charges, dtype=float))
    s = np.abs(np.asarray(strip_charges, dtype=float))
    if p.ndim != 1 or s.ndim != 1 or p.size == 0:
        raise ValueError("plate_charges and strip_charges must be non-empty 1-D sequences")
    if p.size != s.size:
        raise ValueError(f"plate_charges ({p.size}) and strip_charges ({s.size}) must have the same length")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(s))):
        raise ValueError("plate_charges or strip_charges contains NaN or infinite values")
    if np.any(p == 0):
        raise ValueError(f"plate_charges must be non-zero, got zero at cycle(s) {np.flatnonzero(p == 0).tolist()}")
    ce = s / p
    return CycleCEResult(
        ce=tuple(float(v) for v in ce),
        mean=float(ce.mean()),
        mean_excluding_first=float(ce[1:].mean()) if ce.size > 1 else float("nan"),
        plate_charges=tuple(float(v) for v in p),
        strip_charges=tuple(float(v) for v in s),
        charge_unit=charge_unit,
        conventions={"ce": "Q_strip / Q_plate per cycle (magnitudes)", "charge_unit": charge_unit},
    )


def _reason(r: Any) -> str:
    """End reasons may come as labctl.steps.EndReason members or plain strings."""
    return str(getattr(r, "value", r))


@dataclass(frozen=True, eq=False)
class CCStep:
    """One galvanostatic step of a Li‖Cu sequence, for the short check (V in volts, t in s)."""

    label: str
    t: np.ndarray
    V: np.ndarray
    end_reason: str
    bare_start: bool = False  # plating onto a bare host: a nucleation spike opens the trace
    to_cutoff: bool = False  # a strip meant to end on the voltage cutoff


def li_cu_short_evidence(steps: Sequence[CCStep], *, fall_fraction: float = 0.5) -> list[str]:
    """Reasons to believe a Li‖Cu cell shorted during the sequence (empty: none seen).

    A filament across the electrolyte carries current in parallel with the cell, so (a) |V|
    falls suddenly within a step and stays down, (b) a later step at the same current runs
    at a |V| far below the earlier ones, or (c) a strip meant to end on the voltage cutoff
    never reaches it: the short holds |V| near I·R_short once the plated lithium is gone (or,
    with a partial short, strips far more charge than was plated). Platings onto bare Cu are
    judged only after their nucleation spike has relaxed (the spike's relaxation is a fall).
    ``fall_fraction`` is the fall (a) and (b) need.
    """
    from labctl.analysis.ccd import CCDThresholds, persistent_fall  # one-way: ccd knows nothing of CE

    th = CCDThresholds(fall_fraction=fall_fraction)
    reasons: list[str] = []
    ref_level: float | None = None
    ref_label = ""
    for st in steps:
        t = np.asarray(st.t, dtype=float)
        x = np.abs(np.asarray(st.V, dtype=float))
        if t.size < th.min_samples:
            continue
        reason = _reason(st.end_reason)
        if st.to_cutoff and reason not in VOLTAGE_CUTOFF_END_REASONS:
            reasons.append(
                f"'{st.label}' ended by {reason!r} without reaching the voltage cutoff (|V| at the end "
                f"{x[-1] * 1e3:.3g} mV): the current flows through a short (or electronic leakage), not by stripping Li"
            )
        start = 0
        if st.bare_start and t.size >= 10:
            try:
                start = int(np.searchsorted(t - t[0], nucleation_overpotential(t, st.V).conventions["plateau_time_s"]))
            except ValueError:
                start = 0
        if st.to_cutoff:  # judge a strip to the cutoff before its knee
            knee = np.flatnonzero(x > 2.0 * np.median(x))
            stop = int(knee[0]) if knee.size else x.size
        else:
            stop = x.size
        seg_t, seg_x = t[start:stop], x[start:stop]
        if seg_t.size >= th.min_samples:
            fall = persistent_fall(seg_t, seg_x, th)
            if fall is not None and fall[2]:
                k, level, _, frac = fall
                reasons.append(
                    f"'{st.label}': |V| fell suddenly by {frac:.0%} from {level * 1e3:.3g} mV at "
                    f"t = {seg_t[k] - t[0]:.4g} s and stayed down: a short"
                )
            mid = seg_x[seg_x.size // 4 : max(3 * seg_x.size // 4, seg_x.size // 4 + 1)]
            level = float(np.median(mid))
            if ref_level is not None and level < (1.0 - fall_fraction) * ref_level:
                reasons.append(
                    f"'{st.label}' ran at |V| {level * 1e3:.3g} mV, {1 - level / ref_level:.0%} below "
                    f"'{ref_label}' ({ref_level * 1e3:.3g} mV) at the same current: a short"
                )
            if ref_level is None or level > ref_level:
                ref_level, ref_label = level, st.label
        if reasons:
            break  # the first evidence is the useful one; later steps only repeat it
    return reasons
