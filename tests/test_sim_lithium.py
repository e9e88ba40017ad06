"""Li plating/stripping: Li‖Cu inventory and CE (Adams), nucleation, shorts above the CCD, full cells."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import context, drive
from labctl.clock import VirtualClock
from labctl.steps import ConstantCurrent, ConstantVoltage, EndReason, Limits, Rest

MAH = 3.6  # C per mAh


def adams(ce: float, q_t: float = 5.0, q_c: float = 0.5, n: int = 10, j: float = 0.5, **truth: float):
    """Adams et al. 2018 sequence on a Li|SE|Cu cell; charges in mAh/cm² (area 1 cm²)."""
    ch = SimChannel(SimParams(ce=ce, **truth), "li_cu", VirtualClock())
    ctx = context(ch)
    current = j * 1e-3
    log: list[tuple[str, object]] = []

    def cc(sign: int, **limits: float):
        ran = drive(ch, ConstantCurrent(current=sign * current, sample_period=10.0, limits=Limits(**limits)), ctx)
        log.append((ran.outcome.end_reason.value, ran.data))
        return ran

    drive(ch, Rest(duration=600, sample_period=10.0), ctx)
    cc(-1, max_charge=q_t * MAH)
    cc(+1, voltage_above=1.0, max_time=100 * 3600)
    cc(-1, max_charge=q_t * MAH)
    for _ in range(n):
        cc(+1, max_charge=q_c * MAH, voltage_above=1.0)
        cc(-1, max_charge=q_c * MAH)
    inventory = ch.truth()["model"]["inventory_c"]
    final = cc(+1, voltage_above=1.0, max_time=100 * 3600)
    q_s = final.data["Q"][-1] / MAH
    return ch, log, (q_s + n * q_c) / (q_t + n * q_c), inventory


@pytest.mark.parametrize("ce", [0.80, 0.95, 0.999])
def test_adams_average_ce_equals_the_truth(ce: float) -> None:
    ch, log, ce_avg, inventory = adams(ce)
    assert ce_avg == pytest.approx(ce, abs=1e-4)
    reasons = [r for r, _ in log]
    assert reasons[1] == reasons[-1] == "voltage_above"
    assert all(r == "charge" for r in reasons[2:-1])
    final = log[-1][1]
    assert final["E"][-1] >= 1.0 and final["E"][-2] < 0.5  # a steep knee, not a slow drift
    assert final["Q"][-1] == pytest.approx(inventory, rel=1e-4)  # the charge at 1 V is the inventory
    assert ch.truth()["model"]["bare"]


def test_charge_limits_are_exact_and_plateaus_are_symmetric() -> None:
    _, log, _, _ = adams(0.98, n=2)
    strip, plate = log[3][1], log[4][1]  # the first cycle after the reservoir plating
    assert plate["Q"][-1] == pytest.approx(-0.5 * MAH, rel=1e-12)
    assert strip["Q"][-1] == pytest.approx(0.5 * MAH, rel=1e-12)
    assert 0.01 < strip["E"][-1] < 0.3 and -0.3 < plate["E"][-1] < -0.01


def test_nucleation_dip_on_bare_copper_and_its_truth() -> None:
    ch, log, _, _ = adams(0.98, n=1)
    first_plating = log[0][1]
    dips = [e for e in ch.events if e["event"] == "nucleation"]
    assert len(dips) == 2  # the precondition and the reservoir plating start on bare Cu; cycling does not
    truth = dips[0]
    e = first_plating["E"]
    assert e.min() == pytest.approx(truth["dip"], abs=2e-3)
    assert np.median(e[len(e) // 2 :]) == pytest.approx(truth["plateau"], abs=1e-3)
    assert truth["nucleation_overpotential"] == pytest.approx(truth["dip"] - truth["plateau"])
    assert -0.06 < truth["nucleation_overpotential"] < -0.02  # nuc_eta 50 mV, partly hidden by the salt gradient
    fresh = SimChannel(SimParams(), "li_cu", VirtualClock())
    ocv = drive(fresh, Rest(duration=60, sample_period=10.0), context(fresh)).data["E"]
    assert np.mean(ocv) == pytest.approx(fresh.params.ocv_bare, abs=1e-4)  # bare Cu vs Li


def ccd_run(ccd: float, kind: str, j_max: float = 3.0):
    """Half-cycles of 0.5 h from 0.1 mA/cm² in 0.1 steps until the truth reports a short."""
    ch = SimChannel(SimParams(ccd=ccd, short_kind=kind), "li_li", VirtualClock())
    ctx = context(ch)
    history = []
    for k in range(1, round(j_max * 10) + 1):
        j = round(0.1 * k, 10)
        for sign in (+1, -1):
            step = ConstantCurrent(current=sign * j * 1e-3, sample_period=10, limits=Limits(max_time=1800))
            ran = drive(ch, step, ctx)
            history.append((j, sign, ran.data))
            if ch.truth()["model"]["shorted"]:
                return ch, history
    return ch, history


@pytest.mark.parametrize("ccd", [0.35, 1.0, 1.05])
def test_hard_short_in_the_first_half_cycle_above_ccd(ccd: float) -> None:
    ch, history = ccd_run(ccd, "hard")
    j, sign, data = history[-1]
    assert j > ccd and round(j - 0.1, 10) <= ccd
    assert sign == +1  # the first half-cycle at that current density
    assert np.abs(data["E"][-30:]).max() < 0.005  # collapsed to a few mV
    below = [d for jj, _, d in history if jj <= ccd]
    assert all(np.abs(d["E"][-1]) > 0.008 for d in below)  # healthy: ≥ 12 mV at 0.1 mA/cm²
    short = next(e for e in ch.events if e["event"] == "short")
    assert short["current_density_ma_cm2"] == pytest.approx(j)
    assert data["t"][0] < short["t_run"] < data["t"][-1]


def test_soft_short_is_noisy_and_falling() -> None:
    ch, history = ccd_run(1.0, "soft")
    j, _, data = history[-1]
    assert j == pytest.approx(1.1)
    healthy = history[-3][2]["E"]  # the last +1.0 mA/cm² half-cycle
    e = data["E"]
    onset = next(ev for ev in ch.events if ev["event"] == "short")["t_run"]
    after = e[data["t"] > onset + 60]
    assert after.mean() < 0.8 * healthy[-1]  # falling |V| ...
    assert after.min() > 0.005  # ... but not a hard collapse
    assert np.std(np.diff(after)) > 20 * ch.params.noise_v  # and far noisier than the instrument


def test_no_short_at_or_below_ccd_even_for_long() -> None:
    ch = SimChannel(SimParams(ccd=1.0), "li_li", VirtualClock())
    ctx = context(ch)
    for sign in (+1, -1) * 5:
        drive(ch, ConstantCurrent(current=sign * 1.0e-3, sample_period=60, limits=Limits(max_time=4 * 3600)), ctx)
    assert not ch.truth()["model"]["shorted"]


def test_full_cell_cycles_with_capacity_ce_and_fade() -> None:
    p = SimParams(capacity=2.0, ce_full=0.995, fade=0.01)
    ch = SimChannel(p, "full", VirtualClock())
    ctx = context(ch)
    current = 0.2e-3  # C/10
    caps, ces = [], []
    t0 = time.perf_counter()
    for _ in range(4):
        charge = drive(ch, ConstantCurrent(current=current, sample_period=30, limits=Limits(voltage_above=4.3)), ctx)
        hold = drive(ch, ConstantVoltage(voltage=4.3, sample_period=30, limits=Limits(current_below=current / 10)), ctx)
        dis = drive(ch, ConstantCurrent(current=-current, sample_period=30, limits=Limits(voltage_below=3.0)), ctx)
        assert (charge.outcome.end_reason, hold.outcome.end_reason, dis.outcome.end_reason) == (
            EndReason.VOLTAGE_ABOVE,
            EndReason.CURRENT_BELOW,
            EndReason.VOLTAGE_BELOW,
        )
        assert charge.data["E"][-1] == pytest.approx(4.3, abs=1e-6)
        assert dis.data["E"][-1] == pytest.approx(3.0, abs=1e-6)
        q_ch = charge.data["Q"][-1] + hold.data["Q"][-1]
        q_dis = -dis.data["Q"][-1]
        caps.append(q_dis / MAH)
        ces.append(q_dis / q_ch)
    assert time.perf_counter() - t0 < 3.0
    assert 1.8 < caps[0] < 2.0
    assert np.mean(ces[1:]) == pytest.approx(0.995, abs=2e-3)
    fade = 1 - (caps[-1] / caps[0]) ** (1 / 3)
    assert fade == pytest.approx(0.01, rel=0.2)
