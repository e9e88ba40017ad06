"""DC polarisation of Li|SE|Li (Bruce–Vincent–Evans) and the EIS around it."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams, transport
from drivers.sim.drive import context, drive
from labctl.clock import VirtualClock
from labctl.steps import ConstantVoltage, EndReason, Impedance, Limits, Rest

DV = 0.010


def polarize(hold_s: float = 3600.0, **truth: float):
    ch = SimChannel(SimParams(**truth), "li_li", VirtualClock())
    ctx = context(ch)
    drive(ch, Rest(duration=60, sample_period=1.0), ctx)
    step = ConstantVoltage(voltage=DV, vs_ocv=True, sample_period=1.0, limits=Limits(max_time=hold_s))
    ran = drive(ch, step, ctx)
    return ch, ctx, ran


def expected(p: SimParams) -> dict[str, float]:
    r_b = p.thickness * 1e-4 / (p.sigma * p.area)
    r_ct = transport.thermal_voltage(25.0) / (p.j0 * 1e-3 * p.area)
    r0, rss = 2 * r_ct, 2 * r_ct * p.rss_ratio
    return {
        "i0": DV / (p.r_series + r_b + r0),
        "iss": DV / (p.r_series + r_b / p.t_plus + rss),
        "tau": (p.thickness * 1e-4) ** 2 / (np.pi**2 * p.diffusivity),
        "r_b": r_b,
        "r0": r0,
        "rss": rss,
    }


@pytest.mark.parametrize("t_plus", [0.25, 0.6])
def test_current_starts_at_i0_and_settles_at_iss(t_plus: float) -> None:
    ch, _, ran = polarize(t_plus=t_plus)
    e = expected(ch.params)
    d = ran.data
    assert ran.outcome.end_reason is EndReason.TIME
    assert d["t"][-1] - d["t"][0] == pytest.approx(3600.0)
    assert np.all(np.abs(d["E"] - DV) < 2e-4)
    assert d["I"][0] == pytest.approx(e["i0"], rel=2e-3)
    assert np.median(d["I"][-200:]) == pytest.approx(e["iss"], rel=1e-3)
    truth = ch.events[-1]
    assert truth["event"] == "polarization"
    assert truth["i0"] == pytest.approx(e["i0"], rel=1e-12)
    assert truth["iss"] == pytest.approx(e["iss"], rel=1e-12)


def test_decay_time_constant_is_l2_over_pi2_d() -> None:
    ch, _, ran = polarize(noise_i=0.0, noise_v=0.0)
    e = expected(ch.params)
    d = ran.data
    t = d["t"] - d["t"][0]
    late = (t > 0.5 * e["tau"]) & (t < 4 * e["tau"])  # the k = 1 mode alone (k = 3 is e^-4 down)
    slope = np.polyfit(t[late], np.log(d["I"][late] - e["iss"]), 1)[0]
    assert -1 / slope == pytest.approx(e["tau"], rel=0.01)
    # The charge column is the exact integral of the current.
    assert d["Q"][-1] == pytest.approx(np.trapezoid(d["I"], t), rel=1e-4)


def test_bruce_vincent_evans_recovers_t_plus_with_rs_in_the_interfacial_term() -> None:
    ch, _, ran = polarize(t_plus=0.35)
    e = expected(ch.params)
    r_s = ch.params.r_series
    i0, iss = ran.data["I"][0], np.median(ran.data["I"][-300:])
    r0, rss = r_s + e["r0"], r_s + ch.truth()["model"]["r_int"]
    assert rss == pytest.approx(r_s + e["rss"], rel=1e-6)  # the drift R0 -> Rss is complete
    t_plus = iss * (DV - i0 * r0) / (i0 * (DV - iss * rss))
    assert t_plus == pytest.approx(0.35, abs=0.005)


def test_eis_after_the_hold_shows_rss_and_continues_the_hold_under_bias() -> None:
    ch, ctx, _ = polarize(noise=0.0)
    e = expected(ch.params)
    p = ch.params
    spectrum = drive(ch, Impedance(f_start=1e5, f_stop=1.0, bias=DV, bias_vs_ocv=True), ctx).data
    assert np.all(spectrum["E_dc"] == pytest.approx(DV))
    assert np.all(spectrum["I_dc"] == pytest.approx(e["iss"], rel=1e-4))  # the same hold, at steady state
    z_1hz = spectrum["z_re"][-1]  # beyond the interfacial arc, before most of the diffusion
    before = SimChannel(p, "li_li", VirtualClock())
    z_fresh = before.bench.cell.impedance(before.bench.state, np.array([1.0]), 25.0)[0].real
    assert z_1hz - z_fresh == pytest.approx(e["rss"] - e["r0"], rel=0.02)
    assert len([ev for ev in ch.events if ev["event"] == "polarization"]) == 1


def test_current_below_and_steady_limits_end_the_hold() -> None:
    ch = SimChannel(SimParams(), "li_li", VirtualClock())
    ctx = context(ch)
    e = expected(ch.params)
    target = 1.2 * e["iss"]
    ran = drive(ch, ConstantVoltage(voltage=DV, vs_ocv=True, limits=Limits(current_below=target)), ctx)
    assert ran.outcome.end_reason is EndReason.CURRENT_BELOW
    assert ran.data["I"][-1] == pytest.approx(target, rel=1e-9)  # placed at the model crossing
    assert np.all(np.abs(ran.data["I"][:-1]) > target)

    ch = SimChannel(SimParams(), "li_li", VirtualClock())
    limits = Limits(steady_slope=1e-11, steady_window=300.0, max_time=36000.0)
    ran = drive(ch, ConstantVoltage(voltage=DV, vs_ocv=True, limits=limits), context(ch))
    assert ran.outcome.end_reason is EndReason.STEADY
    duration = ran.data["t"][-1] - ran.data["t"][0]
    assert 3 * e["tau"] < duration < 15 * e["tau"]
