"""E4980A end to end: driver -> pyvisa-py (TCPIP SOCKET) -> emulator -> cell physics.

The ``eis`` protocol recovers σ within 2 % on cells whose bulk arc and the
start of the blocking spike lie between 20 Hz and 2 MHz; faults injected in the
emulator end the run with a clear recorded reason, the meter in its safe state
(bias off, nothing measuring, no trigger, 0 V test signal), no hang, and a
readable run file.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from drivers.keysight.e4980a import create
from drivers.sim import SimParams
from drivers.sim.drive import context, drive
from drivers.sim.wire.e4980a import E4980AServer, serve
from labctl.engine import Engine, RunState
from labctl.events import SpectrumPoints
from labctl.protocol import Cell
from labctl.registry import driver_factory, emulator_factory
from labctl.steps import EndReason, Impedance
from labctl.storage import RunFileWriter, open_run
from protocols import eis

SPEED = 100.0


def cell_of(p: SimParams) -> Cell:
    return Cell(type="ss", area_cm2=p.area, thickness_um=p.thickness)


def eis_values(**overrides: str) -> dict:
    given = {"f_start": "2e6", "f_stop": "20", "rest": "2", "r_leads": "0.25", **overrides}
    return eis.PROTOCOL.validate(given)


def assert_meter_safe(server: E4980AServer) -> None:
    s = server.model.settings
    assert not s.bias_on and not server.model.measuring
    assert s.trigger_source == "HOLD" and s.level == 0.0


class OnFirstSpectrum:
    """A sink that does something once, when the first impedance points arrive (mid-step)."""

    def __init__(self, action) -> None:
        self.action = action
        self.fired = False

    def handle(self, event) -> None:
        if isinstance(event, SpectrumPoints) and not self.fired:
            self.fired = True
            self.action()


def run_eis(server: E4980AServer, p: SimParams, path: Path, values: dict, *extra_sinks, **options):
    channel = create(server.resource, {"clock_speed": SPEED, "timeout": 0.5, **options})
    writer = RunFileWriter(path)
    try:
        outcome = Engine(channel, sinks=[writer, *extra_sinks]).run(eis.PROTOCOL, values, cell_of(p))
    finally:
        writer.close()
    return outcome


def test_registry_names_resolve_and_identify_over_visa():
    p = SimParams()
    server = emulator_factory("e4980a")(p, port=0, speed=SPEED, cell_type="auto")
    with server:
        channel = driver_factory("e4980a")(server.resource, {"clock_speed": SPEED}, None)
        channel.open()
        try:
            info = channel.identify()
        finally:
            channel.close()
    assert info.model == "Keysight Technologies E4980A" and info.serial and info.firmware
    assert info.resource.startswith("TCPIP::127.0.0.1::") and info.resource.endswith("::SOCKET")


def test_sweep_is_the_cells_spectrum():
    p = SimParams(sigma=1e-6, thickness=200.0, seed=4)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        channel = create(server.resource, {"clock_speed": SPEED})
        channel.open()
        ran = drive(channel, Impedance(f_start=2e6, f_stop=20, points_per_decade=5, amplitude=0.01), context(channel))
        channel.close()
        sim = server.sim
        truth = sim.bench.cell.impedance(sim.bench.state, ran.data["freq"], 25.0)
    assert ran.outcome.end_reason is EndReason.COMPLETED and len(ran.data) == 26
    z = ran.data["z_re"] + 1j * ran.data["z_im"]
    assert np.max(np.abs(z - truth) / np.abs(truth)) < 0.02  # the simulator's 0.3 % noise
    assert np.all(np.diff(ran.data["t"]) > 0)


@pytest.mark.parametrize(
    ("sigma", "thickness", "area", "eps_r", "seed"),
    [(1e-6, 200.0, 1.0, 20.0, 1), (3e-6, 500.0, 0.5, 50.0, 2), (1e-7, 100.0, 2.0, 10.0, 3)],
)
def test_eis_recovers_sigma_within_2_percent(tmp_path, sigma, thickness, area, eps_r, seed):
    p = SimParams(sigma=sigma, thickness=thickness, area=area, eps_r=eps_r, seed=seed)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        outcome = run_eis(server, p, tmp_path / "eis.h5", eis_values(r_leads=str(p.r_series)))
        assert_meter_safe(server)
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert outcome.results["sigma_S_cm"] == pytest.approx(sigma, rel=0.02)
    with open_run(tmp_path / "eis.h5") as run:
        assert run.status == "completed"
        assert run.meta["instrument"]["model"] == "Keysight Technologies E4980A"
        spectrum = run.spectra()
        assert spectrum["freq"].min() == pytest.approx(20.0) and spectrum["freq"].max() == pytest.approx(2e6)
        assert [s.end_reason for s in run.steps] == [EndReason.COMPLETED, EndReason.COMPLETED]


def test_below_20_hz_is_refused_before_the_meter_measures(tmp_path):
    p = SimParams(sigma=1e-6, thickness=200.0)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        outcome = run_eis(server, p, tmp_path / "low.h5", eis_values(f_stop="1", rest="0"))
        assert not any(line.startswith((":TRIG:IMM", ":LIST:FREQ")) for line in server.model.log)
        assert_meter_safe(server)
    assert outcome.status is RunState.FAILED
    assert "frequency 1 Hz outside the channel's 20..2e+06 Hz" in outcome.error


FAULTS = {
    "no reply": (lambda s: setattr(s.faults, "no_reply", 1), "no reply within"),
    "garbled reply": (lambda s: setattr(s.faults, "garble", 1), "not a list of numbers"),
    "dropped connection": (lambda s: setattr(s.faults, "drop_after_sends", 0), "closed the connection"),
    "instrument error code": (lambda s: s.inject_error(-310, "System error"), "instrument error -310"),
    "overload": (lambda s: s.inject_overload(1), "overload at"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_mid_sweep_ends_the_run_safely(tmp_path, fault):
    inject, reason = FAULTS[fault]
    p = SimParams(sigma=1e-6, thickness=200.0, seed=9)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        t0 = time.monotonic()
        sink = OnFirstSpectrum(lambda: inject(server))
        outcome = run_eis(server, p, tmp_path / "fault.h5", eis_values(rest="1"), sink, chunk_seconds=0.5)
        wall = time.monotonic() - t0
        assert sink.fired
        assert_meter_safe(server)
    assert outcome.status is RunState.FAILED
    assert reason in outcome.error and "safe state failed" not in outcome.error
    assert wall < 10.0
    with open_run(tmp_path / "fault.h5") as run:
        assert run.status == "failed" and reason in run.error
        assert "safe" in [e["state"] for e in run.events]
        assert run.n_spectra > 0  # what was measured before the fault is kept


@pytest.mark.timeout(30)
def test_pause_holds_and_the_sweep_continues_forward(tmp_path):
    p = SimParams(sigma=1e-6, thickness=200.0, seed=6)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        channel = create(server.resource, {"clock_speed": SPEED, "chunk_seconds": 0.5})
        writer = RunFileWriter(tmp_path / "pause.h5")
        engine = Engine(channel, sinks=[writer])
        handle = None

        def pause() -> None:
            handle.pause()

        engine.sinks.insert(1, OnFirstSpectrum(pause))
        handle = engine.start(eis.PROTOCOL, eis_values(rest="0"), cell_of(p))
        deadline = time.monotonic() + 10
        while handle.state is not RunState.PAUSED and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handle.state is RunState.PAUSED and not server.model.measuring
        handle.resume()
        outcome = handle.wait(20)
        writer.close()
    assert outcome is not None and outcome.status is RunState.COMPLETED, outcome.error if outcome else ""
    freqs = outcome.steps[-1].spectrum["freq"]
    assert len(freqs) == 51 and np.all(np.diff(freqs) < 0)  # every frequency once, in order
    assert outcome.results["sigma_S_cm"] == pytest.approx(1e-6, rel=0.02)


def test_pymeasures_own_e4980_driver_sweeps_the_emulator():
    """pymeasure's AgilentE4980 (its list sweep, polling :FETC?) works against the emulator."""
    from pymeasure.instruments.agilent import AgilentE4980

    p = SimParams(sigma=1e-6, thickness=200.0)
    with serve(p, speed=SPEED, cell_type="ss") as server:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            meter = AgilentE4980(server.resource, visa_library="@py", read_termination="\n", write_termination="\n")
        try:
            meter.mode = "RX"
            meter.ac_voltage = 0.01
            meter.aperture("MED")
            r, x, freqs = meter.freq_sweep([1e5, 1e4, 1e3], return_freq=True)
            idn = meter.id
        finally:
            meter.adapter.close()
        sim = server.sim
        truth = sim.bench.cell.impedance(sim.bench.state, np.array(freqs), 25.0)
    assert "E4980A" in idn and freqs == pytest.approx([1e5, 1e4, 1e3])
    np.testing.assert_allclose(np.array(r) + 1j * np.array(x), truth, rtol=0.02)
