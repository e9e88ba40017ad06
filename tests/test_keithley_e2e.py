"""Protocols end to end on the Keithley SMUs: Engine → driver → pymeasure → pyvisa-py →
TCP → wire emulator → cell physics, and the analysis recovers the emulated truth.

An SMU has no impedance, so the protocols it runs are the DC ones: ccd, li_cu_ce,
lsv (as a staircase), cycling (symmetric and full cell) and a DC-polarisation hold.
Protocol parameters are shortened to keep cell times of 10²–10⁴ s; every run
writes a run file that is read back.

The protocol runs lockstep with the emulated cell: both share one ``VirtualClock``,
which advances only while the driver waits for its next reading. At N× real time
(the previous set-up) a millisecond of host latency was N ms of cell current
after a cutoff and between readings, so a loaded CI machine turned scheduling
jitter into charge error (li_cu_ce failed ~1 run in 4 at 1500×). In lockstep a
run does not depend on the host's speed at all. Times within a step still come
from the instrument's stamps (``drivers.keithley.timebase``); the real-time path
(``ScaledClock``) is exercised by ``test_keithley_faults`` and the impedance refusal test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.sim import SimChannel, SimParams
from drivers.sim.wire.faults import FaultPlan, install
from labctl import registry
from labctl.analysis.transference import initial_current, steady_state_current, transference_number
from labctl.clock import RealClock, VirtualClock
from labctl.engine import Engine, RunOutcome, RunState
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.registry import driver_factory, emulator_factory
from labctl.steps import ConstantVoltage, EndReason, Limits, Rest
from labctl.storage import RunFileWriter, open_run

pytestmark = pytest.mark.timeout(120)

BOTH = ("keithley2450", "keithley2400")


@dataclass
class WireRun:
    outcome: RunOutcome
    truth: dict[str, Any]  # the emulated cell's truth at the end of the run
    events: list[dict[str, Any]]  # the simulator's record of notable events
    output_on: bool  # the emulated SMU's output after the run
    path: Path
    wall: float


def run_on_emulator(
    model: str,
    protocol: str | Protocol,
    params: Mapping[str, Any],
    tmp_path: Path,
    *,
    sim: Mapping[str, Any] | None = None,
    speed: float | None = None,
    cell_type: str | None = None,
    options: Mapping[str, Any] | None = None,
    sinks: Sequence[Any] = (),
    inject: Any = None,
    faults: Sequence[str] = (),
    transport_options: Mapping[str, Any] | None = None,
) -> WireRun:
    """Serve the model's emulator, connect its driver, run the protocol with a run file.

    ``speed=None`` (the default) runs in lockstep: the emulated cell and the driver share
    one ``VirtualClock``, so cell time passes only while the driver waits for its next
    reading and host latency (a loaded CI machine) cannot turn into cell time or charge.
    A ``speed`` runs the emulator at N× real time with the driver on ``ScaledClock(N)``.

    ``faults`` are ``KIND[@WHEN]`` faults armed on the emulator (``labctl sim-server
    --fault``); at a reply count or a cell time they land on the same reading in every
    lockstep run. ``inject(server)`` returns a sink that may inject faults during the run. The
    emulator starts with its output relay open (``off_mode="HIMP"``, a saved
    power-on setup) so the cell has no history before the driver connects.
    """
    import time

    proto = registry.get_protocol(protocol) if isinstance(protocol, str) else protocol
    values = proto.validate(dict(params)) if isinstance(protocol, str) else dict(params)
    sim_params = SimParams(**(sim or {}))
    kind = cell_type or proto.cell_type_for(values)
    path = tmp_path / f"{proto.name}-{model}.h5"
    clock = VirtualClock() if speed is None else RealClock()
    timing: dict[str, Any] = {"clock": clock} if speed is None else {"speed": speed}
    serving = {**timing, **(transport_options or {})}
    with emulator_factory(model)(sim_params, cell_type=kind, off_mode="HIMP", **serving) as server:
        install(server, [FaultPlan.parse(text) for text in faults], model)
        opts = {"timeout_ms": 2000, **({} if speed is None else {"clock_speed": speed}), **(options or {})}
        channel = driver_factory(model)(server.resource, opts, clock)
        cell = Cell(kind, sim_params.area, sim_params.thickness)
        if isinstance(protocol, str):
            cell = proto.resolve_cell(values, {"area_cm2": sim_params.area, "thickness_um": sim_params.thickness})
        writer = RunFileWriter(path)
        extra = [inject(server)] if inject is not None else []
        engine = Engine(channel, sinks=[*extra, *sinks, writer])
        start = time.perf_counter()
        try:
            outcome = engine.run(proto, values, cell, simulation={**sim_params.as_dict(), "emulator": model})
        finally:
            writer.close()
        wall = time.perf_counter() - start
        return WireRun(outcome, server.truth(), list(server.cell.events), server.output_on, path, wall)


def run_on_simulator(protocol: str, params: Mapping[str, Any], sim: Mapping[str, Any] | None = None) -> RunOutcome:
    """The same protocol on the physics simulator (virtual time): the reference."""
    proto = registry.get_protocol(protocol)
    values = proto.validate(dict(params))
    channel = SimChannel(SimParams(**(sim or {})), proto.cell_type_for(values), VirtualClock())
    return Engine(channel).run(proto, values, proto.resolve_cell(values, channel.cell_info()))


def check_run_file(run: WireRun, model: str, status: str = "completed") -> None:
    with open_run(run.path) as rf:
        assert rf.status == status
        inst = rf.meta["instrument"]
        assert inst["driver"] == model and inst["model"].endswith(model[-4:])
        assert inst["serial"] and inst["firmware"] and inst["resource"].endswith("::SOCKET")
        assert rf.n_samples == sum(len(r.data) for r in run.outcome.steps)
    assert not run.output_on, "the SMU output must be off after the run"


# --- the protocols ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", BOTH)
def test_ccd_finds_the_critical_current_density(model: str, tmp_path: Path) -> None:
    """Truth CCD 0.35 mA/cm²; the ladder 0.1, 0.2, ... shorts (hard) at 0.4."""
    run = run_on_emulator(
        model,
        "ccd",
        {"half_cycle": "0.05", "sample_period": "2"},
        tmp_path,
        sim={"ccd": 0.35, "short_q0": 0.05},
    )
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    assert (res["ccd_mA_cm2"], res["last_passed_mA_cm2"], res["failure"]) == (0.4, 0.3, "hard")
    assert run.truth["model"]["shorted"] and run.truth["model"]["short_current_density_ma_cm2"] == pytest.approx(0.4)
    check_run_file(run, model)


def test_li_cu_coulombic_efficiency(tmp_path: Path) -> None:
    """Truth CE 0.98: CE_avg within 0.002 (Q_t 0.5 mAh/cm², Q_c 0.1, n = 3 at 1 mA/cm²)."""
    params = {"q_t": "0.5", "q_c": "0.1", "n": "3", "j": "1.0", "sample_period": "10"}
    run = run_on_emulator("keithley2450", "li_cu_ce", params, tmp_path, sim={"ccd": 5.0})
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    assert res["valid"]
    assert abs(res["ce_avg"] - 0.98) < 0.002
    # every plated and stripped coulomb the emulated cell saw is in the run file (to 0.1 %)
    plated = -sum(r.charge for r in run.outcome.steps if r.charge < 0)
    assert plated == pytest.approx(run.truth["model"]["plated_c"], rel=1e-3)
    nucleation = next(e for e in run.events if e["event"] == "nucleation")
    assert res["nucleation_dip_mV"] == pytest.approx(nucleation["dip"] * 1e3, abs=5.0)
    check_run_file(run, "keithley2450")


@pytest.mark.parametrize("model", BOTH)
def test_lsv_staircase_finds_the_oxidation_onset(model: str, tmp_path: Path) -> None:
    """Truth ESW 4.0 V; a 4 mV staircase at 2 mV/s from OCV 3.5 V: onset within 50 mV."""
    params = {"upper": "4.3", "rate": "2", "resolution": "4", "rest": "10"}
    run = run_on_emulator(model, "lsv", params, tmp_path, sim={"esw": 4.0, "ocv_bare": 3.5})
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    assert abs(res["onset_V"] - 4.0) < 0.05
    assert res["sweep_end_reason"] == "completed" and res["E_max_V"] == pytest.approx(4.3, abs=2e-3)
    sweep = run.outcome.steps[-1].data
    stairs = np.diff(sweep["E"])
    assert np.median(stairs) == pytest.approx(4e-3, abs=2e-4)  # one stair per sample period
    check_run_file(run, model)


@pytest.mark.parametrize("model", BOTH)
def test_symmetric_cycling_matches_the_simulator(model: str, tmp_path: Path) -> None:
    params = {"rates": "0.2,0.5", "cycles": "2", "half_cycle": "0.05", "sample_period": "5"}
    run = run_on_emulator(model, "cycling", params, tmp_path)
    ref = run_on_simulator("cycling", params).results
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    assert res["cycles_completed"] == ref["cycles_completed"] == 4
    np.testing.assert_allclose(res["hysteresis_V"], ref["hysteresis_V"], rtol=0.03)
    np.testing.assert_allclose(res["mean_overpotential_V"], ref["mean_overpotential_V"], rtol=0.05)
    check_run_file(run, model)


def test_full_cell_cycling_capacity_and_efficiency(tmp_path: Path) -> None:
    """Li|SE|NMC, 0.5 mAh/cm² at 1 mA/cm²: capacity as on the simulator, CE near the truth.

    Charge and discharge end on voltage cutoffs, which no host can predict: the
    source runs on for one round trip (×2000 here) after the reading that met it,
    so CE carries a few 0.1 % of that."""
    params = {"mode": "full", "rates": "1.0", "cycles": "2", "sample_period": "10", "rest": "60"}
    sim = {"capacity": 0.5}
    run = run_on_emulator("keithley2450", "cycling", params, tmp_path, sim=sim)
    ref = run_on_simulator("cycling", params, sim).results
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    np.testing.assert_allclose(res["discharge_capacity_mAh_cm2"], ref["discharge_capacity_mAh_cm2"], rtol=0.02)
    np.testing.assert_allclose(res["coulombic_efficiency"], 0.998, atol=0.02)
    check_run_file(run, "keithley2450")


def dc_polarisation() -> Protocol:
    """OCV rest, then ΔV = 10 mV vs OCV until the current is steady: the hold of a
    Bruce–Vincent–Evans measurement (its EIS steps need an impedance analyser)."""

    def plan(values: Mapping[str, Any], cell: Cell):
        rest = yield Rest(duration=60.0, sample_period=2.0, label="OCV")
        hold = yield ConstantVoltage(
            voltage=0.01,
            vs_ocv=True,
            limits=Limits(max_time=1500.0, steady_slope=2e-9, steady_window=200.0),
            sample_period=2.0,
            label="ΔV 10 mV",
        )
        t = hold.data["t"] - hold.t_start
        return {
            "ocv_V": rest.last["E"],
            "end_reason": hold.end_reason.value,
            "I0_A": initial_current(t, hold.data["I"], "first_sample", t_step=0.0).I0_A,
            "Iss_A": steady_state_current(t, hold.data["I"]).Iss_A,
            "E_hold_V": float(np.median(hold.data["E"])),
        }

    return Protocol(
        name="dc_polarisation",
        version="1",
        title="DC polarisation hold",
        cell_type="li_li",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"Rest", "ConstantVoltage"}),
    )


@pytest.mark.parametrize("model", BOTH)
def test_dc_polarisation_hold_recovers_i0_iss_and_t_plus(model: str, tmp_path: Path) -> None:
    run = run_on_emulator(model, dc_polarisation(), {"x": 1.0}, tmp_path, cell_type="li_li")
    res = run.outcome.results
    assert run.outcome.status == RunState.COMPLETED, run.outcome.error
    truth = [e for e in run.events if e["event"] == "polarization"][-1]
    assert res["end_reason"] == EndReason.STEADY.value
    assert res["E_hold_V"] == pytest.approx(res["ocv_V"] + 0.01, abs=1e-4)  # held at OCV + ΔV
    assert res["I0_A"] == pytest.approx(truth["i0"], rel=0.01)
    assert res["Iss_A"] == pytest.approx(truth["iss"], rel=0.01)
    t_plus = transference_number(0.01, res["I0_A"], res["Iss_A"], truth["r0_int"], truth["rss_int"]).t_plus
    assert t_plus == pytest.approx(truth["t_plus"], abs=0.02)
    check_run_file(run, model)


def test_smu_refuses_impedance_before_the_run(tmp_path: Path) -> None:
    """Transference needs EIS: an SMU cannot, and the engine says so before anything runs."""
    with emulator_factory("keithley2450")(SimParams(), speed=100, cell_type="li_li") as server:
        channel = driver_factory("keithley2450")(server.resource, {"clock_speed": 100}, RealClock())
        proto = registry.get_protocol("transference")
        values = proto.validate({"thickness": "100", "area": "1"})
        with pytest.raises(ValueError, match="Impedance"):
            Engine(channel).start(proto, values, proto.resolve_cell(values, None))
        assert not server.output_on


def test_pause_holds_the_cell_at_zero_current_and_resume_goes_forward(tmp_path: Path) -> None:
    """Pause in a galvanostatic step: the SMU holds 0 A (open circuit, still measured);
    resume continues the step with the charge left, never replays it."""
    import threading
    import time

    def plan(values: Mapping[str, Any], cell: Cell):  # a protocol generator
        from labctl.steps import ConstantCurrent

        step = yield ConstantCurrent(current=-5e-4, limits=Limits(max_charge=0.09, max_time=1000.0), sample_period=2.0)
        return {"charge": step.charge, "end_reason": step.end_reason.value}

    proto = Protocol(
        name="plate",
        version="1",
        title="plate",
        cell_type="li_li",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"ConstantCurrent"}),
    )
    clock = VirtualClock()  # lockstep: no cell time passes between the last reading and the hold
    with emulator_factory("keithley2450")(SimParams(), clock=clock, cell_type="li_li", off_mode="HIMP") as server:
        channel = driver_factory("keithley2450")(server.resource, {"timeout_ms": 30000}, clock)
        engine = Engine(channel)
        paused = threading.Event()

        class PauseOnce:
            def handle(self, event: Any) -> None:
                from labctl.events import Samples

                if isinstance(event, Samples) and not paused.is_set():
                    paused.set()
                    engine.request_pause()

        engine.sinks.insert(0, PauseOnce())
        handle = engine.start(proto, {"x": 1.0}, Cell("li_li", 1.0, 100.0))
        assert paused.wait(60.0)  # hang guards only
        deadline = time.monotonic() + 60.0
        while handle.state != RunState.PAUSED and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        state = server.instrument.state
        held = (state.output, state.source, state.level["CURR"])
        handle.resume()
        outcome = handle.wait(120.0)
    assert held == (True, "CURR", 0.0)
    assert outcome is not None and outcome.status == RunState.COMPLETED, outcome
    assert outcome.results["end_reason"] == "charge"
    # forward, not replayed (a replay would pass twice the charge); in lockstep no cell time
    # passes between the last reading and the hold, so the charge is the limit's to 0.1 %
    assert abs(outcome.results["charge"]) == pytest.approx(0.09, rel=1e-3)
    assert not server.output_on
