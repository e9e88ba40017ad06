"""SimChannel behaviour: limits, time, determinism, interrupt/safe state, hold, chamber, speed."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams
from drivers.sim.drive import context, drive
from labctl.channel import UnsupportedStep
from labctl.clock import ScaledClock, VirtualClock
from labctl.steps import (
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Limits,
    Rest,
    SetTemperature,
    VoltageSweep,
)


def channel(cell: str = "li_li", clock=None, **truth) -> SimChannel:
    return SimChannel(SimParams(**truth), cell, clock or VirtualClock())


# --- limits and time ----------------------------------------------------------------


def test_rest_completes_on_its_duration_and_time_limit_cuts_it() -> None:
    ch = channel()
    ctx = context(ch)
    ran = drive(ch, Rest(duration=95.0, sample_period=10.0), ctx)
    assert ran.outcome.end_reason is EndReason.COMPLETED
    np.testing.assert_allclose(ran.data["t"], [*np.arange(0, 91, 10.0), 95.0])
    assert np.all(ran.data["I"] == 0.0) and not ch.output_on
    ran = drive(ch, Rest(duration=95.0, sample_period=10.0, limits=Limits(max_time=30.0)), ctx)
    assert ran.outcome.end_reason is EndReason.TIME
    assert ran.data["t"][-1] - ran.data["t"][0] == pytest.approx(30.0)
    assert ch.clock.now() == pytest.approx(125.0)


def test_samples_carry_run_time_charge_and_temperature() -> None:
    ch = channel(noise_t=0.0)
    ctx = context(ch, t_origin=-1000.0)  # the run started 1000 s before this step
    ran = drive(ch, ConstantCurrent(current=2e-4, sample_period=5.0, limits=Limits(max_time=60.0)), ctx)
    d = ran.data
    assert d["t"][0] == pytest.approx(1000.0)
    np.testing.assert_allclose(d["Q"], 2e-4 * (d["t"] - 1000.0), rtol=1e-12)
    assert np.all(d["T"] == 25.0)
    assert ch.output_on


def test_voltage_limit_lands_on_the_exact_crossing() -> None:
    ch = channel("full")
    ctx = context(ch)
    ran = drive(ch, ConstantCurrent(current=1e-3, sample_period=60.0, limits=Limits(voltage_above=4.0)), ctx)
    assert ran.outcome.end_reason is EndReason.VOLTAGE_ABOVE
    assert ran.data["E"][-1] == pytest.approx(4.0, abs=1e-9)
    assert np.all(ran.data["E"][:-1] < 4.0)
    dt = np.diff(ran.data["t"])
    assert np.all(dt[:-1] == pytest.approx(60.0)) and 0 < dt[-1] <= 60.0
    assert ran.data["Q"][-1] == pytest.approx(1e-3 * (ran.data["t"][-1] - ran.data["t"][0]), rel=1e-12)


def test_charge_limit_is_exact_off_the_sample_grid() -> None:
    ch = channel()
    ran = drive(ch, ConstantCurrent(current=-3e-4, sample_period=7.0, limits=Limits(max_charge=0.1)), context(ch))
    assert ran.outcome.end_reason is EndReason.CHARGE
    assert ran.data["Q"][-1] == pytest.approx(-0.1, rel=1e-12)
    assert ran.data["t"][-1] - ran.data["t"][0] == pytest.approx(0.1 / 3e-4, rel=1e-12)


def test_on_limit_abort_is_reported_as_the_limit() -> None:
    ch = channel()
    step = ConstantCurrent(current=1e-3, sample_period=1.0, limits=Limits(voltage_above=0.05, on_limit="abort"))
    assert drive(ch, step, context(ch)).outcome.end_reason is EndReason.VOLTAGE_ABOVE  # the engine decides


def test_sweep_ends_completed_at_stop() -> None:
    ch = channel("ss")
    ran = drive(ch, VoltageSweep(start=0.0, stop=-0.2, rate=0.01, sample_period=1.0), context(ch))
    assert ran.outcome.end_reason is EndReason.COMPLETED
    assert ran.data["E"][-1] == pytest.approx(-0.2, abs=1e-4)  # noise_v 20 µV
    assert len(ran.data) == 21


def test_refuses_what_it_cannot_do() -> None:
    ch = channel()
    with pytest.raises(UnsupportedStep):
        next(ch.run_step(ConstantCurrent(current=5.0, limits=Limits(max_time=1)), context(ch)))
    with pytest.raises(UnsupportedStep):
        next(ch.run_step(Impedance(f_start=1e9, f_stop=1.0), context(ch)))


# --- determinism ----------------------------------------------------------------------


def sequence(seed: int) -> list[np.ndarray]:
    ch = channel("li_li", seed=seed)
    ctx = context(ch)
    out = [drive(ch, Rest(duration=100, sample_period=10), ctx).data]
    out.append(drive(ch, ConstantCurrent(current=1e-4, sample_period=10, limits=Limits(max_time=900)), ctx).data)
    out.append(drive(ch, Impedance(f_start=1e4, f_stop=1.0), ctx).data)
    return out


def test_same_seed_same_run_other_seed_other_noise_same_physics() -> None:
    a, b, c = sequence(3), sequence(3), sequence(4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1]["E"], c[1]["E"])
    np.testing.assert_allclose(a[1]["E"], c[1]["E"], atol=2e-4)  # noise only
    np.testing.assert_array_equal(a[1]["Q"], c[1]["Q"])


def test_virtual_and_scaled_clocks_compute_the_same_cell() -> None:
    step = ConstantCurrent(current=1e-4, sample_period=10, limits=Limits(max_time=300))
    virtual = channel()
    scaled = channel(clock=ScaledClock(3000.0))
    a = drive(virtual, step, context(virtual)).data
    b = drive(scaled, step, context(scaled)).data
    np.testing.assert_allclose(a["t"] - a["t"][0], b["t"] - b["t"][0], atol=1e-9)
    np.testing.assert_allclose(a["E"], b["E"], atol=1e-12)  # same noise stream, same model


# --- interrupt, safe state, hold --------------------------------------------------------


def test_interrupt_stops_a_long_step_within_a_block_on_a_real_time_clock() -> None:
    ch = channel(clock=ScaledClock(1.0))
    ctx = context(ch)
    gen = ch.run_step(ConstantCurrent(current=1e-4, sample_period=1.0, limits=Limits(max_time=3600)), ctx)
    threading.Timer(0.3, ctx.interrupt.set).start()
    t0 = time.monotonic()
    gaps, last = [], t0
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
    assert stop.value.value.end_reason is EndReason.ABORTED
    assert time.monotonic() - t0 < 1.5  # ~0.3 s: stopped within a block of the request
    assert max(gaps) <= ctx.max_block_wall + 0.15  # blocks keep coming while nothing else does
    assert ch.bench.state.t_abs == pytest.approx(ch.clock.now(), abs=0.05)  # the cell went on until now
    ch.safe_state()
    assert not ch.output_on and ch.mode == "off"


def test_abandoned_step_then_safe_state_on_a_virtual_clock() -> None:
    ch = channel()
    ctx = context(ch)
    gen = ch.run_step(ConstantCurrent(current=1e-3, sample_period=1.0, limits=Limits(max_time=1e6)), ctx)
    next(gen)
    assert ch.output_on
    ctx.interrupt.set()
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value.end_reason is EndReason.ABORTED
    ch.safe_state()
    ch.safe_state()  # idempotent
    assert not ch.output_on
    # The next step starts from where the cell really is.
    ran = drive(ch, Rest(duration=10, sample_period=1), context(ch))
    assert ran.data["E"][0] > 0.01  # concentration polarisation from the interrupted current relaxes


def test_hold_keeps_the_potential_and_the_step_continues_forward() -> None:
    ch = channel()
    ctx = context(ch)
    step = ConstantVoltage(voltage=0.01, vs_ocv=True, sample_period=1.0, limits=Limits(max_time=4000))
    gen = ch.run_step(step, ctx)
    first = next(gen)
    gen.close()
    ch.hold()
    assert ch.output_on and ch.mode == "potential"
    ch.clock.sleep(500)
    resumed = drive(
        ch,
        ConstantVoltage(
            voltage=0.01, vs_ocv=True, sample_period=1.0, limits=step.limits.shifted(first["t"][-1], first["Q"][-1])
        ),
        ctx,
    )
    truth = ch.events[-1]
    assert first["I"][0] == pytest.approx(truth["i0"], rel=2e-3)
    assert resumed.data["I"][0] == pytest.approx(truth["iss"], rel=2e-3)  # 25 τ later: not a fresh I0
    assert resumed.data["Q"][0] == 0.0
    assert resumed.data["t"][0] == pytest.approx(first["t"][-1] + 500)
    assert resumed.outcome.end_reason is EndReason.TIME
    assert resumed.data["t"][-1] - first["t"][0] == pytest.approx(4000 + 500)
    assert len([e for e in ch.events if e["event"] == "polarization"]) == 1

    ch2 = channel()
    gen = ch2.run_step(ConstantCurrent(current=1e-4, limits=Limits(max_time=100)), context(ch2))
    next(gen)
    ch2.hold()
    assert not ch2.output_on and ch2.mode == "open"


# --- chamber -----------------------------------------------------------------------------


def test_chamber_lag_and_temperature_stable() -> None:
    p = SimParams(tau_chamber=600.0, tau_cell=0.0, noise_t=0.0)
    ch = SimChannel(p, "ss", VirtualClock())
    ran = drive(ch, SetTemperature(celsius=65.0, tolerance=0.5, settle_time=600.0, sample_period=10.0), context(ch))
    d = ran.data
    t = d["t"] - d["t"][0]
    np.testing.assert_allclose(d["T"], 65.0 - 40.0 * np.exp(-t / 600.0), atol=1e-9)
    assert ran.outcome.end_reason is EndReason.TEMPERATURE_STABLE
    entered = 600.0 * math.log(40.0 / 0.5)
    assert t[-1] == pytest.approx(math.ceil(entered / 10) * 10 + 600.0)


def test_cell_temperature_is_the_two_lag_solution() -> None:
    """Chamber air: first-order lag; cell: first-order lag behind the air (checked by integration)."""
    ch = channel("ss", tau_chamber=600.0, tau_cell=200.0, noise_t=0.0)
    ran = drive(ch, SetTemperature(celsius=85.0, settle_time=0.0, tolerance=0.2, sample_period=5.0), context(ch))
    t = ran.data["t"] - ran.data["t"][0]
    dt = 0.05
    grid = np.arange(0.0, t[-1] + dt, dt)
    air = 85.0 - 60.0 * np.exp(-grid / 600.0)
    cell = np.empty_like(grid)
    cell[0] = 25.0
    for k in range(1, grid.size):  # Heun's method on dT/dt = (air - T)/τ_cell
        slope0 = (air[k - 1] - cell[k - 1]) / 200.0
        guess = cell[k - 1] + dt * slope0
        cell[k] = cell[k - 1] + 0.5 * dt * (slope0 + (air[k] - guess) / 200.0)
    np.testing.assert_allclose(ran.data["T"], np.interp(t, grid, cell), atol=1e-3)


def test_cell_lags_the_chamber_and_timeout_is_a_fault() -> None:
    ch = channel("ss", tau_chamber=600.0, tau_cell=300.0)
    ran = drive(
        ch,
        SetTemperature(celsius=-20.0, tolerance=0.01, settle_time=60.0, timeout=1800.0, sample_period=10.0),
        context(ch),
    )
    assert ran.outcome.end_reason is EndReason.TIMEOUT and ran.outcome.end_reason.is_fault
    truth = ch.truth()["chamber"]
    assert truth["cell"] > truth["air"] > -20.0  # cooling: the cell is the warmest
    assert ran.data["T"][-1] == pytest.approx(truth["cell"], abs=0.1)


# --- speed -------------------------------------------------------------------------------


def test_sixty_hours_of_li_cu_protocol_dry_runs_fast() -> None:
    ch = channel("li_cu")
    ctx = context(ch)
    t0 = time.perf_counter()
    current, q_t, q_c = 0.5e-3, 5 * 3.6, 0.5 * 3.6
    drive(ch, Rest(duration=600, sample_period=10), ctx)
    drive(ch, ConstantCurrent(current=-current, sample_period=10, limits=Limits(max_charge=q_t)), ctx)
    drive(ch, ConstantCurrent(current=current, sample_period=10, limits=Limits(voltage_above=1.0)), ctx)
    drive(ch, ConstantCurrent(current=-current, sample_period=10, limits=Limits(max_charge=q_t)), ctx)
    for _ in range(10):
        drive(ch, ConstantCurrent(current=current, sample_period=10, limits=Limits(max_charge=q_c)), ctx)
        drive(ch, ConstantCurrent(current=-current, sample_period=10, limits=Limits(max_charge=q_c)), ctx)
    drive(ch, ConstantCurrent(current=current, sample_period=10, limits=Limits(voltage_above=1.0)), ctx)
    wall = time.perf_counter() - t0
    assert ch.clock.now() / 3600 > 50
    assert wall < 2.5


def test_twelve_temperature_arrhenius_dry_runs_fast() -> None:
    ch = channel("ss")
    ctx = context(ch)
    t0 = time.perf_counter()
    for celsius in np.linspace(-20, 90, 12):
        stable = drive(ch, SetTemperature(celsius=float(celsius), settle_time=1800, sample_period=10), ctx)
        assert stable.outcome.end_reason is EndReason.TEMPERATURE_STABLE
        drive(ch, Impedance(f_start=1e5, f_stop=0.1), ctx)
    assert time.perf_counter() - t0 < 2.0
