"""``arrhenius`` end to end on real drivers: ChamberChannel(E4980A, Espec or Eurotherm)
-> pyvisa-py / pyserial / pymodbus -> emulators sharing ONE simulated cell (the
cell's temperature follows the chamber, σ(T) follows the cell) -> the analysis
recovers Ea within 0.01 eV. A chamber alarm ends the run with its reason, the
meter safe and the chamber in standby."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drivers.composite import ChamberChannel
from drivers.keysight.e4980a import create as create_lcr
from drivers.sim import SimParams
from drivers.sim.transport import sigma_at
from drivers.sim.wire.e4980a import serve as serve_lcr
from drivers.sim.wire.e4980a import shared_cell
from labctl.engine import Engine, RunState
from labctl.events import Samples
from labctl.protocol import Cell
from labctl.registry import driver_factory, emulator_factory
from labctl.storage import RunFileWriter, open_run
from protocols import arrhenius

SPEED = 600.0
#: A cell whose bulk arc (90 kHz at 25 °C, ~1 MHz at 80 °C) and spike are inside 20 Hz..2 MHz;
#: a fast chamber (τ 60 s, cell lag 10 s) so five temperatures take ~30 min of cell time.
TRUTH = {"sigma": 1e-6, "thickness": 200.0, "area": 1.0, "tau_chamber": 60.0, "tau_cell": 10.0}


def values(**overrides: str) -> dict:
    given = {
        "temperatures": "20,35,50,65,80",
        "tolerance": "0.3",
        "settle_time": "60",
        "timeout": "0.5",
        "f_start": "2e6",
        "f_stop": "20",
        "r_leads": "0.25",
        **overrides,
    }
    return arrhenius.PROTOCOL.validate(given)


def run(chamber_model: str, p: SimParams, path: Path, given: dict, action=None):
    """Both emulators on one cell; the real drivers in a ChamberChannel; the engine."""
    cell = shared_cell(p, "ss", SPEED)
    with (
        serve_lcr(p, cell=cell) as lcr,
        emulator_factory(chamber_model)(p, port=0, speed=SPEED, cell_type="ss", cell=cell) as chamber,
    ):
        channel = ChamberChannel(
            create_lcr(lcr.resource, {"clock_speed": SPEED, "timeout": 1.0}),
            driver_factory(chamber_model)(chamber.resource, {"timeout": 1.0}, None),
        )
        writer = RunFileWriter(path)
        sinks: list = [writer]
        if action is not None:
            sinks.append(OnFirstSamples(lambda: action(chamber)))
        t0 = time.monotonic()
        try:
            outcome = Engine(channel, sinks=sinks).run(
                arrhenius.PROTOCOL, given, Cell(type="ss", area_cm2=p.area, thickness_um=p.thickness)
            )
        finally:
            writer.close()
        wall = time.monotonic() - t0
        s = lcr.model.settings
        assert not s.bias_on and not lcr.model.measuring and s.trigger_source == "HOLD" and s.level == 0.0
        assert chamber.mode in ("STANDBY", "standby") and not chamber.plant.running
    return outcome, wall


class OnFirstSamples:
    def __init__(self, action) -> None:
        self.action = action
        self.fired = False

    def handle(self, event) -> None:
        if isinstance(event, Samples) and not self.fired:
            self.fired = True
            self.action()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("chamber_model", "ea", "seed"), [("espec", 0.35, 1), ("eurotherm", 0.45, 2)])
def test_arrhenius_recovers_ea_within_10_meV(tmp_path, chamber_model, ea, seed):
    p = SimParams(**TRUTH, ea=ea, seed=seed)
    outcome, wall = run(chamber_model, p, tmp_path / "arrhenius.h5", values())
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert outcome.results["ea_eV"] == pytest.approx(ea, abs=0.01)
    for row in outcome.results["table"]:
        assert row["T_C"] == pytest.approx(row["T_set_C"], abs=0.3)
        assert row["sigma_S_cm"] == pytest.approx(float(sigma_at(p, row["T_C"])), rel=0.02)
    with open_run(tmp_path / "arrhenius.h5") as stored:
        assert stored.status == "completed"
        instrument = stored.meta["instrument"]
        assert instrument["model"] == "Keysight Technologies E4980A"
        assert instrument["chamber"]["driver"] == chamber_model
        kinds = [s.kind for s in stored.steps]
        assert kinds.count("SetTemperature") == 6 and kinds.count("Impedance") == 5
    assert wall < 20.0


ALARMS = {
    "espec": (lambda chamber: chamber.raise_alarm(13), "Espec chamber alarm"),
    "eurotherm": (lambda chamber: chamber.raise_alarm(1), "Eurotherm controller reports alarm 1"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chamber_model", list(ALARMS))
def test_chamber_alarm_ends_the_run_with_its_reason(tmp_path, chamber_model):
    raise_alarm, reason = ALARMS[chamber_model]
    p = SimParams(**TRUTH, seed=3)
    outcome, wall = run(chamber_model, p, tmp_path / "alarm.h5", values(), action=raise_alarm)
    assert outcome.status is RunState.FAILED and reason in outcome.error
    assert "safe state failed" not in outcome.error
    assert wall < 10.0
    with open_run(tmp_path / "alarm.h5") as stored:
        assert stored.status == "failed" and reason in stored.error
        assert "safe" in [e["state"] for e in stored.events]


def test_lab_file_instruments_identify_through_the_cli(tmp_path):
    """An LCR emulator started with its chamber on the same cell (``chamber=`` option),
    named in a lab file: ``labctl instruments identify`` reaches both real drivers."""
    import json

    from click.testing import CliRunner

    from labctl.cli import main

    p = SimParams(**TRUTH)
    with serve_lcr(p, speed=SPEED, cell_type="ss", chamber="eurotherm") as lcr:
        assert lcr.chamber.plant.sim is lcr.sim  # one cell in one chamber
        lab = tmp_path / "lab.toml"
        lab.write_text(
            f'[instruments.lcr]\ndriver = "e4980a"\nresource = "{lcr.resource}"\n'
            f"options = {{ clock_speed = {SPEED} }}\n"
            f'[instruments.lcr.channels.1]\nchamber = "oven"\n'
            f'[instruments.oven]\ndriver = "eurotherm"\nresource = "{lcr.chamber.resource}"\n'
        )
        runner = CliRunner()
        for name, model in (("lcr", "Keysight Technologies E4980A"), ("oven", "Eurotherm 3216")):
            result = runner.invoke(main, ["instruments", "identify", name, "--lab", str(lab), "--json"])
            assert result.exit_code == 0, result.output
            assert json.loads(result.output)["model"] == model
