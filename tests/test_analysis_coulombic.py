"""Li‖Cu average CE (Adams et al. 2018), reservoir-exhaustion flag, nucleation overpotential."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.analysis.coulombic import (
    average_coulombic_efficiency,
    cycle_coulombic_efficiency,
    nucleation_overpotential,
)


def simulate_reservoir_protocol(ce: float, q_t: float, q_c: float, n: int):
    """Each plated coulomb stays active with probability CE; strips take what is active.

    Returns Q_S, the cycling strip charges and their end reasons (cutoff when the active
    inventory runs out before Q_C).
    """
    active = ce * q_t
    strips, reasons = [], []
    for _ in range(n):
        got = min(q_c, active)
        strips.append(got)
        reasons.append("charge" if got >= q_c else "voltage_above")
        active -= got
        active += ce * q_c
    return active, strips, reasons


@pytest.mark.parametrize("ce", [0.9, 0.97, 0.99, 0.999])
@pytest.mark.parametrize(("q_t", "q_c", "n"), [(5.0, 0.5, 10), (3.0, 1.0, 5), (18.0, 1.8, 10)])
def test_ce_avg_is_exact_on_synthetic_charges(ce, q_t, q_c, n) -> None:
    q_s, strips, reasons = simulate_reservoir_protocol(ce, q_t, q_c, n)
    res = average_coulombic_efficiency(
        q_t, q_c, q_s, strips, reasons, final_strip_end_reason="voltage_above", charge_unit="mAh/cm2"
    )
    assert res.ce_avg == pytest.approx(ce, abs=1e-12)
    assert res.valid
    assert res.n_cycles == n
    assert res.exhausted_cycles == ()
    assert res.charge_unit == "mAh/cm2"


def test_paper_defaults_hand_computed() -> None:
    # 5 mAh/cm² reservoir, 10 × 0.5 mAh/cm², 4.6 mAh/cm² recovered: (4.6 + 5)/(5 + 5) = 0.96.
    res = average_coulombic_efficiency(5.0, 0.5, 4.6, [0.5] * 10)
    assert res.ce_avg == pytest.approx(0.96)


def test_exhausted_reservoir_is_flagged_invalid() -> None:
    q_s, strips, reasons = simulate_reservoir_protocol(0.7, 1.5, 0.5, 10)
    assert "voltage_above" in reasons  # the synthetic cell really ran dry
    res = average_coulombic_efficiency(1.5, 0.5, q_s, strips, reasons)
    assert not res.valid
    first_dry = reasons.index("voltage_above")
    assert res.exhausted_cycles[0] == first_dry
    assert "reservoir exhausted" in res.invalid_reasons[0]
    assert json.loads(json.dumps(res.as_dict()))["valid"] is False


def test_exhaustion_without_end_reasons_uses_the_charge() -> None:
    res = average_coulombic_efficiency(2.0, 0.5, 0.0, [0.5, 0.5, 0.2, 0.0])
    assert not res.valid
    assert res.exhausted_cycles == (2, 3)


def test_strip_cut_short_by_something_else_is_also_invalid() -> None:
    res = average_coulombic_efficiency(5.0, 0.5, 4.0, [0.5, 0.3, 0.5], ["charge", "time", "charge"])
    assert not res.valid
    assert res.exhausted_cycles == ()
    assert "without reaching the voltage cutoff" in res.invalid_reasons[0]


def test_end_reason_enum_members_are_understood() -> None:
    from labctl.steps import EndReason

    res = average_coulombic_efficiency(
        2.0,
        0.5,
        0.0,
        [0.5, 0.2],
        [EndReason.CHARGE, EndReason.VOLTAGE_ABOVE],
        final_strip_end_reason=EndReason.VOLTAGE_ABOVE,
    )
    assert res.exhausted_cycles == (1,)
    assert len(res.invalid_reasons) == 1


def test_final_strip_must_end_on_the_cutoff() -> None:
    res = average_coulombic_efficiency(5.0, 0.5, 4.0, [0.5] * 3, final_strip_end_reason="time")
    assert not res.valid
    assert "final strip" in res.invalid_reasons[0]


def _plating_trace(plateau=-0.030, extra=-0.045, t_dip=15.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, 3600.0, 1.0)
    charging = 1.0 - np.exp(-t / 2.0)  # double-layer charging from 0 V
    # Nucleation barrier held until t_dip, then relaxing to the growth plateau.
    shape = np.where(t <= t_dip, 1.0, np.exp(-(((t - t_dip) / 8.0) ** 2)))
    v = (plateau + extra * shape) * charging
    return t, v + 2e-4 * rng.standard_normal(t.size)


@pytest.mark.parametrize(("plateau", "extra"), [(-0.030, -0.045), (-0.015, -0.120), (-0.050, -0.010)])
def test_nucleation_overpotential(plateau, extra) -> None:
    t, v = _plating_trace(plateau, extra)
    res = nucleation_overpotential(t, v)
    assert res.dip_V == pytest.approx(plateau + extra, abs=0.002)
    assert res.plateau_V == pytest.approx(plateau, abs=0.001)
    assert res.overpotential_V == pytest.approx(extra, abs=0.002)
    assert res.magnitude_V == pytest.approx(abs(extra), abs=0.002)
    assert res.has_dip
    assert res.dip_time_s < 30


def test_nucleation_result_travels_with_ce() -> None:
    t, v = _plating_trace()
    nuc = nucleation_overpotential(t, v)
    res = average_coulombic_efficiency(5.0, 0.5, 4.6, [0.5] * 10, nucleation=nuc)
    d = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    assert d["nucleation"]["dip_V"] == pytest.approx(nuc.dip_V)
    assert d["nucleation"]["plateau_V"] == pytest.approx(nuc.plateau_V)


def test_no_dip_is_reported_as_such() -> None:
    t = np.arange(0.0, 1000.0, 1.0)
    v = -0.03 * (1.0 - np.exp(-t / 50.0))  # monotonic approach, no nucleation barrier
    res = nucleation_overpotential(t, v)
    assert not res.has_dip


def test_per_cycle_ce() -> None:
    res = cycle_coulombic_efficiency([1.0, 1.0, 1.0, 1.0], [0.8, 0.95, 0.97, 0.98], charge_unit="mAh")
    assert res.ce == pytest.approx((0.8, 0.95, 0.97, 0.98))
    assert res.mean == pytest.approx(0.925)
    assert res.mean_excluding_first == pytest.approx(0.9666666667)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 0.5, 1.0, [0.5]), "Q_T"),
        ((5.0, -0.5, 1.0, [0.5]), "Q_C"),
        ((5.0, 0.5, -1.0, [0.5]), "Q_S"),
        ((5.0, 0.5, 1.0, []), "cycle_strip_charges"),
        ((5.0, 0.5, 1.0, [0.5, 0.5], ["charge"]), "cycle_strip_end_reasons has 1"),
    ],
)
def test_bad_inputs_raise_named_errors(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        average_coulombic_efficiency(*args)


def test_other_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        cycle_coulombic_efficiency([1.0, 1.0], [0.9])
    with pytest.raises(ValueError, match="plate_charges must be non-zero"):
        cycle_coulombic_efficiency([1.0, 0.0], [0.9, 0.9])
    with pytest.raises(ValueError, match="strictly increasing"):
        nucleation_overpotential(np.zeros(20), np.zeros(20))
