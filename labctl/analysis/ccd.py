"""Critical current density (CCD) from galvanostatic plating/stripping half-cycles.

A Li|SE|Li cell is cycled at rising current density until lithium filaments short it. A
short is a conducting path *in parallel* with the electrolyte, so whatever its resistance it
lowers |V| below what the cell would show without it. Each half-cycle (|V| is used; the
polarity alternates) is therefore judged against two references:

1. **What the earlier half-cycles predict.** The peak |V| of the earlier normal half-cycles
   of the same polarity (each begun, like this one, right after a reversal) is fitted, as a
   function of j, by V(j) = R·j + 2b·asinh(j/(2·j0)) (ohmic + symmetric Butler–Volmer at two
   interfaces, b = RT/F; the fit is on R ≥ 0 and j0 only) and kept between the monotone
   bound V(j_prev) and the ohmic bound V(j_prev)·j/j_prev. At a current density already run
   the prediction is that half-cycle's value. A half-cycle whose peak |V| is more than
   ``fall_fraction`` below the prediction, and whose first ``start_samples`` samples are
   already low too, **starts shorted**: the short formed before it began, i.e. during the previous
   half-cycle (no current flows between half-cycles, and filaments grow only with current),
   so the CCD is the previous half-cycle's j. This is what catches a short that forms in the
   last seconds of a capacity-limited half-cycle, and a partial short through tens of Ω.
2. **Its own history.** A fall of more than ``fall_fraction`` below the running maximum
   that happens within ``sudden_window_s`` and persists to the end (``persist`` of the
   samples) is a short at any point of the half-cycle; so is a collapse to a few mV
   (``hard_short_V``) or by more than ``hard_drop_fraction``, however fast. A smooth, quiet
   decline (interface conditioning) is neither sudden nor noisy and stays normal.

A short is **soft** when the trace after its onset flickers (roughness of ``flicker_bin_s``
bin medians ≥ max(``soft_noise_rel``, ``noise_factor`` × that of the earlier normal
half-cycles), relative to the level before the short), else **hard**. A noisy fall of
``soft_drop_fraction`` from the maximum is a soft short even when slow. An instrument end
reason ``"short_circuit"`` is a hard short.

``"contact_loss"``: |V| rising to a voltage cutoff (end reason ``voltage_above``/
``voltage_below``/``compliance``) while at its maximum: voids at the stripping interface. It
ends the evaluation but is **not** a short, so it never defines a CCD (the result is then
invalid, with ``last_passed_mA_cm2`` as a lower bound).

The CCD is the current density of the half-cycle in which the short formed; the last passed
current density is the highest one below it all of whose half-cycles were normal. Every
judged half-cycle records its evidence (rule, observed and predicted |V|, fall, threshold).
Thresholds live in :class:`CCDThresholds` and are recorded with the result. Detection limit:
a short path of resistance R_sh lowers |V| by R_cell/(R_sh + R_cell); paths above
~(1 − f)/f·R_cell (f = ``fall_fraction``) are below the detection threshold, said in a warning.
"""

from __future__ import annotations

import dataclasses
import itertools
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
#: RT/F at 25 °C (V): the Butler–Volmer scale of the prediction.
THERMAL_VOLTAGE_25C = 0.025693


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

    fall_fraction: float = 0.2
    sudden_window_s: float = 60.0
    persist: float = 0.9
    start_samples: int = 3
    hard_short_V: float = 0.005
    hard_min_peak_factor: float = 2.0
    hard_drop_fraction: float = 0.9
    soft_drop_fraction: float = 0.1
    soft_noise_rel: float = 0.002
    noise_factor: float = 5.0
    flicker_bin_s: float = 10.0
    significance: float = 10.0
    contact_loss_rise_fraction: float = 0.95
    end_window_fraction: float = 0.05
    min_samples: int = 5
    thermal_voltage_V: float = THERMAL_VOLTAGE_25C


@dataclass(frozen=True)
class HalfCycleClass:
    """Classification of one half-cycle and the numbers behind it.

    ``start_abs_V`` = early |V|; ``predicted_V`` = the peak |V| the earlier normal half-cycles
    predict for it (None without history); ``drop_fraction`` = 1 − end |V| / max |V|;
    ``rel_noise`` = robust scatter of |V| after its maximum / max |V|; ``event_time_s``
    (from the half-cycle start) is the collapse onset for shorts and the cutoff time for
    contact loss; ``formed_in`` is the index of the half-cycle in which a short formed (the
    previous one when this one starts shorted); ``evidence`` holds the rule that fired and
    its numbers.
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
    start_abs_V: float = math.nan
    predicted_V: float | None = None
    formed_in: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


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
    detected_index: int | None = None
    valid: bool = True
    reason: str = ""
    warnings: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class _Features:
    t: np.ndarray
    a: np.ndarray
    start: float
    peak: float
    end_level: float
    drop: float
    rel_noise: float
    i_peak: int
    sigma: float  # measurement noise (robust sample-to-sample scatter), V
    white_flicker: float  # the flicker white noise of that size shows, V


class CCDDetector:
    """Classifies half-cycles one at a time, each against the normal ones before it.

    Keeps only a few numbers per half-cycle (never the traces), so a protocol can feed it
    as it runs and stop at the first failure.
    """

    def __init__(self, thresholds: CCDThresholds | None = None) -> None:
        self.th = thresholds or CCDThresholds()
        self.steps: list[HalfCycleClass] = []
        self._normal: list[tuple[float, float, float, int, int]] = []  # (j, peak |V|, noise, polarity, index)
        self._early: dict[int, float] = {}  # index -> early V along the polarity

    # --- prediction --------------------------------------------------------------
    def predict(self, j: float, polarity: int) -> tuple[float | None, str]:
        """Peak |V| the earlier normal half-cycles of the same polarity predict at ``j``.

        Only half-cycles that began, like this one, right after a reversal count (not the
        first, which began from rest: no stored concentration polarisation opposing it).
        None without any such half-cycle at or below ``j``.
        """
        ref = [(jj, v) for jj, v, _, pol, idx in self._normal if pol == polarity and idx > 0 and jj <= j * (1 + 1e-9)]
        if not ref:
            return None, "no earlier normal half-cycle of this polarity at or below this current density"
        same = [v for jj, v in ref if math.isclose(jj, j, rel_tol=1e-9)]
        if same:
            return float(same[-1]), "the earlier half-cycle at the same current density"
        j_ref = max(jj for jj, _ in ref)
        v_ref = [v for jj, v in ref if jj == j_ref][-1]
        distinct = sorted({jj for jj, _ in ref})
        if len(distinct) < 2:
            return float(v_ref), f"monotone bound: |V|({j:g}) >= |V|({j_ref:g} mA/cm²)"
        js = np.array([jj for jj, _ in ref])
        vs = np.array([v for _, v in ref])
        fit = _fit_ohmic_kinetic(js, vs, self.th.thermal_voltage_V)
        predicted = min(max(float(fit(j)), float(v_ref)), float(v_ref) * j / j_ref)
        return predicted, "ohmic + asinh fit of the earlier half-cycles (between the monotone and ohmic bounds)"

    def predict_early(self, j: float, polarity: int, predicted_peak: float) -> float | None:
        """Early V (along the polarity) expected: the latest same-series reference, scaled like its peak."""
        ref = [
            (jj, v, idx) for jj, v, _, pol, idx in self._normal if pol == polarity and idx > 0 and jj <= j * (1 + 1e-9)
        ]
        if not ref:
            return None
        _, v_ref, idx = max(ref, key=lambda r: (r[0], r[2]))
        early = self._early.get(idx, math.nan)
        return early * predicted_peak / v_ref if v_ref > 0 and math.isfinite(early) else None

    def baseline_noise(self) -> float:
        noise = [n for _, _, n, _, _ in self._normal]
        return float(np.median(noise)) if noise else 0.0

    # --- classification ------------------------------------------------------------
    def add(self, half_cycle: HalfCycle | Mapping[str, Any]) -> HalfCycleClass:
        index = len(self.steps)
        c = self._classify(half_cycle, index)
        self.steps.append(c)
        if c.kind == "normal" and math.isfinite(c.peak_abs_V):
            polarity = int(c.evidence.get("polarity", 0))
            self._normal.append((c.current_density_mA_cm2, c.peak_abs_V, c.rel_noise, polarity, index))
            self._early[index] = float(c.evidence.get("early_V", math.nan))
        return c

    def _classify(self, half_cycle: HalfCycle | Mapping[str, Any], index: int) -> HalfCycleClass:
        th = self.th
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
        f = _features(t, a, th)
        v_signed = np.asarray(hc.V, dtype=float)
        polarity = 1 if float(np.median(v_signed)) >= 0 else -1
        predicted, basis = self.predict(j, polarity)
        early_v = float(np.median(v_signed[: max(1, min(th.start_samples, v_signed.size))])) * polarity
        early_pred = self.predict_early(j, polarity, predicted) if predicted is not None else None
        noise_limit = max(th.soft_noise_rel, th.noise_factor * self.baseline_noise())
        if f.peak > 0:  # and well above what the measurement noise alone shows
            noise_limit = max(noise_limit, th.noise_factor * f.white_flicker / f.peak)
        significant = th.significance * f.sigma  # a fall must exceed this many noise σ (V)

        def make(kind: str, why: str, event: float | None = None, **extra: Any) -> HalfCycleClass:
            formed_in = extra.pop("formed_in", index if kind.endswith("short") else None)
            evidence = {
                "polarity": polarity,
                "early_V": early_v,
                "predicted_early_V": early_pred,
                "observed_peak_V": f.peak,
                "predicted_V": predicted,
                "prediction": basis,
                "fall_threshold": th.fall_fraction,
                "noise_threshold": noise_limit,
                "kind_judged": judged[0],
                **extra,
            }
            return HalfCycleClass(
                index, j, kind, reason_in, f.peak, f.end_level, float(f.drop), float(f.rel_noise), event, why,
                f.start, predicted, formed_in, evidence,
            )  # fmt: skip

        judged = [True]

        def kind_by_flicker(scatter_from: int, scale: float) -> tuple[str, float]:
            # Flicker is judged once the fall has settled (half the sudden window after its
            # onset): the collapse itself is a fast trend, not noise.
            settled = np.flatnonzero(t >= t[scatter_from] + th.sudden_window_s / 2.0)
            start = int(settled[0]) if settled.size >= th.min_samples else scatter_from
            noise = _flicker(t[start:], a[start:], th) / scale if scale > 0 else 0.0
            judged[0] = float(t[-1] - t[start]) >= 5 * th.flicker_bin_s
            return ("soft_short" if noise >= noise_limit else "hard_short"), float(noise)

        if reason_in in SHORT_END_REASONS:
            return make("hard_short", f"end reason {reason_in!r} reported by the instrument", float(t[-1] - t[0]))

        # 1. Started shorted: never reached what the earlier half-cycles predict.
        low_early = early_pred is None or early_v < early_pred - th.fall_fraction * predicted
        if (
            predicted is not None
            and f.peak < (1.0 - th.fall_fraction) * predicted
            and predicted - f.peak > significant
            and low_early
        ):
            kind, noise = kind_by_flicker(f.i_peak, predicted)
            ratio = f.peak / predicted
            prev = index - 1 if index > 0 else index
            return make(
                kind,
                f"started shorted: peak |V| {f.peak * 1e3:.4g} mV is {1 - ratio:.0%} below the predicted "
                f"{predicted * 1e3:.4g} mV ({basis}); the short formed during half-cycle {prev}",
                0.0,
                rule="started_shorted",
                ratio=ratio,
                flicker=noise,
                formed_in=prev,
            )

        # 2. A fall at some point of this half-cycle that persists to its end.
        fall = persistent_fall(t, a, th)
        if fall is not None:
            k, level_before, sudden, fall_frac = fall
            collapsed = (f.end_level < th.hard_short_V and f.peak >= th.hard_min_peak_factor * th.hard_short_V) or (
                f.drop > th.hard_drop_fraction
            )
            if (sudden or collapsed) and level_before * fall_frac > significant:
                kind, noise = kind_by_flicker(k, level_before)
                what = "sudden fall" if sudden else "collapse"
                return make(
                    kind,
                    f"{what}: |V| fell {fall_frac:.0%} from {level_before * 1e3:.4g} mV at t = {t[k] - t[0]:.4g} s "
                    f"to a median {level_before * (1 - fall_frac) * 1e3:.4g} mV after it"
                    + (" with flicker" if kind == "soft_short" else " and stayed there"),
                    float(t[k] - t[0]),
                    rule="sudden_fall" if sudden else "collapse",
                    level_before_V=level_before,
                    fall=fall_frac,
                    flicker=noise,
                )

        if predicted is not None and f.peak < (1.0 - th.fall_fraction) * predicted and predicted - f.peak > significant:
            kind, noise = kind_by_flicker(f.i_peak, predicted)
            return make(
                kind,
                f"started normally (early V {early_v * 1e3:.4g} mV) but its peak |V| {f.peak * 1e3:.4g} mV stayed "
                f"{1 - f.peak / predicted:.0%} below the predicted {predicted * 1e3:.4g} mV: shorted early in it",
                float(t[f.i_peak] - t[0]),
                rule="below_prediction",
                flicker=noise,
            )

        # 3. Contact loss: |V| at its maximum when a voltage cutoff ended the step.
        if reason_in in CUTOFF_END_REASONS and a[-1] >= th.contact_loss_rise_fraction * f.peak:
            return make(
                "contact_loss", f"|V| rose to the cutoff ({reason_in!r}); rising, not a short", float(t[-1] - t[0])
            )

        # 4. Soft short: a noisy fall from the maximum (slow), or an end below the prediction.
        below_prediction = predicted is not None and f.end_level < (1.0 - th.soft_drop_fraction) * predicted
        if (
            (f.drop >= th.soft_drop_fraction or below_prediction)
            and f.peak - f.end_level > significant
            and f.rel_noise >= noise_limit
        ):
            return make(
                "soft_short",
                f"|V| fell {f.drop:.0%} from its maximum with {f.rel_noise:.2%} flicker (threshold {noise_limit:.2%})",
                float(t[f.i_peak] - t[0]),
                rule="noisy_fall",
                flicker=f.rel_noise,
            )
        return make("normal", "no fall below the prediction, no persistent fall, no cutoff")


def classify_half_cycle(
    half_cycle: HalfCycle | Mapping[str, Any], index: int = 0, thresholds: CCDThresholds | None = None
) -> HalfCycleClass:
    """Classify one half-cycle on its own (no earlier half-cycles to predict from)."""
    return CCDDetector(thresholds)._classify(half_cycle, index)


def critical_current_density(
    half_cycles: Sequence[HalfCycle | Mapping[str, Any]], thresholds: CCDThresholds | None = None
) -> CCDResult:
    """CCD from the half-cycles in the order they were run.

    Half-cycles are classified in order, each against the normal ones before it; the
    evaluation stops at the first short (CCD) or the first contact loss (no CCD). Raises
    ValueError for an empty sequence or a bad record.
    """
    if len(half_cycles) == 0:
        raise ValueError("half_cycles is empty")
    det = CCDDetector(thresholds)
    for hc in half_cycles:
        if det.add(hc).kind != "normal":
            break
    return summarise(det)


def summarise(det: CCDDetector) -> CCDResult:
    """The CCD result from a detector's classified half-cycles."""
    th = det.th
    steps = tuple(det.steps)
    ended = next((s for s in steps if s.kind != "normal"), None)
    ccd = fail_idx = contact_idx = detected = None
    kind: FailureKind = "none"
    warnings: list[str] = []
    valid, reason = True, ""
    evidence: dict[str, Any] = {}
    stop_at = len(steps)
    if ended is not None and ended.kind in ("hard_short", "soft_short"):
        formed = ended.formed_in if ended.formed_in is not None else ended.index
        ccd = steps[formed].current_density_mA_cm2
        fail_idx, detected, stop_at = formed, ended.index, formed
        kind = "hard" if ended.kind == "hard_short" else "soft"
        evidence = {"half_cycle": ended.index, "formed_in": formed, "reason": ended.reason, **ended.evidence}
        if formed != ended.index and not math.isclose(ccd, ended.current_density_mA_cm2):
            warnings.append(
                f"half-cycle {ended.index} ({ended.current_density_mA_cm2:g} mA/cm²) started shorted: the short formed "
                f"during half-cycle {formed} at {ccd:g} mA/cm² (or, less likely, within the first sample period of "
                f"half-cycle {ended.index}); CCD between {ccd:g} and {ended.current_density_mA_cm2:g} mA/cm²"
            )
        if not ended.evidence.get("kind_judged", True):
            warnings.append(
                f"hard or soft uncertain: too little trace after the fall in half-cycle {ended.index} "
                f"(< {5 * th.flicker_bin_s:g} s) to judge flicker; reported {kind}"
            )
        if ended.formed_in == ended.index and ended.index == 0 and ended.evidence.get("rule") != "started_shorted":
            warnings.append("the first half-cycle shorted: the CCD may be below the first current density")
    elif ended is not None:  # contact loss
        contact_idx = stop_at = ended.index
        valid = False
        reason = (
            f"contact loss in half-cycle {ended.index} at {ended.current_density_mA_cm2:g} mA/cm² before any short: "
            "the CCD is not determined (only bounded below by last_passed)"
        )
    else:
        limit = (1 - th.fall_fraction) / th.fall_fraction
        warnings.append(
            f"no short detected: a short path with a resistance above ~{limit:.3g}× the cell's own resistance"
            " lowers |V| by less than the detection threshold "
            f"({th.fall_fraction:.0%}) and would pass unnoticed"
        )
    failed_at = ccd if ccd is not None else (ended.current_density_mA_cm2 if ended is not None else None)
    evaluated = steps[:stop_at]
    passed = [
        s.current_density_mA_cm2
        for s in evaluated
        if s.kind == "normal" and (failed_at is None or s.current_density_mA_cm2 < failed_at - 1e-12)
    ]
    return CCDResult(
        ccd_mA_cm2=ccd,
        last_passed_mA_cm2=max(passed) if passed else None,
        failure_kind=kind,
        failure_index=fail_idx,
        contact_loss_index=contact_idx,
        steps=steps,
        detected_index=detected,
        valid=valid,
        reason=reason,
        warnings=tuple(warnings),
        evidence=evidence,
        conventions={
            "ccd": "current density of the half-cycle in which the first short (hard or soft) formed",
            "started_shorted": "peak |V| and the first start_samples samples more than fall_fraction (of the "
            "predicted peak) below the prediction: formed in the previous half-cycle",
            "prediction": "peak |V| of earlier normal half-cycles of the same polarity (not the first, begun from "
            "rest), fitted by R*j + 2*b*asinh(j/(2*j0)), between the monotone and the ohmic bound",
            "last_passed": "highest current density all of whose half-cycles were normal, below the CCD",
            "contact_loss": "rising |V| to a cutoff; ends the evaluation without a CCD (invalid)",
            "thresholds": dataclasses.asdict(th),
            "rel_noise": "flicker: median |second difference| / sqrt(6) of flicker_bin_s bin medians, divided by "
            "the level before the short (the maximum |V|, or the prediction)",
        },
    )


# --------------------------------------------------------------------------- internals


def _features(t: np.ndarray, a: np.ndarray, th: CCDThresholds) -> _Features:
    # The peak of a 3-sample running median: single noisy samples do not make a maximum.
    smooth = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(a, 1, mode="edge"), 3), axis=1)
    peak = float(smooth.max())
    n_end = max(th.min_samples, math.ceil(th.end_window_fraction * a.size))
    end_level = float(np.median(a[-n_end:]))
    drop = 1.0 - end_level / peak if peak > 0 else 0.0
    i_peak = int(np.argmax(smooth))
    rel_noise = _flicker(t[i_peak:], a[i_peak:], th) / peak if a.size - i_peak >= th.min_samples and peak > 0 else 0.0
    start = float(np.median(a[: max(1, min(th.start_samples, a.size))]))
    # Measurement noise from the trace up to its peak (before any short); whole trace if too short.
    sigma = _scatter(a[: i_peak + 1]) if i_peak + 1 >= 4 * th.min_samples else _scatter(a)
    dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    per_bin = max(th.flicker_bin_s / dt, 3.0) if dt > 0 else 3.0
    white = 0.845 * sigma / math.sqrt(per_bin)  # flicker of white measurement noise alone
    return _Features(t, a, start, peak, end_level, float(drop), float(rel_noise), i_peak, sigma, white)


def persistent_fall(t: np.ndarray, a: np.ndarray, th: CCDThresholds) -> tuple[int, float, bool, float] | None:
    """(onset index, level before, sudden?, fall) of a fall below (1 − f)·running max that persists.

    Persists = at least ``persist`` of the samples from the onset to the end stay below, and
    at least two samples do (a fall in the last sample alone is left to the next half-cycle).
    Sudden = the level went from within f/4 of the level before to below the threshold within
    ``sudden_window_s`` (or three sample periods, whichever is longer).
    """
    run_max = np.maximum.accumulate(a)
    cond = a < (1.0 - th.fall_fraction) * run_max
    if not cond.any():
        return None
    n_rest = np.arange(cond.size, 0, -1)
    suffix = np.cumsum(cond[::-1])[::-1] / n_rest
    ok = cond & (suffix >= th.persist) & (n_rest >= 2)
    idx = np.flatnonzero(ok)
    if not idx.size:
        return None
    k = int(idx[0])
    level = float(run_max[k])
    high = np.flatnonzero(a[:k] >= (1.0 - th.fall_fraction / 4.0) * level)
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    window = max(th.sudden_window_s, 3.0 * dt)
    sudden = bool(high.size) and float(t[k] - t[int(high[-1])]) <= window
    after = float(np.median(a[k:]))
    return k, level, sudden, 1.0 - after / level if level > 0 else 0.0


def _fit_ohmic_kinetic(js: np.ndarray, vs: np.ndarray, b: float):
    """Least-squares V = R·j + 2b·asinh(j/(2·j0)), R >= 0, over a grid of j0 (same units as j)."""
    best: tuple[float, float, float] | None = None
    for j0 in np.logspace(-6, 6, 241):
        kin = 2.0 * b * np.arcsinh(js / (2.0 * j0))
        r = max(float(np.dot(vs - kin, js) / np.dot(js, js)), 0.0)
        sse = float(np.sum((vs - kin - r * js) ** 2))
        if best is None or sse < best[0]:
            best = (sse, r, float(j0))
    assert best is not None
    _, r, j0 = best
    return lambda j: r * j + 2.0 * b * math.asinh(j / (2.0 * j0))


def _judged_by_end_reason(
    index: int, j: float, reason_in: str, t: np.ndarray, a: np.ndarray, th: CCDThresholds
) -> HalfCycleClass:
    """A half-cycle too short to judge its trace, classified by how it ended.

    A resistive cell (or one that lost contact) reaches the voltage cutoff within
    a few samples: that is contact loss, not a short, and it ends the test. The
    instrument's own short detection still counts. Anything else cannot be
    judged and is refused.
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
    formed = index if kind == "hard_short" else None
    return HalfCycleClass(index, j, kind, reason_in, peak, end, drop, 0.0, event, why, formed_in=formed)


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


def _flicker(t: np.ndarray, a: np.ndarray, th: CCDThresholds) -> float:
    """Robust roughness (V) of the ``flicker_bin_s`` bin medians (second differences): partial
    contacts make and break, so |V| wobbles on a scale of seconds to minutes; a metallic short
    or a healthy cell follows a smooth trend, apart from measurement noise (reduced by the
    bin medians). Too few bins: second differences of the samples."""
    if a.size < th.min_samples:
        return 0.0
    span = float(t[-1] - t[0])
    dt = span / max(a.size - 1, 1)
    bin_s = max(th.flicker_bin_s, 3.0 * dt)
    n_bins = int(span // bin_s)
    if n_bins < 5:
        return _scatter2(a)
    edges = t[0] + bin_s * np.arange(n_bins + 1)
    idx = np.searchsorted(t, edges)
    med = np.array([np.median(a[i:k]) for i, k in itertools.pairwise(idx) if k > i])
    if med.size < 5:
        return _scatter2(a)
    d2 = np.diff(med, 2)
    return float(np.median(np.abs(d2))) / math.sqrt(6)


def _scatter2(a: np.ndarray) -> float:
    """Robust scatter (V) from second differences: blind to a steady slope."""
    if a.size < 4:
        return 0.0
    d2 = np.diff(a, 2)
    return 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6)


def _scatter(a: np.ndarray) -> float:
    """Robust sample-to-sample scatter (V): insensitive to slow trends and to single steps."""
    if a.size < 3:
        return 0.0
    d = np.diff(a)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2)


__all__ = [
    "CCDDetector",
    "CCDResult",
    "CCDThresholds",
    "HalfCycle",
    "HalfCycleClass",
    "classify_half_cycle",
    "critical_current_density",
    "persistent_fall",
]
