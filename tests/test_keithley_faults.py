"""Faults on the Keithley SMUs end the run with a clear recorded reason, the output off,
no hang, and a readable run file.

Transport faults are injected at the emulator's socket (no reply, a garbled reply,
the connection dropped mid-step), instrument faults in the emulated SMU (an error
code in its queue, the load driving the source into its limit). Each is injected
from a sink while a step is running, so it hits a reading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labctl.engine import RunState
from labctl.events import Samples
from labctl.steps import EndReason
from labctl.storage import open_run
from tests.test_keithley_e2e import BOTH, dc_polarisation, run_on_emulator

pytestmark = pytest.mark.timeout(60)

CYCLING = {"rates": "0.5", "cycles": "3", "half_cycle": "0.05", "sample_period": "2"}
FAST_FAIL = {"timeout_ms": 300, "safe_timeout_ms": 300}


def after_blocks(n: int, fault: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A sink that injects ``fault(server)`` when the n-th sample block of a step arrives."""

    def make(server: Any) -> Any:
        class Injector:
            def __init__(self) -> None:
                self.blocks = 0
                self.done = False

            def handle(self, event: Any) -> None:
                if isinstance(event, Samples) and not self.done:
                    self.blocks += 1
                    if self.blocks >= n and event.index >= 1:  # inside the second step
                        self.done = True
                        fault(server)

        return Injector()

    return make


FAULTS = {
    "no_reply": (lambda s: setattr(s.faults, "no_reply", 1), "no reply within 300 ms"),
    "garbled": (lambda s: setattr(s.faults, "garble", 1), "expected"),
    "dropped": (lambda s: setattr(s.faults, "drop_after_sends", 0), "closed the connection"),
    "error_code": (
        lambda s: s.inject_error(-314, "Save/recall memory lost"),
        "instrument error -314: Save/recall memory lost",
    ),
}
#: The same transport faults, scheduled on the emulator at a cell time of the second
#: half-cycle (``sim-server --fault``): with the run in lockstep they hit the same reading.
SCHEDULED = {"no_reply": "no-reply@t=250s", "garbled": "garbled@t=250s", "dropped": "drop-link@t=250s"}


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_the_run_safely(model: str, fault: str, tmp_path: Path) -> None:
    inject, expected = FAULTS[fault]
    if fault in SCHEDULED:
        run = run_on_emulator(model, "cycling", CYCLING, tmp_path, options=FAST_FAIL, faults=[SCHEDULED[fault]])
    else:
        run = run_on_emulator(model, "cycling", CYCLING, tmp_path, options=FAST_FAIL, inject=after_blocks(2, inject))
    assert run.outcome.status == RunState.FAILED
    assert run.outcome.error.startswith("instrument error: ") and expected in run.outcome.error
    assert not run.output_on, "output left on after the fault"
    assert run.wall < 10.0, "the run must not hang on a fault"
    with open_run(run.path) as rf:
        assert rf.status == "failed" and expected in rf.error
        assert rf.n_samples > 0 and len(rf.steps) >= 1  # what was measured before the fault is kept


def test_dropped_connection_reconnects_to_switch_the_output_off(tmp_path: Path) -> None:
    """A real SMU keeps sourcing when its LAN cable is pulled: safe_state reconnects to stop it."""
    inject, _ = FAULTS["dropped"]
    seen: dict[str, bool] = {}

    def record(server: Any) -> None:
        inject(server)
        seen["on_when_dropped"] = server.output_on

    run = run_on_emulator(
        "keithley2450", "cycling", CYCLING, tmp_path, speed=1000, options=FAST_FAIL, inject=after_blocks(2, record)
    )
    assert seen["on_when_dropped"] and not run.output_on


@pytest.mark.parametrize("model", BOTH)
def test_compliance_trip_ends_the_step_and_the_ccd_as_contact_loss(model: str, tmp_path: Path) -> None:
    """The load drives the current source to its voltage limit (1.5 V, below the 2 V cutoff):
    the step ends by COMPLIANCE, the output goes off, CCD stops as contact loss (no CCD)."""
    run = run_on_emulator(
        model,
        "ccd",
        {"half_cycle": "0.05", "sample_period": "2"},
        tmp_path,
        sim={"ccd": 5.0},
        options={"compliance_voltage": 1.5},
        faults=["compliance@t=300s"],  # lockstep: the same reading of the second half-cycle every run
    )
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    last = run.outcome.steps[-1]
    assert last.end_reason is EndReason.COMPLIANCE
    assert "hardware compliance" in last.message and "±1.5 V" in last.message and "output switched off" in last.message
    res = run.outcome.results
    assert res["ccd_mA_cm2"] is None and res["contact_loss_index"] == res["half_cycles"] - 1
    assert not run.output_on
    with open_run(run.path) as rf:
        assert rf.steps[-1].end_reason is EndReason.COMPLIANCE


@pytest.mark.parametrize("model", BOTH)
def test_compliance_trip_ends_a_potentiostatic_hold(model: str, tmp_path: Path) -> None:
    run = run_on_emulator(
        model,
        dc_polarisation(),
        {"x": 1.0},
        tmp_path,
        cell_type="li_li",
        options={"compliance_current": 1e-3},
        faults=["compliance@t=400s"],  # lockstep: 340 s into the hold, enough for its Iss window
    )
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    assert run.outcome.results["end_reason"] == EndReason.COMPLIANCE.value
    hold = run.outcome.steps[-1]
    assert "current limit ±0.001 A" in hold.message and abs(hold.last["I"]) == pytest.approx(1e-3)
    assert not run.output_on
