"""The dead-man guardian on the wire emulators: a killed run never leaves a cell powered.

Each test serves an emulator in this process (Keithley 2450 on TCP, EmStat4 on a
pseudo-terminal), writes a lab file naming it and drives it with a real
``python -m labctl.cli run`` subprocess. The emulator's own state (the SMU's output,
the EmStat's cell relay) is the truth the tests check. Waits are on conditions; the
one wall-clock deadline is the acceptance criterion itself: after SIGKILL of the
process driving the instrument (the run file's ``writer_pid``), the output is off
within 5 s.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import SimParams
from labctl.guardian import LOG_SUFFIX, GuardedInstrument, make_safe
from labctl.registry import emulator_factory
from labctl.storage import open_run

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("keithley2450", "emstat4")
#: The acceptance criterion: every output off this long after the kill (wall time).
SAFE_WITHIN_S = 5.0
#: Hang guard for conditions that do not measure anything.
HANG_GUARD_S = 60.0
#: Emulators (and the driver's clock) at 50x real time: a 1 h half-cycle is 72 s of wall time.
SPEED = 50


@dataclass
class Bench:
    """An emulator served here, and a lab file naming it ``dev``."""

    model: str
    server: Any
    lab: Path
    out: Path

    def output_on(self) -> bool:
        if self.model == "emstat4":
            return bool(self.server.device.cell_on)
        return bool(self.server.output_on)

    def touched_after_the_run(self) -> bool:
        """Did anything talk to the instrument after the run's own safe state?"""
        if self.model == "emstat4":
            received = list(self.server.device.received)
            last_off = max(i for i, line in enumerate(received) if line == "cell_off")
            return "Z" in received[last_off:]  # a second connection starts with an abort
        return len(self.server.server._sessions) != 1  # the run's own connection only


@pytest.fixture(params=MODELS)
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    served = serve_bench(request.param, tmp_path)
    try:
        yield served
    finally:
        served.server.stop()


def serve_bench(model: str, tmp_path: Path) -> Bench:
    if model == "keithley2450":
        server = emulator_factory(model)(SimParams(), speed=SPEED, cell_type="li_li", off_mode="HIMP")
        options = f"{{ clock_speed = {SPEED}, timeout_ms = 3000 }}"
    else:
        server = emulator_factory(model)(SimParams(), speed=SPEED, cell_type="li_li")
        options = f"{{ clock_speed = {SPEED} }}"
    lab = tmp_path / "lab.toml"
    lab.write_text(
        "[defaults]\ncell = { area = 1.0, thickness = 100 }\n\n"
        f'[instruments.dev]\ndriver = "{model}"\nresource = "{server.resource}"\noptions = {options}\n'
    )
    return Bench(model, server, lab, tmp_path / "runs")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def start_run(bench: Bench, *params: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "run", "cycling", "-i", "dev", "--lab", str(bench.lab),
         "--out", str(bench.out), "-q", "--json", "-p", "sample_period=1", *params],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], Any], what: str, proc: subprocess.Popen[str] | None = None) -> Any:
    """Poll ``condition`` until it is truthy (hang guard only; nothing is timed)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended while waiting for {what}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    raise AssertionError(f"hang guard: no {what} within {HANG_GUARD_S:g} s")


def run_file(bench: Bench) -> Path | None:
    files = sorted(bench.out.glob("*.h5")) if bench.out.exists() else []
    return files[0] if files else None


def writer_pid_mid_step(bench: Bench) -> int | None:
    """The run file's writer_pid once a step has started and the cell is driven."""
    path = run_file(bench)
    if path is None or not bench.output_on():
        return None
    try:
        with open_run(path, timeout=0.5) as run:
            return int(run.meta["writer_pid"]) if run.steps else None
    except (OSError, KeyError, ValueError):
        return None  # being created: try again


def guardian_log(bench: Bench) -> str:
    path = run_file(bench)
    log = None if path is None else path.with_name(path.name + LOG_SUFFIX)
    return log.read_text() if log is not None and log.exists() else ""


def process_gone(pid: int) -> bool:
    """Exited (a zombie counts: its reaper may be slow or absent in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def guardian_pid(bench: Bench) -> int:
    for line in guardian_log(bench).splitlines():
        if " armed for run file " in line:
            return int(line.split(" pid ", 1)[1].split(":", 1)[0])
    raise AssertionError("no 'armed' line in the guardian log")


# --- the acceptance ---------------------------------------------------------------------------
def test_sigkill_of_the_driving_process_leaves_the_output_off_within_5_s(bench: Bench) -> None:
    proc = start_run(bench, "-p", "half_cycle=1")
    try:
        pid = wait_for(lambda: writer_pid_mid_step(bench), "a step driving the cell", proc)
        assert pid == proc.pid, "writer_pid names the process that drives the instrument"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while bench.output_on() and time.monotonic() - killed < SAFE_WITHIN_S:
            time.sleep(0.01)
        off_after = time.monotonic() - killed
        assert not bench.output_on(), f"{bench.model}: output still on {off_after:.2f} s after SIGKILL"
        assert proc.wait(HANG_GUARD_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = wait_for(lambda: "safe state applied" in guardian_log(bench) and guardian_log(bench), "the guardian's record")
    assert f"parent pid {pid} died" in log and "dev:1: output off" in log
    assert not bench.output_on()


def test_without_a_guardian_a_killed_run_leaves_the_cell_powered(bench: Bench) -> None:
    """The control: the same kill with the guardian left out leaves the 2450 sourcing
    (what the issue reports) and the EmStat's cell on mid-step, so the test above can fail."""
    script = (
        "import sys; from pathlib import Path\n"
        "from labctl.config import load_lab\nfrom labctl.runner import prepare_run\n"
        f"run = prepare_run('cycling', params={{'sample_period': '1', 'half_cycle': '1'}}, instrument='dev',"
        f" out_dir=Path({str(bench.out)!r}), lab=load_lab(Path({str(bench.lab)!r})))\n"
        "assert run.guarded, 'a hardware run is guarded'\n"
        "run.guarded = ()\nrun.execute()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: writer_pid_mid_step(bench), "a step driving the cell", proc)
        proc.kill()
        proc.wait(HANG_GUARD_S)
        assert bench.output_on(), "nothing else switches the cell off when its host dies"
        assert guardian_log(bench) == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- a normal end, an abort, a dead guardian ------------------------------------------------------
@pytest.mark.parametrize("ending", ["completed", "aborted"])
def test_the_guardian_stands_down_without_touching_the_instrument(bench: Bench, ending: str) -> None:
    half_cycle = "0.01" if ending == "completed" else "1"  # 36 s of cell time: < 1 s at 50x
    proc = start_run(bench, "-p", f"half_cycle={half_cycle}", "-p", "cycles=1")
    try:
        if ending == "aborted":
            wait_for(lambda: writer_pid_mid_step(bench), "a step driving the cell", proc)
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (0 if ending == "completed" else 130), stderr
    assert f'"status": "{ending}"' in stdout
    log = guardian_log(bench)
    assert "armed for run file" in log and "stood down" in log, log
    assert "safe state applied" not in log and "died" not in log
    assert not bench.output_on()
    with open_run(run_file(bench)) as run:
        assert run.status == ending
    # The guardian has exited, and it never connected.
    pid = guardian_pid(bench)
    wait_for(lambda: process_gone(pid), f"the guardian (pid {pid}) gone")
    assert not bench.touched_after_the_run()


def test_the_guardian_dying_does_not_disturb_the_run(tmp_path: Path) -> None:
    bench = serve_bench("keithley2450", tmp_path)
    try:
        proc = start_run(bench, "-p", "half_cycle=0.02", "-p", "cycles=2")
        try:
            wait_for(lambda: "armed for run file" in guardian_log(bench), "the guardian armed", proc)
            os.kill(guardian_pid(bench), signal.SIGKILL)
            stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert '"status": "completed"' in stdout and "Traceback" not in stderr
        with open_run(run_file(bench)) as run:
            assert run.status == "completed" and len(run.steps) == 4
        assert not bench.output_on()
    finally:
        bench.server.stop()


# --- by hand, and the sim ---------------------------------------------------------------------------
def _switch_on(bench: Bench) -> None:
    """Put the instrument's output on through a connection of the test's own."""
    if bench.model == "keithley2450":
        host, port = bench.server.server.host, bench.server.server.port
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b":SOUR:FUNC CURR;:SOUR:CURR 0.0001;:OUTP ON;*OPC?\n")
            assert sock.recv(64).strip() == b"1"
    else:
        import serial

        with serial.Serial(bench.server.resource, timeout=0.1) as port:
            port.write(b"e\nset_pgstat_mode 2\ncell_on\n\n")
            wait_for(lambda: not bench.server.device.running and bench.server.device.cell_on, "cell on")
    assert bench.output_on()


def test_labctl_instruments_safe_switches_the_output_off(bench: Bench) -> None:
    _switch_on(bench)
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "instruments", "safe", "dev", "--lab", str(bench.lab)],
        env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "dev:1: output off"
    assert not bench.output_on()


def test_make_safe_is_what_a_worker_calls_at_start_up(bench: Bench) -> None:
    from labctl.config import load_lab

    _switch_on(bench)
    config, channel = load_lab(bench.lab).channel("dev")
    assert make_safe(config, channel.name) == "dev:1: output off"
    assert not bench.output_on()
    assert make_safe(config, channel.name) == "dev:1: output off"  # idempotent
    assert not bench.output_on()


def test_an_unknown_instrument_is_one_line_and_exit_2(tmp_path: Path) -> None:
    lab = tmp_path / "lab.toml"
    lab.write_text('[instruments.dev]\ndriver = "keithley2450"\nresource = "TCPIP::127.0.0.1::1::SOCKET"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "instruments", "safe", "nosuch", "--lab", str(lab)],
        env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no instrument named 'nosuch'" in proc.stderr and "dev" in proc.stderr


def unreachable_lab(tmp_path: Path) -> Path:
    """A lab file naming a 2450 at a port nobody listens on."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    lab = tmp_path / "lab.toml"
    lab.write_text(
        f'[instruments.dev]\ndriver = "keithley2450"\nresource = "TCPIP::127.0.0.1::{port}::SOCKET"\n'
        "options = { timeout_ms = 500, safe_timeout_ms = 500 }\n"
    )
    return lab


def test_an_unreachable_instrument_fails_with_one_line(tmp_path: Path) -> None:
    lab = unreachable_lab(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "instruments", "safe", "dev", "--lab", str(lab)],
        env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: dev:1 (keithley2450") and "Connection refused" in errors[0]
    assert "Traceback" not in proc.stderr


def test_the_simulator_has_no_guardian_and_hardware_runs_have_one(tmp_path: Path) -> None:
    """--instrument sim has no cell to leave powered: no guardian process is started."""
    from labctl.config import load_lab
    from labctl.runner import prepare_run

    sim = prepare_run("cycling", params={}, out_dir=tmp_path)
    assert sim.guarded == ()
    lab = tmp_path / "lab.toml"
    lab.write_text(
        "[defaults]\ncell = { area = 1.0, thickness = 100 }\n"
        '[instruments.dev]\ndriver = "keithley2450"\nresource = "TCPIP::127.0.0.1::1::SOCKET"\n'
        'options = { compliance_voltage = 5 }\n[instruments.dev.channels.1]\nchamber = "oven"\n'
        '[instruments.oven]\ndriver = "espec"\nresource = "tcp://127.0.0.1:1"\n'
    )
    hardware = prepare_run("cycling", params={}, instrument="dev", out_dir=tmp_path, lab=load_lab(lab))
    assert hardware.guarded == (
        GuardedInstrument("dev", "keithley2450", "TCPIP::127.0.0.1::1::SOCKET", {"compliance_voltage": 5}, "1"),
        GuardedInstrument("oven", "espec", "tcp://127.0.0.1:1", {}, None),
    )


# --- the guardian process on its own ----------------------------------------------------------------
def _guarded_2450(bench: Bench) -> GuardedInstrument:
    return GuardedInstrument("dev", "keithley2450", bench.server.resource, {"timeout_ms": 3000}, "1")


def test_a_parent_whose_pipe_end_lives_on_in_a_fork_is_still_noticed(tmp_path: Path) -> None:
    """A parent that forked after arming leaves a copy of the pipe's write end in the
    child: no end-of-file at its death. The pid watch (pidfd) notices it instead."""
    bench = serve_bench("keithley2450", tmp_path)
    run_file_path = tmp_path / "run.h5"
    script = (
        "import os, sys, time\nfrom pathlib import Path\nfrom labctl.guardian import Guardian, GuardedInstrument\n"
        f"item = GuardedInstrument.from_dict({_guarded_2450(bench).as_dict()!r})\n"
        f"g = Guardian.start((item,), Path({str(run_file_path)!r}))\n"
        "child = os.fork()\n"
        "if child == 0:\n    time.sleep(120)\n    os._exit(0)\n"
        "print(child, flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        _switch_on(bench)
        proc.kill()
        killed = time.monotonic()
        proc.wait()
        while bench.output_on() and time.monotonic() - killed < SAFE_WITHIN_S:
            time.sleep(0.01)
        assert not bench.output_on(), "the guardian missed a parent whose pipe end survived in a fork"
        log = wait_for(lambda: (t := run_file_path.with_name("run.h5" + LOG_SUFFIX).read_text())
                       and "safe state applied" in t and t, "the guardian's record")
        assert f"parent pid {proc.pid} exited (pidfd)" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child:
            os.kill(child, signal.SIGKILL)
        bench.server.stop()


def test_an_unconfirmed_safe_state_is_retried_by_the_guardian(tmp_path: Path) -> None:
    """The engine reports "unsafe" (its own safe state failed): the sink asks the guardian
    to apply it on a fresh connection."""
    from labctl.events import StatusChanged
    from labctl.guardian import Guardian, GuardianSink

    bench = serve_bench("keithley2450", tmp_path)
    try:
        guardian = Guardian.start((_guarded_2450(bench),), tmp_path / "run.h5")
        _switch_on(bench)
        sink = GuardianSink(guardian)
        sink.handle(StatusChanged("unsafe", 1.0, "safe state failed: no reply"))
        sink.close()
        assert guardian.process.wait(HANG_GUARD_S) == 0
        assert not bench.output_on()
        log = (tmp_path / ("run.h5" + LOG_SUFFIX)).read_text()
        assert "could not confirm its safe state" in log and "safe state applied: dev:1: output off" in log
    finally:
        bench.server.stop()


def test_a_guardian_that_cannot_build_its_driver_refuses_to_arm(tmp_path: Path) -> None:
    from labctl.guardian import Guardian, GuardianError

    bad = GuardedInstrument("dev", "keithley2450", "TCPIP::127.0.0.1::1::SOCKET", {"nplc": 99}, "1")
    with pytest.raises(GuardianError, match=r"did not arm: cannot build dev:1.*nplc"):
        Guardian.start((bad,), tmp_path / "run.h5")


def test_a_killed_run_leaves_the_chamber_in_standby_too(tmp_path: Path) -> None:
    """Every instrument the run drove: the EmStat's cell off and its chamber out of
    constant operation (standby) within 5 s of the kill."""
    pstat = serve_bench("emstat4", tmp_path)
    oven = emulator_factory("espec")(SimParams(), speed=SPEED)
    try:
        with pstat.lab.open("a") as lab:
            lab.write(f'[instruments.dev.channels.1]\nchamber = "oven"\n\n'
                      f'[instruments.oven]\ndriver = "espec"\nresource = "{oven.resource}"\n')
        proc = subprocess.Popen(
            [sys.executable, "-m", "labctl.cli", "run", "arrhenius", "-i", "dev", "--lab", str(pstat.lab),
             "--out", str(pstat.out), "-q", "-p", "temperatures=40,60"],
            env=_env(), stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_for(lambda: oven.mode == "CONSTANT" and run_file(pstat), "the chamber in constant operation", proc)
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            while (oven.mode == "CONSTANT" or pstat.output_on()) and time.monotonic() - killed < SAFE_WITHIN_S:
                time.sleep(0.01)
            assert oven.mode == "STANDBY" and not pstat.output_on()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        log = wait_for(lambda: "oven: standby" in guardian_log(pstat) and guardian_log(pstat), "the guardian's record")
        assert "dev:1: output off" in log
    finally:
        oven.stop()
        pstat.server.stop()


def _start_up_worker(lab: Path, tmp_path: Path) -> Any:
    from labctl.queue.worker import Worker, WorkerSettings

    settings = WorkerSettings(
        worker_id="test-pc:lab", channels=("dev",), store=str(tmp_path / "q.sqlite3"),
        runs_dir=tmp_path / "runs", lab_path=lab,
    )
    Worker(settings).run(until_empty=True)  # nothing queued: start-up, then it stops
    return settings


def test_a_queue_worker_makes_its_channels_safe_before_claiming(bench: Bench, tmp_path: Path) -> None:
    """Whatever a crashed predecessor left on is switched off when a worker starts."""
    from labctl.queue import open_store

    _switch_on(bench)
    settings = _start_up_worker(bench.lab, tmp_path)
    assert not bench.output_on()
    with open_store(settings.store) as store:
        assert store.holds() == []


def test_a_channel_that_cannot_be_made_safe_is_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.queue import open_store
    from labctl.queue import worker as worker_module

    monkeypatch.setattr(worker_module, "SAFE_RETRY_S", 0.0)
    settings = _start_up_worker(unreachable_lab(tmp_path), tmp_path)
    with open_store(settings.store) as store:
        holds = store.holds()
    assert [hold.channel for hold in holds] == ["dev"]
    assert "could not apply the safe state at start-up" in holds[0].reason


def test_sigkill_of_a_queue_jobs_process_leaves_the_output_off_within_5_s(bench: Bench, tmp_path: Path) -> None:
    """The queue runs each job through the same runner, so its job process is guarded too:
    SIGKILL of the process that drives the instrument (the run file's writer_pid), not of the
    worker, and the output is off within 5 s; the worker marks the job interrupted."""
    from labctl.queue import JobState, open_store

    store = str(tmp_path / "q.sqlite3")
    queue = [sys.executable, "-m", "labctl.cli", "queue"]
    added = subprocess.run(
        [*queue, "add", "cycling", "--cell-id", "K1", "--channel", "dev", "--lab", str(bench.lab), "--store", store,
         "-p", "sample_period=1", "-p", "half_cycle=1"],
        env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    worker = subprocess.Popen(
        [*queue, "run", "--lab", str(bench.lab), "--store", store, "--runs", str(bench.out)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        pid = wait_for(lambda: writer_pid_mid_step(bench), "a queue job driving the cell", worker)
        assert pid != worker.pid, "the job runs in a process of its own"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while bench.output_on() and time.monotonic() - killed < SAFE_WITHIN_S:
            time.sleep(0.01)
        off_after = time.monotonic() - killed
        assert not bench.output_on(), f"{bench.model}: output still on {off_after:.2f} s after SIGKILL"

        def interrupted() -> bool:
            with open_store(store) as s:
                return [job.state for job in s.list_jobs()] == [JobState.INTERRUPTED]

        wait_for(interrupted, "the worker to mark the job interrupted", worker)
    finally:
        worker.terminate()
        worker.wait(HANG_GUARD_S)
    assert not bench.output_on()
