"""Impedance physics of the simulated cells and the EIS step's timing and noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams, transport
from drivers.sim import impedance as zel
from drivers.sim.drive import context, drive
from labctl.clock import VirtualClock
from labctl.steps import Impedance, SetTemperature


def channel(cell: str = "ss", **truth: float) -> SimChannel:
    return SimChannel(SimParams(**truth), cell, VirtualClock())


def z_of(ch: SimChannel, freq: np.ndarray, celsius: float = 25.0) -> np.ndarray:
    return ch.bench.cell.impedance(ch.bench.state, np.asarray(freq, dtype=float), celsius)


def r_bulk(p: SimParams, celsius: float = 25.0) -> float:
    sigma = p.sigma * math.exp(-p.ea / 8.617333262e-5 * (1 / (celsius + 273.15) - 1 / 298.15))
    return p.thickness * 1e-4 / (sigma * p.area)


def test_ss_intercepts_high_frequency_is_r_series_and_dc_is_r_series_plus_bulk() -> None:
    ch = channel("ss", sigma=1e-6, thickness=500.0, inductance=0.0, sigma_e=0.0)
    p = ch.params
    z_hf = z_of(ch, [1e13])[0]
    assert z_hf.real == pytest.approx(p.r_series, rel=1e-3)
    f = np.array([1e-6])
    spike = zel.cpe(p.q_dl * p.area / 2, p.n_dl, zel.omega(f))
    dc = (z_of(ch, f) - spike)[0]
    assert dc.real == pytest.approx(p.r_series + r_bulk(p), rel=1e-9)
    assert abs(dc.imag) < 1e-6 * dc.real


def test_bulk_arc_apex_is_the_dielectric_relaxation_frequency() -> None:
    """σ/(2π·ε0·εr): independent of geometry, as it must be."""
    for thickness, area in ((50.0, 0.5), (2000.0, 3.0)):
        ch = channel("ss", sigma=1e-6, thickness=thickness, area=area, inductance=0.0, sigma_e=0.0)
        p = ch.params
        f = np.logspace(2, 7, 2001)
        arc = z_of(ch, f) - zel.cpe(p.q_dl * p.area / 2, p.n_dl, zel.omega(f)) - p.r_series
        f_apex = f[np.argmax(-arc.imag)]
        expected = p.sigma * 100 / (2 * math.pi * 8.8541878128e-12 * p.eps_r)
        assert f_apex == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("t_plus", [0.2, 0.4, 0.9])
def test_li_li_dc_limit_is_rs_plus_rb_over_tplus_plus_rint(t_plus: float) -> None:
    ch = channel("li_li", t_plus=t_plus)
    p = ch.params
    r_int = 2 * transport.thermal_voltage(25.0) / (p.j0 * 1e-3 * p.area)
    z = z_of(ch, [1e-9])[0]
    assert z.real == pytest.approx(p.r_series + r_bulk(p) / t_plus + r_int, rel=1e-6)
    assert ch.truth()["model"]["dc_resistance"] == pytest.approx(z.real, rel=1e-6)
    # Beyond the interfacial arc and above the diffusion: R_s + R_b + R_int (the BVE "I0" resistance).
    assert z_of(ch, [30.0])[0].real == pytest.approx(p.r_series + r_bulk(p) + r_int, rel=0.01)


def test_arrhenius_in_the_sigma_form() -> None:
    p = SimParams(ea=0.5)
    for celsius in (-20.0, 25.0, 80.0):
        expected = p.sigma * math.exp(-0.5 / 8.617333262e-5 * (1 / (celsius + 273.15) - 1 / 298.15))
        assert transport.sigma_at(p, celsius) == pytest.approx(expected, rel=1e-12)


def test_eis_step_yields_one_point_per_block_in_realistic_time() -> None:
    ch = channel("ss")
    ctx = context(ch)
    step = Impedance(f_start=1e5, f_stop=0.1, points_per_decade=10, amplitude=0.01)
    t0 = ch.clock.now()
    ran = drive(ch, step, ctx)
    sp = ran.outcome.spectrum
    assert ran.outcome.end_reason.value == "completed"
    assert ran.blocks == len(sp) == 61
    np.testing.assert_allclose(sp["freq"], step.frequencies())
    duration = sum(max(3 / f, 0.5) + 0.2 for f in step.frequencies())
    assert ch.clock.now() - t0 == pytest.approx(duration)
    assert sp["t"][-1] == pytest.approx(duration)
    assert np.all(np.diff(sp["t"]) > 0)
    assert np.all(sp["E_dc"] == 0.0) and np.all(sp["I_dc"] == 0.0)  # symmetric blocking cell at rest
    assert np.all(np.abs(sp["T"] - 25.0) < 0.2)


def test_noise_is_relative_to_modulus_and_seeded() -> None:
    spectra = []
    for seed in (1, 1, 2):
        ch = channel("ss", sigma=1e-5, seed=seed, noise=0.003)
        spectra.append(drive(ch, Impedance(f_start=1e5, f_stop=0.01, points_per_decade=20), context(ch)).data)
    truth = z_of(channel("ss", sigma=1e-5), spectra[0]["freq"])
    z = spectra[0]["z_re"] + 1j * spectra[0]["z_im"]
    rel = np.abs(z - truth) / np.abs(truth)
    assert np.sqrt(np.mean(rel**2)) == pytest.approx(0.003, rel=0.3)
    np.testing.assert_array_equal(spectra[0], spectra[1])
    assert not np.array_equal(spectra[0]["z_re"], spectra[2]["z_re"])


def test_spectrum_follows_the_cell_temperature() -> None:
    ch = channel("ss", sigma=1e-7, thickness=2000.0, noise=0.0, sigma_e=0.0)
    ctx = context(ch)
    spectra = {}
    for celsius in (25.0, 60.0):
        drive(ch, SetTemperature(celsius=celsius, tolerance=0.1, settle_time=600, sample_period=10), ctx)
        spectra[celsius] = drive(ch, Impedance(f_start=1e5, f_stop=10, points_per_decade=5), ctx).data
    p = ch.params
    # At 10 Hz the bulk arc is complete and the blocking spike adds < 0.1 %.
    ratio = spectra[25.0]["z_re"][-1] / spectra[60.0]["z_re"][-1]
    assert ratio == pytest.approx(r_bulk(p, 25.0) / r_bulk(p, 60.0), rel=0.01)
    assert np.mean(spectra[60.0]["T"]) == pytest.approx(60.0, abs=0.1)


def test_short_circuit_shows_in_the_spectrum() -> None:
    ch = channel("li_li")
    healthy = z_of(ch, [0.1])[0]
    ch.bench.state = type(ch.bench.state)(**{**ch.bench.state.__dict__, "t_short": ch.bench.state.t_abs - 3600})
    shorted = z_of(ch, [0.1])[0]
    assert abs(shorted) < 0.05 * abs(healthy)
