"""Critical current density (CCD) from galvanostatic plating/stripping half-cycles.

A Li|SE|Li cell is cycled at rising current density until lithium filaments short it. Each
half-cycle is classified from its voltage trace (the polarity alternates, so |V| is used):

- ``"hard_short"``: |V| collapses within the half-cycle and stays collapsed, quietly: it
  ends below ``hard_short_V`` (a few mV) after having been at least ``hard_min_peak_factor``
  times higher, or it falls by more than ``hard_drop_fraction`` (90 %) from its running
  maximum, and the collapsed part does not flicker. An instrument end reason
  ``"short_circuit"`` is a hard short whatever the trace.
- ``"soft_short"``: a sustained fall of |V| (end level at least ``soft_drop_fraction`` below
  the running maximum, or a collapse as above) with flicker: the robust sample-to-sample
  scatter of |V| after its maximum is at least ``soft_noise_rel`` of that maximum
  (intermittent, partial contacts through the separator). A smooth, quiet decline (interface
  conditioning) is *not* a soft short. Noise is scaled by the maximum, not by the collapsed
  level, so a metallic short's residual millivolt noise does not look like flicker.
- ``"contact_loss"``: |V| rising to a voltage cutoff (end reason ``voltage_above``/
  ``voltage_below``/``compliance``) while at its maximum: voids at the stripping interface.
  This ends a test but is **not** a short, so it never defines a CCD. A half-cycle
  that reaches the cutoff with fewer than ``min_samples`` samples (a resistive cell at
  a long sampling period) is contact loss too, with "too few samples" in its reason;
  too few samples without a cutoff or short end reason cannot be judged (ValueError).
- ``"normal"``: anything else.

The CCD is the current density of the first half-cycle classified as a short; the last
passed current density is the highest one among normal half-cycles before it. If contact
loss comes first, no CCD is reported (the cell failed otherwise; the CCD is only bounded
below by ``last_passed_mA_cm2``). All thresholds live in :class:`CCDThresholds` and are
recorded with the result, because the CCD depends on them as much as on the protocol.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labctl.jsonable import to_jsonable

StepKind = Literal["normal", "hard_short", "soft_short", "contact_loss"]
FailureKind = Literal["hard", "soft", "none"]

#: End reasons (labctl.steps.EndReason values) meaning "the voltage ran into a cutoff".
CUTOFF_END_REASONS: frozenset[str] = frozenset({"voltage_above", "voltage_below", "compliance", "safety_limit"})
SHORT_END_REASONS: frozenset[str] = frozenset({"short_circuit"})


@dataclass(frozen=True, eq=False)
class HalfCycle:
    """One galvanostatic half-cycle: current density (mA/cm², sign ignored), t (s), V (V)."""

    current_density_mA_cm2: float
    t: np.ndarray
    V: np.ndarray
    end_reason: str = "completed"


@dataclass(frozen=True)
class CCDThresholds:
    """Classification thresholds (all settable; recorded with every result)."""

    hard_short_V: float = 0.005
    hard_min_peak_factor: float = 2.0
    hard_drop_fraction: float = 0.9
    soft_drop_fraction: float = 0.3
    soft_noise_rel: float = 0.005
    contact_loss_rise_fraction: float = 0.95
    end_window_fraction: float = 0.05
    min_samples: int = 5


@dataclass(frozen=True)
class HalfCycleClass:
    """Classification of one half-cycle and the numbers behind it.

    ``drop_fraction`` = 1 − end |V| / max |V|; ``rel_noise`` = robust scatter of |V| after
    its maximum / max |V|; ``event_time_s`` (from the half-cycle start) is the collapse onset
    for shorts and the cutoff time for contact loss.
    """

    index: int
    current_density_mA_cm2: float
    kind: str
    end_reason: str
    peak_abs_V: float
    end_abs_V: float
    drop_fraction: float
    rel_noise: float
    event_time_s: float | None
    reason: str


@dataclass(frozen=True)
class CCDResult:
    """CCD (mA/cm², None when no short occurred) and the per-half-cycle classifications."""

    ccd_mA_cm2: float | None
    last_passed_mA_cm2: float | None
    failure_kind: str
    failure_index: int | None
    contact_loss_index: int | None
    steps: tuple[HalfCycleClass, ...]
    conventions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def classify_half_cycle(
    half_cycle: HalfCycle | Mapping[str, Any], index: int = 0, thresholds: CCDThresholds | None = None
) -> HalfCycleClass:
    """Classify one half-cycle (see the module docstring for the rules)."""
    th = thresholds or CCDThresholds()
    hc = _coerce(half_cycle, index)
    t = np.asarray(hc.t, dtype=float)
    a = np.abs(np.asarray(hc.V, dtype=float))
    if t.ndim != 1 or a.ndim != 1 or t.size != a.size:
        raise ValueError(f"half-cycle {index}: t and V must be 1-D arrays of equal length")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise ValueError(f"half-cycle {index}: t or V contains NaN or infinite values")
    j = abs(float(hc.current_density_mA_cm2))
    reason_in = str(getattr(hc.end_reason, "value", hc.end_reason))
    if t.size < th.min_samples:
        return _judged_by_end_reason(index, j, reason_in, t, a, th)

    run_max = np.maximum.accumulate(a)
    peak = float(run_max[-1])
    n_end = max(th.min_samples, math.ceil(th.end_window_fraction * a.size))
    end_level = float(np.median(a[-n_end:]))
    drop = 1.0 - end_level / peak if peak > 0 else 0.0
    i_peak = int(np.argmax(a))
    rel_noise = _scatter(a[i_peak:]) / peak if a.size - i_peak >= th.min_samples and peak > 0 else 0.0

    def make(kind: str, why: str, event: float | None = None) -> HalfCycleClass:
        return HalfCycleClass(index, j, kind, reason_in, peak, end_level, float(drop), float(rel_noise), event, why)

    if reason_in in SHORT_END_REASONS:
        return make("hard_short", f"end reason {reason_in!r} reported by the instrument", float(t[-1] - t[0]))

    # Hard short: collapse to a few mV (from a clearly higher level), or a >90 % drop, that
    # persists to the end of the half-cycle.
    collapsed = (a < th.hard_short_V) & (run_max >= th.hard_min_peak_factor * th.hard_short_V)
    collapsed |= a < (1.0 - th.hard_drop_fraction) * run_max
    end_collapsed = (end_level < th.hard_short_V and peak >= th.hard_min_peak_factor * th.hard_short_V) or (
        drop > th.hard_drop_fraction
    )
    if end_collapsed and np.any(collapsed):
        k = _collapse_start(collapsed)
        post_noise = _scatter(a[k:]) / peak if a.size - k >= th.min_samples else 0.0
        if post_noise >= th.soft_noise_rel:  # collapsed, but flickering: partial contacts
            return make(
                "soft_short",
                f"|V| fell {drop:.0%} to {end_level * 1e3:.3g} mV with {post_noise:.1%} flicker "
                "(relative to the maximum)",
                float(t[k] - t[0]),
            )
        return make(
            "hard_short",
            f"|V| collapsed from {peak * 1e3:.3g} mV to {end_level * 1e3:.3g} mV (drop {drop:.0%}) and stayed there",
            float(t[k] - t[0]),
        )

    # Contact loss: |V| at its maximum when a voltage cutoff ended the step.
    if reason_in in CUTOFF_END_REASONS and a[-1] >= th.contact_loss_rise_fraction * peak:
        return make(
            "contact_loss",
            f"|V| rose to the cutoff ({reason_in!r}); rising, not a short",
            float(t[-1] - t[0]),
        )

    # Soft short: a sustained, noisy fall from the maximum.
    if drop >= th.soft_drop_fraction and rel_noise >= th.soft_noise_rel:
        return make(
            "soft_short",
            f"|V| fell {drop:.0%} from its maximum with {rel_noise:.1%} relative noise",
            float(t[i_peak] - t[0]),
        )
    return make("normal", "no collapse, no noisy fall, no cutoff")


def critical_current_density(
    half_cycles: Sequence[HalfCycle | Mapping[str, Any]], thresholds: CCDThresholds | None = None
) -> CCDResult:
    """CCD from the half-cycles in the order they were run.

    Every half-cycle is classified; the evaluation stops at the first short (CCD) or the
    first contact loss (no CCD). Raises ValueError for an empty sequence or a bad record.
    """
    if len(half_cycles) == 0:
        raise ValueError("half_cycles is empty")
    th = thresholds or CCDThresholds()
    steps = tuple(classify_half_cycle(hc, i, th) for i, hc in enumerate(half_cycles))
    ccd = fail_idx = contact_idx = None
    kind: FailureKind = "none"
    failed_at: float | None = None
    for s in steps:
        if s.kind in ("hard_short", "soft_short"):
            ccd, fail_idx = s.current_density_mA_cm2, s.index
            kind = "hard" if s.kind == "hard_short" else "soft"
        elif s.kind == "contact_loss":
            contact_idx = s.index
        else:
            continue
        failed_at = s.current_density_mA_cm2
        break
    # A current density is passed only when every half-cycle run at it was normal: a
    # plating half that passed before the stripping half shorted does not count.
    evaluated = steps if failed_at is None else steps[: (fail_idx if fail_idx is not None else contact_idx)]
    passed = [s.current_density_mA_cm2 for s in evaluated if failed_at is None or s.current_density_mA_cm2 < failed_at]
    last_passed = max(passed) if passed else None
    return CCDResult(
        ccd_mA_cm2=ccd,
        last_passed_mA_cm2=last_passed,
        failure_kind=kind,
        failure_index=fail_idx,
        contact_loss_index=contact_idx,
        steps=steps,
        conventions={
            "ccd": "current density of the first half-cycle classified as a short (hard or soft)",
            "last_passed": "highest current density all of whose half-cycles were normal, below the failing one",
            "contact_loss": "rising |V| to a cutoff; ends the evaluation without a CCD",
            "thresholds": dataclasses.asdict(th),
            "rel_noise": "robust std of successive |V| differences / sqrt(2), after the maximum, "
            "divided by the maximum |V|",
        },
    )


# --------------------------------------------------------------------------- internals


def _judged_by_end_reason(
    index: int, j: float, reason_in: str, t: np.ndarray, a: np.ndarray, th: CCDThresholds
) -> HalfCycleClass:
    """A half-cycle too short to judge its trace, classified by how it ended.

    A resistive cell (or one that lost contact) reaches the voltage cutoff within
    a few samples: that is contact loss, not a short, and it ends the test. The
    instrument's own short detection still counts. Anything else cannot be
    judged and is refused, as before.
    """
    samples = "1 sample" if t.size == 1 else f"{t.size} samples"
    few = f"only {samples} (fewer than {th.min_samples}): too few to judge the trace"
    peak = float(a.max()) if a.size else math.nan
    end = float(a[-1]) if a.size else math.nan
    event = float(t[-1] - t[0]) if t.size else 0.0
    if reason_in in SHORT_END_REASONS:
        kind, why = "hard_short", f"end reason {reason_in!r} reported by the instrument after {few}"
    elif reason_in in CUTOFF_END_REASONS:
        kind = "contact_loss"
        why = f"|V| reached the cutoff ({reason_in!r}) after {few}; a resistive cell or lost contact, not a short"
    else:
        raise ValueError(f"half-cycle {index}: needs at least {th.min_samples} samples, got {t.size}")
    drop = 1.0 - end / peak if peak > 0 else 0.0
    return HalfCycleClass(index, j, kind, reason_in, peak, end, drop, 0.0, event, why)


def _coerce(hc: HalfCycle | Mapping[str, Any], index: int) -> HalfCycle:
    if isinstance(hc, HalfCycle):
        return hc
    if isinstance(hc, Mapping):
        try:
            j = hc["current_density_mA_cm2"] if "current_density_mA_cm2" in hc else hc["j"]
            return HalfCycle(float(j), hc["t"], hc["V"], hc.get("end_reason", "completed"))
        except KeyError as exc:
            raise ValueError(f"half-cycle {index}: missing key {exc.args[0]!r}") from None
    raise ValueError(f"half-cycle {index}: expected HalfCycle or mapping, got {type(hc).__name__}")


def _scatter(a: np.ndarray) -> float:
    """Robust sample-to-sample scatter (V): insensitive to slow trends and to single steps."""
    if a.size < 3:
        return 0.0
    d = np.diff(a)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)


def _collapse_start(cond: np.ndarray, persist: float = 0.9) -> int:
    """First index where ``cond`` holds and keeps holding for >= ``persist`` of the rest (noise-tolerant)."""
    n_rest = np.arange(cond.size, 0, -1)
    suffix_frac = np.cumsum(cond[::-1])[::-1] / n_rest
    idx = np.flatnonzero(cond & (suffix_frac >= persist))
    return int(idx[0]) if idx.size else int(np.flatnonzero(cond)[-1])
