"""What is left of a step after a pause: ``Step.remaining``, per step class."""

from __future__ import annotations

import pytest

from labctl.steps import (
    ConstantCurrent,
    ConstantVoltage,
    Impedance,
    Limits,
    Rest,
    SetTemperature,
    StepProgress,
    VoltageSweep,
)


def test_rest_keeps_what_is_left_of_its_duration():
    left = Rest(duration=60.0).remaining(StepProgress(elapsed=20.0))
    assert isinstance(left, Rest) and left.duration == pytest.approx(40.0)
    assert left.effective_limits().max_time == pytest.approx(40.0)
    assert Rest(duration=60.0).remaining(StepProgress(elapsed=60.0)) is None


def test_galvanostatic_step_keeps_the_time_and_charge_left():
    step = ConstantCurrent(current=1e-3, limits=Limits(max_time=100.0, max_charge=0.05, voltage_above=4.0))
    left = step.remaining(StepProgress(elapsed=30.0, charge=-0.02))
    assert left.current == step.current and left.limits.voltage_above == 4.0
    assert left.limits.max_time == pytest.approx(70.0)
    assert left.limits.max_charge == pytest.approx(0.03)  # |charge| is what was spent
    assert step.remaining(StepProgress(elapsed=100.0)) is None


def test_potentiostatic_step_without_a_time_limit_goes_on():
    step = ConstantVoltage(voltage=0.01, limits=Limits(steady_slope=1e-9))
    left = step.remaining(StepProgress(elapsed=5000.0))
    assert left == step


@pytest.mark.parametrize(
    ("start", "stop", "first", "last", "left_start"),
    [
        ("ocv", 5.0, 3.0, 4.2, 4.2),
        (3.0, 5.0, 3.0, 3.5, 3.5),
        (3.0, 0.0, 3.0, 1.0, 1.0),  # a cathodic sweep
    ],
)
def test_sweep_goes_on_from_the_potential_reached(start, stop, first, last, left_start):
    step = VoltageSweep(start=start, stop=stop, rate=1e-3)
    left = step.remaining(StepProgress(elapsed=100.0, first_potential=first, last_potential=last))
    assert left.start == pytest.approx(left_start) and left.stop == stop and left.rate == step.rate


@pytest.mark.parametrize(("start", "stop", "last"), [("ocv", 5.0, 5.0), (3.0, 0.0, -0.01)])
def test_sweep_that_reached_its_end_is_done(start, stop, last):
    step = VoltageSweep(start=start, stop=stop, rate=1e-3)
    assert step.remaining(StepProgress(elapsed=1.0, first_potential=3.0, last_potential=last)) is None


def test_sweep_paused_before_any_sample_restarts_from_its_start():
    step = VoltageSweep(start="ocv", stop=5.0, limits=Limits(max_time=1000.0))
    left = step.remaining(StepProgress(elapsed=2.0))
    assert left.start == "ocv" and left.limits.max_time == pytest.approx(998.0)


def test_impedance_skips_the_points_measured():
    step = Impedance(f_start=1e5, f_stop=0.1, points_per_decade=10)
    n = len(step.frequencies())
    left = step.remaining(StepProgress(elapsed=10.0, points_done=12))
    assert left.skip_points == 12 and len(left.frequencies()) == n - 12
    again = left.remaining(StepProgress(elapsed=5.0, points_done=3))
    assert again.skip_points == 15  # points of earlier segments are not counted twice
    assert step.remaining(StepProgress(elapsed=10.0, points_done=n)) is None


def test_set_temperature_waits_again_within_the_timeout_left():
    step = SetTemperature(celsius=60.0, timeout=3600.0)
    assert step.remaining(StepProgress(elapsed=600.0)).timeout == pytest.approx(3000.0)
    assert step.remaining(StepProgress(elapsed=5000.0)).timeout == pytest.approx(1.0)
