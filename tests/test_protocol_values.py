"""Typed protocol parameters, the analyses outside the generators, and CCD on resistive cells."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from labctl import registry
from labctl.params import Param, check_values_type, typed_values
from labctl.protocol import Cell
from labctl.steps import ConstantCurrent, EndReason, Limits, StepResult
from protocols import arrhenius, ccd, cycling, li_cu_ce
from tests.test_protocols_sim import draws, run

KB_EV = 8.617333262e-5


# --------------------------------------------------------------------------- typed values


@pytest.mark.parametrize("name", registry.available_protocols())
def test_every_protocol_reads_a_frozen_object_matching_its_parameters(name: str) -> None:
    protocol = registry.get_protocol(name)
    assert protocol.values_type is not None
    typed = protocol.typed(protocol.validate({}))
    assert {f.name for f in dataclasses.fields(typed)} == {p.name for p in protocol.params}
    first = protocol.params[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(typed, first, None)


def test_typed_values_have_the_python_type_of_each_kind() -> None:
    values = cycling.PROTOCOL.validate({"rates": "0.1,0.25", "cycles": "3", "mode": "full", "area": "2"})
    p = cycling.PROTOCOL.typed(values)
    assert p.rates == (0.1, 0.25) and isinstance(p.rates, tuple)
    assert p.cycles == 3 and isinstance(p.cycles, int)
    assert p.mode == "full" and p.area == 2.0 and p.thickness is None
    ce = li_cu_ce.PROTOCOL.typed(li_cu_ce.PROTOCOL.validate({"precondition": "no", "n": "4"}))
    assert ce.precondition is False and ce.n == 4 and isinstance(ce.q_t, float)


def test_typed_values_from_stored_json_equal_those_from_the_command_line() -> None:
    """Replay rebuilds parameters from the run file's JSON (lists, not tuples)."""
    given = {"temperatures": "-10,20,40", "vtf": "false", "points_per_decade": "7"}
    from_cli = arrhenius.PROTOCOL.validate(given)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in from_cli.items() if v is not None}
    assert arrhenius.PROTOCOL.typed(arrhenius.PROTOCOL.validate(stored)) == arrhenius.PROTOCOL.typed(from_cli)


def test_a_values_type_that_drifts_from_the_declarations_is_refused() -> None:
    params = (Param("a", 1.0), Param("n", 2, kind="int"))

    @dataclass(frozen=True)
    class Missing:
        a: float

    @dataclass(frozen=True)
    class WrongType:
        a: float
        n: str

    @dataclass(frozen=True)
    class Right:
        a: float
        n: int

    with pytest.raises(TypeError, match=r"missing fields: \['n'\]"):
        check_values_type(Missing, params)
    with pytest.raises(TypeError, match="n: the 'int' parameter must be annotated int"):
        check_values_type(WrongType, params)
    check_values_type(Right, params)
    assert typed_values(Right, params, {"a": "2.5"}) == Right(a=2.5, n=2)


# --------------------------------------------------------------------------- analyses called directly


@pytest.mark.parametrize("truth", draws(4, 31, ea=(0.1, 0.7, "lin"), sigma=(1e-6, 1e-2, "log")))
def test_analyse_arrhenius_recovers_ea_from_a_table(truth: dict[str, float]) -> None:
    p = arrhenius.PROTOCOL.typed(arrhenius.PROTOCOL.validate({"temperatures": "0,20,40,60,80"}))
    rng = np.random.default_rng(int(truth["seed"]))
    table = [{"T_set_C": -20.0, "skipped": "timeout"}]  # an unreached set point stays in the table only
    for t_c in p.temperatures:
        t_k = t_c + 273.15
        sigma = truth["sigma"] * math.exp(-truth["ea"] / KB_EV * (1 / t_k - 1 / 298.15))
        table.append({"T_set_C": t_c, "T_C": t_c, "sigma_S_cm": sigma * (1 + 0.002 * rng.standard_normal())})
    out = arrhenius.analyse_arrhenius(p, table)
    assert out["ea_eV"] == pytest.approx(truth["ea"], abs=0.01)
    assert len(out["sigma_S_cm"]) == 5 and len(out["table"]) == 6


def _strip_or_plate(index: int, label: str, charge_C: float, end: EndReason) -> StepResult:
    step = ConstantCurrent(current=1e-3, limits=Limits(max_charge=abs(charge_C)), label=label)
    return StepResult(index=index, step=step, end_reason=end, t_start=0.0, duration=1.0, charge=charge_C)


@pytest.mark.parametrize("truth", draws(4, 32, ce=(0.9, 0.999, "lin"), cycles=(3, 20, "lin")))
def test_analyse_coulombic_efficiency_uses_the_reservoir_not_the_preconditioning(truth: dict[str, float]) -> None:
    n = int(truth["cycles"])
    cell = Cell("li_cu", area_cm2=1.0, thickness_um=100.0)
    p = li_cu_ce.PROTOCOL.typed(li_cu_ce.PROTOCOL.validate({"n": str(n), "q_t": "4", "q_c": "0.5"}))
    q_t, q_c = 4 * 3.6, 0.5 * 3.6  # C on 1 cm²
    # A cell losing (1 - ce) of every charge it plates and strips back.
    q_s = (q_t + n * q_c) * truth["ce"] - n * q_c
    platings = [_strip_or_plate(0, "precondition plate Q_t", -0.7 * q_t, EndReason.CHARGE)]
    platings.append(_strip_or_plate(2, "plate reservoir Q_t", -q_t, EndReason.CHARGE))
    strips = [_strip_or_plate(3 + 2 * k, f"cycle {k + 1} strip Q_c", q_c, EndReason.CHARGE) for k in range(n)]
    platings += [_strip_or_plate(4 + 2 * k, f"cycle {k + 1} plate Q_c", -q_c, EndReason.CHARGE) for k in range(n)]
    final = _strip_or_plate(3 + 2 * n, "final strip to cutoff", q_s, EndReason.VOLTAGE_ABOVE)
    out = li_cu_ce.analyse_coulombic_efficiency(p, cell, platings, strips, final)
    assert out["ce_avg"] == pytest.approx(truth["ce"], rel=1e-9)
    assert out["Q_t_mAh_cm2"] == pytest.approx(4.0)
    assert out["valid"] is True


# --------------------------------------------------------------------------- CCD with few samples


def test_analyse_ccd_reports_a_cutoff_within_few_samples_as_contact_loss() -> None:
    p = ccd.PROTOCOL.typed(ccd.PROTOCOL.validate({"sample_period": "60"}))
    t = np.arange(0.0, 1800.0, 60.0)
    healthy = ccd.HalfCycle(0.1, t, -0.05 * np.ones(t.size), "time")
    cut = ccd.HalfCycle(0.1, np.array([0.0, 60.0, 120.0]), np.array([0.8, 1.5, 2.0]), "voltage_above")
    out = ccd.analyse_ccd(p, [healthy, cut])
    assert out["ccd_mA_cm2"] is None and out["failure"] == "none"
    assert out["contact_loss_index"] == 1
    assert "too few to judge" in out["stopped"] and "contact_loss" in out["stopped"]


@pytest.mark.parametrize(
    "truth", draws(4, 33, sigma=(5e-7, 2e-6, "log"), thickness=(500, 1000, "log"), area=(0.5, 2, "lin"))
)
def test_ccd_on_a_resistive_cell_reports_contact_loss_instead_of_failing(tmp_path, truth) -> None:
    """Issue 7 item 8: |V| = j·L/σ is over the 2 V cutoff at the first reading, so the
    half-cycle ends after a sample or two; the run completes and says why."""
    results = run("ccd", {"sample_period": 60}, truth, tmp_path)
    assert results["failure"] == "none" and results["ccd_mA_cm2"] is None
    assert results["half_cycles"] == 1 and results["contact_loss_index"] == 0
    assert "too few to judge" in results["stopped"]
    assert results["steps"][0]["kind"] == "contact_loss"


def test_ccd_refuses_a_sampling_period_too_long_for_its_half_cycles() -> None:
    from labctl.params import ParameterError

    with pytest.raises(ParameterError, match=r"sample_period.*allowed: at most 360 s"):
        ccd.PROTOCOL.validate({"sample_period": "600"})
    with pytest.raises(ParameterError, match="sample_period"):  # capacity mode: 0.01 mAh/cm² at 5 mA/cm² = 7.2 s
        ccd.PROTOCOL.validate({"capacity": "0.01", "sample_period": "2"})
    ccd.PROTOCOL.validate({"capacity": "0.01", "sample_period": "1"})


# --------------------------------------------------------------------------- plans read like the methods


def _drive(plan, respond) -> tuple[list, dict]:
    """Run a plan generator by hand: ``respond(step)`` gives each StepResult."""
    steps = []
    try:
        step = next(plan)
        while True:
            steps.append(step)
            step = plan.send(respond(len(steps) - 1, step))
    except StopIteration as stop:
        return steps, stop.value


def test_li_cu_ce_plan_is_the_adams_sequence() -> None:
    """Precondition (plate Q_t, strip to 1 V), plate the reservoir, n × (strip Q_c, plate Q_c),
    strip to 1 V: step by step, with the rests between and the charges in coulombs."""
    cell = Cell("li_cu", area_cm2=2.0, thickness_um=100.0)
    values = li_cu_ce.PROTOCOL.validate({"n": "2", "rest": "5"})

    def respond(index: int, step) -> StepResult:
        charge = step.limits.max_charge
        to_cutoff = charge is None
        end = EndReason.VOLTAGE_ABOVE if to_cutoff else EndReason.CHARGE
        signed = (0.9 * 5 * 3.6 * 2.0) if to_cutoff else math.copysign(charge, step.current)
        return StepResult(index=index, step=step, end_reason=end, t_start=0.0, duration=1.0, charge=signed)

    steps, out = _drive(li_cu_ce.PROTOCOL.make_plan(values, cell), respond)
    labels = [s.label for s in steps if s.kind == "ConstantCurrent"]
    assert labels == [
        "precondition plate Q_t",
        "precondition strip to cutoff",
        "plate reservoir Q_t",
        "cycle 1 strip Q_c",
        "cycle 1 plate Q_c",
        "cycle 2 strip Q_c",
        "cycle 2 plate Q_c",
        "final strip to cutoff",
    ]
    assert [s.kind for s in steps].count("Rest") == 7  # after every step but the last
    reservoir = steps[4]
    assert reservoir.current == pytest.approx(-0.5e-3 * 2.0) and reservoir.limits.max_charge == pytest.approx(36.0)
    assert steps[-1].limits.voltage_above == 1.0
    assert out["Q_t_mAh_cm2"] == pytest.approx(5.0)
    assert out["ce_avg"] == pytest.approx((0.9 * 5 + 2 * 0.5) / (5 + 2 * 0.5))
