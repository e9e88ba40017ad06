"""Every protocol the EmStat4 supports, end to end: Engine -> MethodSCRIPT driver ->
pyserial -> pseudo-terminal -> wire emulator -> cell physics, with the run file
written; the analysis must recover the emulated cell's truth with the simulator
tests' tolerances. Parameters are shortened (cell time runs `speed` x real time).
Arrhenius runs on a ChamberChannel: the driver plus the emulated cell's own
(simulated) chamber as the TemperatureController.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.composite import ChamberChannel
from drivers.palmsens import create_emstat4, create_nexus, create_pico
from drivers.sim import SimChannel, SimParams
from drivers.sim.wire.emstat import EmStatServer, serve_emstat4, serve_nexus, serve_pico
from labctl import registry
from labctl.channel import InstrumentInfo, TemperatureController
from labctl.clock import VirtualClock
from labctl.engine import Engine, RunOutcome, RunState
from labctl.storage import RunFileWriter, open_run

pytestmark = pytest.mark.timeout(90)

SERVE = {"emstat4": serve_emstat4, "nexus": serve_nexus, "emstat_pico": serve_pico}
CREATE = {"emstat4": create_emstat4, "nexus": create_nexus, "emstat_pico": create_pico}
MODEL_NAMES = {"emstat4": "EmStat4 HR", "nexus": "Nexus", "emstat_pico": "EmStat Pico"}


@dataclass
class Done:
    outcome: RunOutcome
    meta: dict[str, Any]
    steps: list[tuple[str, str, int]]  # kind, end reason, rows (samples or spectrum points)
    server: EmStatServer


class EmulatedCellChamber(TemperatureController):
    """The chamber the emulated cell sits in (the simulator's), as a TemperatureController:
    a stand-in for an Espec/Eurotherm driver, so arrhenius runs end to end."""

    name = "sim-chamber"

    def __init__(self, server: EmStatServer) -> None:
        self.device = server.device

    def identify(self) -> InstrumentInfo:
        return InstrumentInfo(driver="sim-chamber", model="simulated chamber")

    def read_temperature(self) -> float:
        return float(self.device.sim.bench.chamber.air(self.device.clock.now()))

    def set_temperature(self, celsius: float) -> None:
        self.device.sim.bench.chamber.set(celsius, self.device.clock.now())

    def standby(self) -> None:
        pass


def run_protocol(
    tmp_path: Path,
    name: str,
    params: dict[str, str],
    truth: SimParams,
    cell: str,
    speed: float,
    model: str = "emstat4",
    chamber: bool = False,
) -> Done:
    protocol = registry.get_protocol(name)
    values = protocol.validate({**params, "area": str(truth.area), "thickness": str(truth.thickness)})
    with SERVE[model](truth, speed=speed, cell_type=cell) as server:
        channel = CREATE[model](server.resource, {"clock_speed": speed, "timeout": 1.0}, None)
        if chamber:
            channel = ChamberChannel(channel, EmulatedCellChamber(server))
        writer = RunFileWriter(tmp_path / f"{name}.h5")
        try:
            outcome = Engine(channel, sinks=[writer]).run(protocol, values, protocol.resolve_cell(values, None))
        finally:
            writer.close()
        assert server.device.wait_idle(5.0)
        assert not server.device.cell_on, "the cell must be off at the end of the run"
    with open_run(tmp_path / f"{name}.h5") as run:
        steps = [
            (s.kind, str(s.end_reason), len(s.spectrum) if s.spectrum is not None else s.n_rows) for s in run.steps
        ]
        meta = dict(run.meta)
        assert run.status == outcome.status.value
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert meta["instrument"]["model"] == MODEL_NAMES[model]
    assert meta["instrument"]["serial"].startswith("SIM") and meta["instrument"]["driver"] == model
    return Done(outcome, meta, steps, server)


def sim_results(name: str, params: dict[str, str], truth: SimParams, cell: str) -> dict[str, Any]:
    """The same protocol on the physics simulator directly (virtual time)."""
    protocol = registry.get_protocol(name)
    values = protocol.validate(params)
    channel = SimChannel(truth, cell, VirtualClock())
    outcome = Engine(channel).run(protocol, values, protocol.resolve_cell(values, channel.cell_info()))
    assert outcome.status is RunState.COMPLETED, outcome.error
    return outcome.results


def test_eis_conductivity(tmp_path: Path) -> None:
    truth = SimParams(sigma=2e-4, thickness=150.0)
    done = run_protocol(tmp_path, "eis", {}, truth, "ss", speed=200)
    assert done.steps == [("Rest", "completed", 11), ("Impedance", "completed", 61)]
    sigma = done.outcome.results["sigma_S_cm"]
    assert sigma == pytest.approx(truth.sigma, rel=0.02)


def test_transference_number(tmp_path: Path) -> None:
    truth = SimParams(t_plus=0.3)
    done = run_protocol(tmp_path, "transference", {"rest": "10"}, truth, "li_li", speed=1000)
    kinds = [(k, reason) for k, reason, _ in done.steps]
    assert kinds == [
        ("Rest", "completed"),
        ("Impedance", "completed"),
        ("ConstantVoltage", "steady"),  # judged on the host, stopped with Z
        ("Impedance", "completed"),
        ("Impedance", "completed"),  # the drift check under the same bias
    ]
    assert done.outcome.results["t_plus"] == pytest.approx(truth.t_plus, abs=0.03)
    # The EIS under ΔV continued the hold: one polarisation at ΔV, none restarted by the sweep.
    polarisations = [e for e in done.server.device.sim.events if e["event"] == "polarization"]
    assert len(polarisations) == 2  # the EIS before (held at the measured OCV) and the ΔV hold
    hold, after = done.outcome.steps[2], done.outcome.steps[3]
    assert after.spectrum["E_dc"] == pytest.approx(hold.data["E"].mean(), abs=2e-4)  # same set point


def test_lsv_stability_window(tmp_path: Path) -> None:
    truth = SimParams(esw=4.3)
    done = run_protocol(tmp_path, "lsv", {"rest": "10", "resolution": "2"}, truth, "li_ss", speed=2000)
    assert done.steps[1][0] == "VoltageSweep"
    onset = done.outcome.results["onset_V"]
    assert onset == pytest.approx(truth.esw, abs=0.05)


def test_critical_current_density(tmp_path: Path) -> None:
    truth = SimParams(ccd=1.0)
    done = run_protocol(tmp_path, "ccd", {"start": "0.8", "sample_period": "5"}, truth, "li_li", speed=10000)
    results = done.outcome.results
    assert results["ccd_mA_cm2"] == pytest.approx(1.1)  # the first step above the truth
    assert results["last_passed_mA_cm2"] == pytest.approx(1.0)
    assert results["failure"] == "hard"


def test_li_cu_coulombic_efficiency(tmp_path: Path) -> None:
    truth = SimParams(ce=0.97)
    params = {"q_t": "0.5", "q_c": "0.1", "n": "3", "sample_period": "5"}
    done = run_protocol(tmp_path, "li_cu_ce", params, truth, "li_cu", speed=10000)
    results = done.outcome.results
    assert results["valid"]
    assert results["ce_avg"] == pytest.approx(truth.ce, abs=0.002)
    reasons = [reason for _, reason, _ in done.steps]
    # Charge limits as loop run time and the 1.0 V stripping cutoff, both on the instrument.
    assert reasons.count("voltage_above") == 2 and reasons.count("charge") == 8


def test_symmetric_cycling_matches_the_simulator(tmp_path: Path) -> None:
    truth = SimParams(j0=0.5)
    params = {"cycles": "3", "half_cycle": "0.1"}
    done = run_protocol(tmp_path, "cycling", params, truth, "li_li", speed=1000)
    results = done.outcome.results
    assert results["cycles_completed"] == 3
    reference = sim_results("cycling", params, truth, "li_li")
    got, want = results["mean_overpotential_V"], reference["mean_overpotential_V"]
    assert len(got) == len(want) == 6
    # Between steps the emulated cell rests at open circuit for the host's latency (a few ms
    # of wall time, seconds of cell time here), which the simulator does not: ~1 % apart.
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=0.03)
    assert all(math.isfinite(h) for h in results["hysteresis_V"])


def test_arrhenius_through_a_chamber_channel(tmp_path: Path) -> None:
    truth = SimParams(ea=0.4, tau_chamber=120.0, tau_cell=30.0)
    # r_leads: the lead resistance a lab measures on a shorted cell (the truth's r_series)
    params = {"temperatures": "25,45,65", "settle_time": "120", "tolerance": "0.5", "r_leads": str(truth.r_series)}
    done = run_protocol(tmp_path, "arrhenius", params, truth, "ss", speed=3000, chamber=True)
    results = done.outcome.results
    assert results["ea_eV"] == pytest.approx(truth.ea, abs=0.01)
    sigma_25 = [s for t, s in results["sigma_S_cm"].items() if abs(float(t) - 25.0) < 1.0]
    assert sigma_25 and sigma_25[0] == pytest.approx(truth.sigma, rel=0.02)
    assert [k for k, _, _ in done.steps].count("Impedance") == 3


def test_nexus_runs_a_galvanostatic_protocol(tmp_path: Path) -> None:
    done = run_protocol(tmp_path, "cycling", {"cycles": "1", "half_cycle": "0.05"}, SimParams(), "li_li", 2000, "nexus")
    assert done.outcome.results["cycles_completed"] == 1


def test_pico_runs_eis(tmp_path: Path) -> None:
    truth = SimParams(sigma=5e-4)
    done = run_protocol(tmp_path, "eis", {"rest": "2"}, truth, "ss", speed=200, model="emstat_pico")
    assert done.outcome.results["sigma_S_cm"] == pytest.approx(truth.sigma, rel=0.02)


def test_pico_refuses_galvanostatic_protocols_before_anything_runs() -> None:
    protocol = registry.get_protocol("li_cu_ce")
    values = protocol.validate({"area": "1", "thickness": "100"})
    with serve_pico(SimParams(), speed=10, cell_type="li_cu") as server:
        channel = create_pico(server.resource, {"clock_speed": 10, "timeout": 1.0}, None)
        engine = Engine(channel)
        with pytest.raises(ValueError, match="ConstantCurrent steps are not supported"):
            engine.start(protocol, values, protocol.resolve_cell(values, None))
        assert server.device.received == [] and server.device.scripts == []
        assert engine.state is RunState.PENDING
