"""The full-cell analysis on synthetic traces with known answers (no simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.analysis.cycling import Segment, full_cell_cycling_summary
from labctl.analysis.fullcell import CycleTable, cycle_row, dq_dv, summarise

MASS_G = 0.0125  # 12.5 mg
AREA = 1.0


def _row(q_ch: float, q_dis: float, c: float = 1.0, complete: bool = True) -> dict[str, float]:
    return {
        "c_rate_charge": c,
        "c_rate_discharge": c,
        "charge_mAh": q_ch,
        "discharge_mAh": q_dis,
        "charge_Wh": q_ch * 3.9e-3,
        "discharge_Wh": q_dis * 3.7e-3,
        "mean_charge_V": 3.9,
        "mean_discharge_V": 3.7,
        "cv_charge_mAh": 0.1 * q_ch,
        "t_end_s": 7200.0,
        "complete": 1.0 if complete else 0.0,
    }


def _table(q_dis: np.ndarray, ce: float, rates: np.ndarray | None = None) -> CycleTable:
    table = CycleTable(capacity=4)  # grows by doubling
    for k, q in enumerate(q_dis):
        table.append(_row(q / ce, q, 1.0 if rates is None else float(rates[k])))
    return table


@pytest.mark.parametrize("seed", range(8))
def test_fade_and_ce_recovered_with_covering_uncertainty(seed):
    rng = np.random.default_rng(100 + seed)
    fade = 10 ** rng.uniform(-3.5, -2)
    ce = rng.uniform(0.99, 0.9995)
    n = int(rng.integers(50, 400))
    noise = 10 ** rng.uniform(-4, -3)
    q = 2.0 * (1 - fade) ** np.arange(n) * (1 + noise * rng.standard_normal(n))
    res = summarise(_table(q, ce), mass_g=MASS_G, area_cm2=AREA)
    assert res.valid and res.reason == ""
    assert abs(res.fade_per_cycle.value - fade) < 4 * res.fade_per_cycle.stderr + 1e-9
    assert res.fade_per_cycle.stderr < 0.2 * fade
    assert res.ce_mean.value == pytest.approx(ce, abs=1e-9)
    assert res.capacity_mAh_g == pytest.approx(q[0] / MASS_G)
    expected_80 = next((k + 1 for k in range(n) if q[k] / q[0] < 0.8), None)
    assert res.cycle_below_80 == expected_80
    d = res.as_dict()
    assert d["table"]["discharge_mAh_g"][:3] == pytest.approx(list(q[:3] / MASS_G))
    assert d["table"]["coulombic_efficiency"][5] == pytest.approx(ce)
    assert d["units"]["discharge_mAh_g"] == "mAh/g" and "retention" in d["conventions"]


def test_reference_cycle_and_rate_blocks():
    rates = np.array([0.1] * 3 + [1.0] * 20)
    q = np.concatenate([[2.0, 2.0, 2.0], 1.9 * 0.99 ** np.arange(20)])
    res = summarise(_table(q, 0.998, rates), mass_g=MASS_G, area_cm2=AREA, reference_cycle=4)
    assert res.table["retention"][3] == pytest.approx(1.0)
    assert res.table["retention"][0] == pytest.approx(2.0 / 1.9)
    assert res.fade_per_cycle.value == pytest.approx(0.01, rel=1e-6)  # only the 1 C cycles
    assert res.capacity_mAh_g == pytest.approx(1.9 / MASS_G)


def test_invalid_and_warned_cases():
    empty = summarise(CycleTable(), mass_g=MASS_G, area_cm2=AREA)
    assert not empty.valid and "no complete cycle" in empty.reason
    table = CycleTable()
    table.append(_row(2.0, 1.9, complete=False))
    table.append(_row(2.0, 1.99))
    table.append(_row(1.9, 1.95))  # CE > 1
    res = summarise(table, mass_g=MASS_G, area_cm2=AREA, reference_cycle=1)
    assert not res.valid and "reference cycle 1" in res.reason
    res = summarise(table, mass_g=MASS_G, area_cm2=AREA, reference_cycle=2)
    assert res.valid
    text = " ".join(res.warnings)
    assert "incomplete" in text and "CE above 1" in text and "fade_per_cycle not fitted" in text
    assert res.cycle_below_80 is None and "not reached" in text


def _cccv_charge(q_cc_mAh: float, i_cv0: float, tau: float, period: float) -> list[Segment]:
    """A CC step to 4.3 V and a CV step whose current decays as exp(-t/τ) (Q exact)."""
    i_cc = 2e-3
    t_cc = np.arange(0.0, q_cc_mAh * 3.6 / i_cc + period / 2, period)
    cc = Segment(t_cc, 3.5 + 0.8 * t_cc / t_cc[-1], np.full(t_cc.size, i_cc), Q=i_cc * t_cc)
    t_cv = np.arange(period, 12 * tau, period)
    i_cv = i_cv0 * np.exp(-t_cv / tau)
    q_cv = i_cv0 * tau * (1 - np.exp(-t_cv / tau))
    cv = Segment(t_cc[-1] + t_cv, np.full(t_cv.size, 4.3), i_cv, Q=q_cv)
    return [cc, cv]


def test_capacity_uses_the_instruments_charge_not_a_coarse_trapezoid():
    charge = _cccv_charge(1.5, 2e-3, 300.0, 120.0)
    t = charge[1].t[-1] + np.arange(0.0, 2700.0, 30.0)
    dis = [Segment(t, 4.1 - 1e-4 * (t - t[0]), np.full(t.size, -2e-3), Q=-2e-3 * (t - t[0]))]
    row = cycle_row(charge, dis, c_rate_charge=1, c_rate_discharge=1)
    q_cv_true = float(charge[1].Q[-1]) / 3.6
    assert row["cv_charge_mAh"] == pytest.approx(q_cv_true, rel=1e-12)
    assert row["charge_mAh"] == pytest.approx(float(charge[0].Q[-1] + charge[1].Q[-1]) / 3.6, rel=1e-12)
    no_q = [Segment(s.t, s.V, s.I_A) for s in charge]
    trapezoid = cycle_row(no_q, dis, c_rate_charge=1, c_rate_discharge=1)
    assert abs(trapezoid["cv_charge_mAh"] - q_cv_true) > 0.05 * q_cv_true  # what the Q column avoids
    # Energy by V against Q: the CV part is 4.3 V × its charge exactly.
    cv_only = cycle_row(charge[1:], dis, c_rate_charge=1, c_rate_discharge=1)
    assert cv_only["charge_Wh"] == pytest.approx(4.3 * q_cv_true * 1e-3, rel=1e-12)


def test_plain_cycling_summary_shares_the_cycle_definition():
    charge = _cccv_charge(1.5, 2e-3, 300.0, 60.0)
    t = charge[1].t[-1] + np.arange(0.0, 2700.0, 30.0)
    dis = Segment(t, 4.1 - 1e-4 * (t - t[0]), np.full(t.size, -2e-3), Q=-2e-3 * (t - t[0]))
    row = cycle_row(charge, [dis], c_rate_charge=1, c_rate_discharge=1)
    plain = full_cell_cycling_summary([*charge, dis], AREA).cycles[0]
    assert plain.charge_capacity_mAh == pytest.approx(row["charge_mAh"], rel=1e-12)
    assert plain.discharge_capacity_mAh == pytest.approx(row["discharge_mAh"], rel=1e-12)
    assert plain.mean_charge_V == pytest.approx(row["mean_charge_V"], rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_dqdv_peak_at_the_plateau_and_integral_is_the_capacity(seed):
    rng = np.random.default_rng(seed)
    plateau = rng.uniform(3.3, 3.5)
    q_total = 1.8  # mAh
    q = np.linspace(0.0, q_total, int(rng.integers(80, 600)))  # mAh
    x = q / q_total
    V = plateau + 0.02 * np.log(x.clip(1e-4) / (1 - x).clip(1e-4)) + 1e-4 * rng.standard_normal(q.size)
    t = q * 3.6 / 1e-3  # at 1 mA
    curve = dq_dv(V, np.full(q.size, 1e-3), t, MASS_G, 0.005, Q=q * 3.6)
    assert curve.peak_V == pytest.approx(plateau, abs=0.002)  # finer than the 5 mV bin
    assert float(np.sum(curve.dQdV_mAh_g_V) * 0.005) == pytest.approx(q_total / MASS_G, rel=1e-9)
    # a discharge (falling V) reads the same curve from its low end; without Q the trapezoid is used
    back = dq_dv(V[::-1], np.full(q.size, -1e-3), t, MASS_G, 0.005)
    assert back.peak_V == pytest.approx(plateau, abs=0.002)  # finer than the 5 mV bin
    assert float(np.sum(back.dQdV_mAh_g_V) * 0.005) == pytest.approx(q_total / MASS_G, rel=1e-9)


def test_cycle_table_grows_and_copies():
    table = CycleTable(capacity=1)
    for k in range(100):
        table.append(_row(2.0, 1.0 + k))
    assert len(table) == 100 and table.column("discharge_mAh")[-1] == 100.0
    assert table.nbytes <= 128 * 11 * 8
    with pytest.raises(ValueError):
        summarise(table, mass_g=0.0, area_cm2=1.0)
