"""LSV of Li|SE|SS: the ESW definition holds exactly, and the sweep behaves like one."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import context, drive
from drivers.sim.lsv import ESW_CURRENT_DENSITY, OxidationModel
from labctl.clock import VirtualClock
from labctl.steps import EndReason, Limits, Rest, VoltageSweep


def sweep(stop: float = 6.0, rate: float = 1e-3, **truth: float):
    ch = SimChannel(SimParams(**truth), "li_ss", VirtualClock())
    ctx = context(ch)
    drive(ch, Rest(duration=60, sample_period=10.0), ctx)
    return ch, drive(ch, VoltageSweep(start="ocv", stop=stop, rate=rate, sample_period=1e-3 / rate), ctx)


def crossing(d: np.ndarray, area: float, j_ma: float = 0.05) -> float:
    j = d["I"] / area * 1e3
    k = int(np.flatnonzero(j >= j_ma)[0])
    return float(d["E"][k - 1] + (j_ma - j[k - 1]) / (j[k] - j[k - 1]) * (d["E"][k] - d["E"][k - 1]))


@pytest.mark.parametrize("esw", [3.8, 5.5])
@pytest.mark.parametrize("sigma", [1e-6, 1e-2])
def test_threshold_current_is_reached_at_esw(esw: float, sigma: float) -> None:
    _, ran = sweep(esw=esw, sigma=sigma, area=0.5)
    assert ran.outcome.end_reason is EndReason.COMPLETED
    assert crossing(ran.data, 0.5) == pytest.approx(esw, abs=2e-3)


def test_calibration_is_exact_on_the_model() -> None:
    for sigma in (1e-6, 1e-4, 1e-2):
        p = SimParams(sigma=sigma, esw=4.2)
        model = OxidationModel.calibrate(p, 25.0, p.ocv_bare, p.q_dl * p.area)
        _, current = model.solve(np.array([p.esw]), 1e-3)
        assert current[0] == pytest.approx(ESW_CURRENT_DENSITY * p.area, rel=1e-9)
        assert model.calibrated


def test_sweep_starts_at_ocv_with_only_capacitive_current() -> None:
    ch, ran = sweep(stop=3.5)
    p = ch.params
    d = ran.data
    assert d["E"][0] == pytest.approx(p.ocv_bare, abs=1e-3)
    assert d["E"][-1] == pytest.approx(3.5, abs=1e-3)
    assert np.all(np.diff(d["t"]) > 0)
    np.testing.assert_allclose(np.diff(d["E"]).mean(), 1e-3, rtol=0.05)  # 1 mV per sample at 1 mV/s
    assert d["I"][0] == pytest.approx(p.q_dl * p.area * 1e-3, rel=0.05)  # C_dl·ν
    assert np.all(d["I"] / p.area < 1e-3 * ESW_CURRENT_DENSITY * 1e3)  # far below the ESW: background only


def test_oxidation_current_is_limited_and_voltage_limit_stops_the_sweep() -> None:
    ch, ran = sweep(stop=7.0, esw=4.0)
    j_max = ran.data["I"].max() / ch.params.area * 1e3
    assert j_max == pytest.approx(ch.params.i_lim_ox, rel=0.05)
    ch = SimChannel(SimParams(), "li_ss", VirtualClock())
    ran = drive(ch, VoltageSweep(start="ocv", stop=6.0, rate=1e-3, limits=Limits(voltage_above=4.0)), context(ch))
    assert ran.outcome.end_reason is EndReason.VOLTAGE_ABOVE
    assert ran.data["E"][-1] == pytest.approx(4.0, abs=1e-9)
