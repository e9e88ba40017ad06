"""CCD half-cycle classification on synthetic hard shorts, soft shorts and contact loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labctl.analysis.ccd import CCDThresholds, HalfCycle, classify_half_cycle, critical_current_density

ASR = 60.0  # Ω·cm², ohmic + interfacial of a healthy Li|SE|Li cell
DURATION = 1800.0  # s per half-cycle
DT = 2.0


def _healthy(j: float, t: np.ndarray, rng: np.random.Generator, noise: float = 0.005) -> np.ndarray:
    """|V| of a healthy half-cycle: iR jump, interfacial build-up, 0.5 % noise."""
    v = j * 1e-3 * ASR * (1.0 + 0.3 * (1.0 - np.exp(-t / 120.0)))
    return v * (1.0 + noise * rng.standard_normal(t.size))


def half_cycle(j: float, kind: str = "normal", *, index: int = 0, seed: int = 0, t_event: float = 900.0):
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, DURATION, DT)
    v = _healthy(j, t, rng)
    end_reason = "completed"
    after = t >= t_event
    if kind == "hard":
        # Filament: a ~1 Ω·cm² metallic path takes over within a few seconds.
        v_short = j * 1e-3 * 1.0 * (1.0 + 0.05 * rng.standard_normal(t.size))
        v = np.where(after, np.abs(v_short), v)
    elif kind == "soft":
        # Intermittent partial contacts: |V| sags to ~40 % with 15 % flicker.
        sag = 1.0 - 0.6 * (1.0 - np.exp(-(t - t_event) / 200.0))
        flicker = 1.0 + 0.15 * rng.standard_normal(t.size)
        v = np.where(after, v * sag * np.clip(flicker, 0.2, None), v)
    elif kind == "contact_loss":
        # Voids at the stripping side: |V| grows until the 1 V cutoff ends the step.
        v = v * np.exp(np.clip(t - t_event, 0.0, None) / 150.0)
        stop = int(np.argmax(v >= 1.0)) if np.any(v >= 1.0) else t.size
        t, v = t[: stop + 1], np.minimum(v[: stop + 1], 1.0)
        end_reason = "voltage_above" if index % 2 == 0 else "voltage_below"
    elif kind == "conditioning":
        # Interface improving: a smooth, quiet ~45 % decline (past the soft-short drop
        # threshold) is normal behaviour; only the missing flicker tells it from a soft short.
        v = v * (1.0 - 0.6 * (1.0 - np.exp(-t / 600.0)))
    sign = 1.0 if index % 2 == 0 else -1.0
    return HalfCycle(j, t, sign * v, end_reason)


@pytest.mark.parametrize("j", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("normal", "normal"),
        ("conditioning", "normal"),
        ("hard", "hard_short"),
        ("soft", "soft_short"),
        ("contact_loss", "contact_loss"),
    ],
)
def test_classifies_synthetic_half_cycles(kind, expected, j, seed) -> None:
    for idx in (0, 1):  # both polarities
        c = classify_half_cycle(half_cycle(j, kind, index=idx, seed=seed), idx)
        assert c.kind == expected, c.reason


def test_quiet_decline_exceeds_drop_threshold_but_is_normal() -> None:
    c = classify_half_cycle(half_cycle(0.5, "conditioning"))
    assert c.drop_fraction > CCDThresholds().soft_drop_fraction
    assert c.rel_noise < CCDThresholds().soft_noise_rel
    assert c.kind == "normal"


@pytest.mark.parametrize("seed", range(5))
def test_flickering_sag_below_a_few_mV_is_soft_not_hard(seed) -> None:
    """At 0.1 mA/cm² a soft short sags to ~3 mV: under the hard-short mV limit, but it flickers."""
    c = classify_half_cycle(half_cycle(0.1, "soft", seed=seed))
    assert c.end_abs_V < CCDThresholds().hard_short_V
    assert c.kind == "soft_short"


def test_noisy_residual_of_a_metallic_short_is_still_hard() -> None:
    """20 % noise on a 0.1 mV residual is tiny compared with the healthy level before it."""
    hc = half_cycle(0.1, "hard")
    rng = np.random.default_rng(9)
    v = np.abs(hc.V).copy()
    after = hc.t >= 900.0
    v[after] = 1e-4 * (1.0 + 0.2 * rng.standard_normal(np.count_nonzero(after)))
    assert classify_half_cycle(HalfCycle(0.1, hc.t, np.abs(v))).kind == "hard_short"


def test_hard_short_event_time_is_found() -> None:
    c = classify_half_cycle(half_cycle(0.6, "hard", t_event=700.0))
    assert c.event_time_s == pytest.approx(700.0, abs=2 * DT)
    assert c.end_abs_V < 0.005
    assert c.drop_fraction > 0.9


def test_low_resistance_cell_at_a_few_mV_is_not_a_short() -> None:
    """0.1 mA/cm² on a 30 Ω·cm² cell sits at ~3 mV the whole time: that is not a collapse."""
    rng = np.random.default_rng(0)
    t = np.arange(0.0, DURATION, DT)
    v = 0.1e-3 * 30.0 * (1.0 + 0.005 * rng.standard_normal(t.size))
    assert classify_half_cycle(HalfCycle(0.1, t, v)).kind == "normal"


def test_instrument_short_end_reason_is_a_hard_short() -> None:
    hc = half_cycle(0.4)
    c = classify_half_cycle(HalfCycle(0.4, hc.t, hc.V, "short_circuit"))
    assert c.kind == "hard_short"


def test_contact_loss_needs_the_cutoff_and_a_rising_voltage() -> None:
    hc = half_cycle(0.4, "contact_loss")
    # The same rising trace without a cutoff end reason is just a (bad-looking) normal step.
    assert classify_half_cycle(HalfCycle(0.4, hc.t, hc.V, "time")).kind == "normal"


def _ladder(fail_at: float | None, kind: str, step: float = 0.1, top: float = 1.0):
    cycles = []
    js = np.round(np.arange(step, top + step / 2, step), 10)
    for n, j in enumerate(js):
        for half in range(2):
            idx = 2 * n + half
            this = kind if (fail_at is not None and np.isclose(j, fail_at) and half == 1) else "normal"
            cycles.append(half_cycle(float(j), this, index=idx, seed=idx))
            if this != "normal":
                return cycles
    return cycles


@pytest.mark.parametrize(("kind", "failure"), [("hard", "hard"), ("soft", "soft")])
@pytest.mark.parametrize("fail_at", [0.3, 0.6, 0.9])
def test_ccd_from_a_current_ladder(kind, failure, fail_at) -> None:
    res = critical_current_density(_ladder(fail_at, kind))
    assert res.ccd_mA_cm2 == pytest.approx(fail_at)
    # The plating half at the failing j passed, but a current density counts as passed only
    # when all its half-cycles did: the last passed one is the step below.
    assert res.last_passed_mA_cm2 == pytest.approx(round(fail_at - 0.1, 9))
    assert res.failure_kind == failure
    assert res.failure_index == len(res.steps) - 1
    assert res.contact_loss_index is None
    assert all(s.kind == "normal" for s in res.steps[:-1])


def test_short_in_first_half_of_a_step_reports_previous_j_as_last_passed() -> None:
    cycles = [half_cycle(0.1, index=0), half_cycle(0.1, index=1), half_cycle(0.2, "hard", index=2)]
    res = critical_current_density(cycles)
    assert res.ccd_mA_cm2 == pytest.approx(0.2)
    assert res.last_passed_mA_cm2 == pytest.approx(0.1)
    assert res.failure_index == 2


def test_contact_loss_is_not_a_ccd() -> None:
    cycles = [half_cycle(0.1, index=0), half_cycle(0.1, index=1), half_cycle(0.2, "contact_loss", index=2)]
    res = critical_current_density(cycles)
    assert res.ccd_mA_cm2 is None
    assert res.failure_kind == "none"
    assert res.contact_loss_index == 2
    assert res.last_passed_mA_cm2 == pytest.approx(0.1)


def test_no_failure() -> None:
    res = critical_current_density(_ladder(None, "normal", top=0.5))
    assert res.ccd_mA_cm2 is None
    assert res.failure_kind == "none"
    assert res.last_passed_mA_cm2 == pytest.approx(0.5)


def test_thresholds_are_settable_and_recorded() -> None:
    soft = half_cycle(0.5, "soft")
    strict = CCDThresholds(soft_noise_rel=0.5)  # demand 50 % flicker: the fall is a short, but not soft
    assert classify_half_cycle(soft).kind == "soft_short"
    assert classify_half_cycle(soft, thresholds=strict).kind == "hard_short"
    res = critical_current_density([soft], strict)
    d = json.loads(json.dumps(res.as_dict(), allow_nan=False))
    assert d["conventions"]["thresholds"]["soft_noise_rel"] == 0.5
    assert d["steps"][0]["kind"] == "hard_short"


def test_end_reason_enum_members_are_understood() -> None:
    from labctl.steps import EndReason

    hc = half_cycle(0.4, "contact_loss")
    rec = {"j": 0.4, "t": hc.t, "V": hc.V, "end_reason": EndReason.VOLTAGE_ABOVE}
    assert classify_half_cycle(rec).kind == "contact_loss"
    assert classify_half_cycle(HalfCycle(0.4, hc.t, hc.V, EndReason.SHORT_CIRCUIT)).kind == "hard_short"


def test_mapping_records_are_accepted() -> None:
    hc = half_cycle(0.3, "hard")
    rec = {"current_density_mA_cm2": 0.3, "t": hc.t, "V": hc.V, "end_reason": "completed"}
    assert critical_current_density([rec]).failure_kind == "hard"


def test_bad_inputs_raise_named_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        critical_current_density([])
    with pytest.raises(ValueError, match="half-cycle 0: t and V"):
        classify_half_cycle(HalfCycle(0.1, np.arange(10.0), np.ones(9)))
    with pytest.raises(ValueError, match="missing key 'V'"):
        critical_current_density([{"j": 0.1, "t": np.arange(10.0)}])
    with pytest.raises(ValueError, match="at least 5 samples"):
        classify_half_cycle(HalfCycle(0.1, np.arange(3.0), np.ones(3)))
