"""What the simulated instrument reads and when a step's limit is met.

Pure helpers for the channel loop: measurement noise on model values, the
first row of a chunk that ends the step (LimitWatcher on the measured values,
exactly as the engine would judge them, plus the same voltage/current/charge
criteria on the noise-free model), and the exact crossing time between two
samples (bisection on the model, or interpolation when the segment is only
known at its samples).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from drivers.sim.params import SimParams
from drivers.sim.segments import Segment, Trace
from labctl.limits import LimitWatcher
from labctl.steps import SAMPLE_DTYPE, SPECTRUM_DTYPE, EndReason, Limits, SetTemperature

#: Current-noise floor (A rms) while the output is on.
CURRENT_NOISE_FLOOR = 1e-10

#: An extra end criterion: (block, taus) -> (row, reason) or None.
ExtraCheck = Callable[[np.ndarray, np.ndarray], "tuple[int, EndReason] | None"]

_MODEL_REASONS = (EndReason.VOLTAGE_ABOVE, EndReason.VOLTAGE_BELOW, EndReason.CURRENT_BELOW, EndReason.CHARGE)


def measure(t: np.ndarray, clean: Trace, rng: np.random.Generator, p: SimParams, powered: bool) -> np.ndarray:
    """The instrument's readings: model values plus seeded Gaussian noise.

    At open circuit the current is exactly zero (the output relay is open).
    The charge is the instrument's integral of its set/measured current, so
    it carries no noise of its own.
    """
    z = rng.standard_normal((t.size, 3))
    block = np.empty(t.size, dtype=SAMPLE_DTYPE)
    for name in SAMPLE_DTYPE.names:
        block[name] = np.nan
    block["t"] = t
    block["E"] = clean.E + p.noise_v * z[:, 0]
    block["I"] = clean.I + (p.noise_i * np.abs(clean.I) + CURRENT_NOISE_FLOOR) * z[:, 1] if powered else 0.0
    block["Q"] = clean.Q
    block["T"] = clean.T + p.noise_t * z[:, 2]
    return block


def set_row(block: np.ndarray, i: int, t: float, tr: Trace) -> None:
    """Overwrite row ``i`` of a sample block with noise-free values."""
    for name, value in (("t", t), ("E", tr.E[0]), ("I", tr.I[0]), ("Q", tr.Q[0]), ("T", tr.T[0])):
        block[name][i] = value


def spectrum_row(**values: float) -> np.ndarray:
    """One SPECTRUM_DTYPE row filled by field name (fields the dtype lacks are dropped)."""
    row = np.empty(1, dtype=SPECTRUM_DTYPE)
    for name in SPECTRUM_DTYPE.names:
        row[name] = values.get(name, np.nan)
    return row


def row_of(tr: Trace, i: int) -> Trace:
    return Trace(tr.E[i : i + 1], tr.I[i : i + 1], tr.Q[i : i + 1], tr.T[i : i + 1])


def threshold(reason: EndReason, limits: Limits) -> float | None:
    return {
        EndReason.VOLTAGE_ABOVE: limits.voltage_above,
        EndReason.VOLTAGE_BELOW: limits.voltage_below,
        EndReason.CURRENT_BELOW: limits.current_below,
        EndReason.CHARGE: limits.max_charge,
    }[reason]


def criterion(reason: EndReason, value: float) -> Callable[[Trace], np.ndarray]:
    """Row mask where the noise-free trace meets a limit (same sense as LimitWatcher)."""
    if reason is EndReason.VOLTAGE_ABOVE:
        return lambda tr: np.greater_equal(tr.E, value)
    if reason is EndReason.VOLTAGE_BELOW:
        return lambda tr: np.less_equal(tr.E, value)
    if reason is EndReason.CURRENT_BELOW:
        return lambda tr: np.less_equal(np.abs(tr.I), value)
    return lambda tr: np.greater_equal(np.abs(tr.Q), value)


def first_end(
    watcher: LimitWatcher,
    limits: Limits,
    block: np.ndarray,
    clean: Trace,
    taus: np.ndarray,
    extra: ExtraCheck | None = None,
) -> tuple[int, EndReason, bool] | None:
    """First row ending the step: (row, reason, refine) with refine True for a model crossing.

    A model crossing wins ties, so a cutoff met by the model and by the reading
    in the same row is placed at the exact crossing time.
    """
    candidates: list[tuple[int, int, EndReason, bool]] = []
    for order, reason in enumerate(_MODEL_REASONS):
        value = threshold(reason, limits)
        if value is None:
            continue
        hits = np.flatnonzero(criterion(reason, value)(clean))
        if hits.size:
            candidates.append((int(hits[0]), order, reason, True))
    hit = watcher.check(block)
    if hit is not None:
        candidates.append((hit[0], 10, hit[1], False))
    if extra is not None:
        more = extra(block, taus)
        if more is not None:
            candidates.append((more[0], 11, more[1], False))
    if not candidates:
        return None
    row, _, reason, refine = min(candidates, key=lambda c: (c[0], c[1]))
    return row, reason, refine


def crossing(
    seg: Segment,
    offset: float,
    q_off: float,
    reason: EndReason,
    limits: Limits,
    lo: float,
    lo_tr: Trace,
    hi: float,
    hi_tr: Trace,
) -> tuple[float, Trace]:
    """Time (and values) where the model meets the limit between two samples.

    Exact segments are bisected to ~1e-13 relative time, so a charge limit is
    met to machine precision and a voltage cutoff at the true crossing.
    Sampled-only segments interpolate linearly (exact for their piecewise-
    constant current, hence for charge).
    """
    value = threshold(reason, limits)
    assert value is not None
    if not seg.exact:
        key = {
            EndReason.VOLTAGE_ABOVE: "E",
            EndReason.VOLTAGE_BELOW: "E",
            EndReason.CURRENT_BELOW: "I",
            EndReason.CHARGE: "Q",
        }[reason]
        a, b = float(getattr(lo_tr, key)[0]), float(getattr(hi_tr, key)[0])
        if key != "E":
            a, b = abs(a), abs(b)
        frac = 1.0 if b == a else min(max((value - a) / (b - a), 0.0), 1.0)
        mix = {
            k: np.array([getattr(lo_tr, k)[0] + frac * (getattr(hi_tr, k)[0] - getattr(lo_tr, k)[0])])
            for k in ("E", "I", "Q", "T")
        }
        return lo + frac * (hi - lo), Trace(**mix)
    test = criterion(reason, value)
    for _ in range(200):
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
        mid = 0.5 * (lo + hi)
        tr = seg.eval(np.array([offset + mid]))
        tr.Q = tr.Q - q_off
        if test(tr)[0]:
            hi, hi_tr = mid, tr
        else:
            lo = mid
    return hi, hi_tr


def stability_check(step: SetTemperature) -> ExtraCheck:
    """TEMPERATURE_STABLE at the first reading that has stayed within tolerance for settle_time."""
    carry: list[float | None] = [None]  # run time the present in-tolerance streak began

    def check(block: np.ndarray, taus: np.ndarray) -> tuple[int, EndReason] | None:
        t = block["t"]
        inside = np.abs(block["T"] - step.celsius) <= step.tolerance
        idx = np.arange(t.size)
        last_out = np.maximum.accumulate(np.where(inside, -1, idx))
        start = t[np.minimum(last_out + 1, t.size - 1)]
        if carry[0] is not None:
            start = np.where(last_out < 0, carry[0], start)
        hits = np.flatnonzero(inside & (t - start >= step.settle_time))
        carry[0] = float(start[-1]) if inside[-1] else None
        if hits.size:
            return int(hits[0]), EndReason.TEMPERATURE_STABLE
        return None

    return check
