"""`labctl sim-server`: an emulator a user can point any client at."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from pymeasure.instruments.keithley import Keithley2450

from tests.signal_trial import ignore_sigint


def test_sim_server_serves_pymeasures_own_keithley2450():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labctl.cli",
            "sim-server",
            "--model",
            "keithley2450",
            "--cell",
            "li_li",
            "--sim",
            "sigma=1e-3",
            "--sim",
            "r_series=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_sigint,  # as started by `cmd &` in a script: Ctrl-C must still stop it
    )
    try:
        resource = proc.stdout.readline().strip()
        assert resource.startswith("TCPIP::127.0.0.1::") and resource.endswith("::SOCKET"), proc.stderr.read()
        smu = Keithley2450(resource, visa_library="@py", read_termination="\n", write_termination="\n", timeout=5000)
        assert "2450" in smu.id
        smu.apply_current(compliance_voltage=2.0)
        smu.source_current = 1e-4
        smu.enable_source()
        smu.measure_voltage()
        voltage = smu.voltage
        smu.shutdown()
        smu.adapter.close()
        # 100 µA into a Li|Li cell of ~1 Ω leads + ~10 Ω electrolyte + interfaces: millivolts, positive.
        assert 1e-4 < voltage < 0.1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def test_sim_server_rejects_an_unknown_model():
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "sim-server", "--model", "hp4192"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown emulator model 'hp4192'" in proc.stderr and "keithley2450" in proc.stderr


@pytest.mark.parametrize("option", ["chamber=nosuch", "colour=blue"])
def test_sim_server_rejects_bad_options(option):
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "sim-server", "--model", "e4980a", "--option", option],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
