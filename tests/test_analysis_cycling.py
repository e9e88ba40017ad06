"""Per-cycle summaries of symmetric and full-cell galvanostatic cycling on synthetic traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.analysis.cycling import (
    Segment,
    full_cell_cycling_summary,
    group_half_cycles,
    symmetric_cycling_summary,
)


def _step(duration: float, current: float, v_of_t, dt: float = 1.0, t0: float = 0.0) -> Segment:
    t = t0 + np.arange(0.0, duration + dt / 2, dt)
    return Segment(t, v_of_t(t - t0), np.full(t.size, current))


def _symmetric(n_cycles: int, eta: float, *, growth: float = 0.0, with_rests: bool = True):
    """Plate/strip at ±0.5 mA with |V| = eta·(1 + growth·cycle) + a linear 20 % ramp in each half."""
    steps, t0 = [], 0.0
    for k in range(n_cycles):
        e = eta * (1.0 + growth * k)
        for sign in (1.0, -1.0):
            steps.append(_step(3600.0, sign * 5e-4, lambda t, e=e, s=sign: s * e * (1.0 + 0.2 * t / 3600.0), t0=t0))
            t0 += 3601.0
            if with_rests:
                steps.append(_step(600.0, 0.0, lambda t: np.zeros_like(t), t0=t0))
                t0 += 601.0
    return steps


def test_symmetric_overpotentials_and_hysteresis() -> None:
    eta = 0.020
    res = symmetric_cycling_summary(_symmetric(3, eta, growth=0.1))
    assert len(res.half_cycles) == 6  # rests skipped
    for k, hc in enumerate(res.half_cycles):
        e = eta * (1.0 + 0.1 * (k // 2))
        assert hc.mean_abs_V == pytest.approx(1.1 * e, rel=1e-6)  # mean of a 1 → 1.2 ramp
        assert hc.peak_abs_V == pytest.approx(1.2 * e, rel=1e-6)
        assert hc.end_abs_V == pytest.approx(1.2 * e, rel=0.02)
        assert hc.capacity_mAh == pytest.approx(0.5, rel=1e-6)  # 0.5 mA for 1 h
        assert hc.sign == (1 if k % 2 == 0 else -1)
    assert res.hysteresis_V == pytest.approx([2 * 1.1 * eta * (1.0 + 0.1 * k) for k in range(3)], rel=1e-6)
    json.dumps(res.as_dict(), allow_nan=False)


def test_odd_number_of_half_cycles_leaves_last_without_hysteresis() -> None:
    steps = _symmetric(2, 0.01, with_rests=False)[:-1]
    res = symmetric_cycling_summary(steps)
    assert len(res.half_cycles) == 3
    assert len(res.hysteresis_V) == 1


def _full_cell(n_cycles: int, q0_mAh: float, fade: float, ce: float, area: float):
    """CC charge (+ CV tail), rest, CC discharge; capacity fades geometrically, CE fixed."""
    i = 1e-3  # 1 mA
    steps, t0 = [], 0.0
    for k in range(n_cycles):
        q_ch = q0_mAh * fade**k  # mAh
        t_cc = q_ch * 0.8 * 3.6 / i  # 80 % in CC ...
        steps.append(_step(t_cc, i, lambda t, tc=t_cc: 3.6 + 0.6 * t / tc, t0=t0, dt=2.0))
        t0 += t_cc + 2.0
        # ... 20 % in a CV tail with exponentially decaying current (same sign: merged).
        tau = 600.0
        t_cv = 10 * tau
        q_cv_c = q_ch * 0.2 * 3.6
        i0 = q_cv_c / (tau * (1 - np.exp(-t_cv / tau)))
        t = t0 + np.arange(0.0, t_cv + 0.5, 1.0)
        steps.append(Segment(t, np.full(t.size, 4.2), i0 * np.exp(-(t - t0) / tau)))
        t0 += t_cv + 1.0
        steps.append(_step(1800.0, 0.0, lambda t: np.full_like(t, 4.1), t0=t0, dt=10.0))
        t0 += 1810.0
        q_dis = ce * q_ch
        t_d = q_dis * 3.6 / i
        steps.append(_step(t_d, -i, lambda t, td=t_d: 4.1 - 1.0 * t / td, t0=t0, dt=2.0))
        t0 += t_d + 2.0
    return steps


def test_full_cell_capacities_ce_retention_and_mean_voltages() -> None:
    area, q0, fade, ce = 1.6, 2.0, 0.98, 0.995
    res = full_cell_cycling_summary(_full_cell(5, q0, fade, ce, area), area)
    assert len(res.cycles) == 5
    for k, c in enumerate(res.cycles):
        q_ch = q0 * fade**k
        assert c.charge_capacity_mAh == pytest.approx(q_ch, rel=2e-3)
        assert c.discharge_capacity_mAh == pytest.approx(ce * q_ch, rel=2e-3)
        assert c.discharge_capacity_mAh_cm2 == pytest.approx(ce * q_ch / area, rel=2e-3)
        assert c.coulombic_efficiency == pytest.approx(ce, abs=2e-3)
        assert c.retention == pytest.approx(fade**k, rel=2e-3)
        assert c.mean_discharge_V == pytest.approx(3.6, abs=2e-3)  # linear 4.1 → 3.1 at constant I
        # 80 % of the charge at a mean of 3.9 V, 20 % at 4.2 V.
        assert c.mean_charge_V == pytest.approx(0.8 * 3.9 + 0.2 * 4.2, abs=5e-3)
    d = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    assert d["conventions"]["coulombic_efficiency"].startswith("capacity of the second")


def test_incomplete_last_cycle_has_missing_discharge() -> None:
    steps = _full_cell(2, 1.0, 1.0, 0.99, 1.0)[:-1]  # stopped before the last discharge
    res = full_cell_cycling_summary(steps, 1.0)
    assert len(res.cycles) == 2
    assert np.isnan(res.cycles[-1].discharge_capacity_mAh)
    assert json.loads(json.dumps(res.as_dict()))["cycles"][-1]["coulombic_efficiency"] is None


def test_cc_and_cv_steps_are_merged_rests_dropped() -> None:
    groups = group_half_cycles(_full_cell(1, 1.0, 1.0, 0.99, 1.0))
    assert [(sign, len(segs)) for sign, segs in groups] == [(1, 2), (-1, 1)]


def test_negative_charge_sign_convention() -> None:
    steps = [Segment(s.t, s.V, -s.I_A) for s in _full_cell(2, 1.0, 1.0, 0.98, 1.0)]
    res = full_cell_cycling_summary(steps, 1.0, charge_sign=-1)
    assert res.cycles[0].coulombic_efficiency == pytest.approx(0.98, abs=2e-3)


def test_discharge_first_cells_pair_discharge_then_charge() -> None:
    """A cell that starts discharged-first (e.g. Li|S): CE = charge back out / discharge in."""
    steps = _full_cell(3, 1.0, 1.0, 0.97, 1.0)
    res = full_cell_cycling_summary(steps[3:], 1.0, first="discharge")  # starts with a discharge
    assert res.conventions["dropped_leading_half_cycles"] == 0
    c = res.cycles[0]
    assert c.discharge_capacity_mAh == pytest.approx(0.97, rel=2e-3)
    assert c.charge_capacity_mAh == pytest.approx(1.0, rel=2e-3)
    assert c.coulombic_efficiency == pytest.approx(1.0 / 0.97, rel=2e-3)
    # Charge-first analysis of the same steps drops the leading discharge and says so.
    assert full_cell_cycling_summary(steps[3:], 1.0).conventions["dropped_leading_half_cycles"] == 1


def test_bad_inputs_raise_named_errors() -> None:
    with pytest.raises(ValueError, match="area_cm2"):
        full_cell_cycling_summary(_full_cell(1, 1.0, 1.0, 0.99, 1.0), 0.0)
    with pytest.raises(ValueError, match="steps is empty"):
        symmetric_cycling_summary([])
    with pytest.raises(ValueError, match="step 0: t must be strictly increasing"):
        symmetric_cycling_summary([Segment(np.zeros(5), np.zeros(5), np.ones(5))])
    with pytest.raises(ValueError, match="step 0: missing key 't'"):
        symmetric_cycling_summary([{"V": [1, 2], "I": [1, 1]}])
    with pytest.raises(ValueError, match="all rests"):
        symmetric_cycling_summary([Segment(np.arange(5.0), np.zeros(5), np.zeros(5))])
    with pytest.raises(ValueError, match="reference_cycle"):
        full_cell_cycling_summary(_full_cell(1, 1.0, 1.0, 0.99, 1.0), 1.0, reference_cycle=3)
