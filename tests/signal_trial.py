"""One Ctrl-C (or SIGTERM/SIGHUP) trial against a real ``labctl run`` process.

Shared by the test suite (a handful of trials per output mode) and
``bench/ctrlc_trials.py`` (the issue's 30 + 30 acceptance). A trial starts the
CLI on a long simulated protocol, waits for a *condition* (the run file shows
a started step, read in SWMR mode), waits a further delay chosen by the
caller (random, from a seeded RNG), sends the signal and checks everything
the issue asks: exit code 130, the printed status, the file opening with
plain ``h5py.File(path, "r")``, its status, the ``safe`` event, and the
process gone within the hang guard.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py

from labctl.storage import open_run

ROOT = Path(__file__).resolve().parents[1]

#: Output modes of ``labctl run`` (the issue's failures were in --json -q).
MODES: dict[str, tuple[str, ...]] = {
    "json-quiet": ("--json", "-q"),
    "json": ("--json",),
    "plain": (),
    "quiet": ("-q",),
}

#: 10 symmetric cycles of 2 x 1 h at 2000x: ~36 s of wall time, far longer than a trial.
COMMAND = ("run", "cycling", "--speed", "2000", "-p", "sample_period=1")


@dataclass(frozen=True)
class TrialResult:
    mode: str
    signal: str
    delay: float
    exit_code: int | None
    printed_status: str
    file_status: str
    safe_event: bool
    seconds_to_exit: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _wait_for_started_step(out: Path, proc: subprocess.Popen[str], timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(out.glob("*.h5")) if out.exists() else []
        if files:
            try:
                with open_run(files[0], timeout=0.5) as run:
                    if len(run.steps) >= 1:
                        return files[0]
            except (OSError, KeyError, ValueError):
                pass  # being created: try again
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended before the signal: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    raise RuntimeError("no step started (hang guard)")


def _printed_status(mode: str, stdout: str, stderr: str) -> str:
    if "--json" in MODES[mode]:
        try:
            return str(json.loads(stdout.strip().splitlines()[-1])["status"])
        except (ValueError, IndexError, KeyError):
            return f"<no JSON on stdout: {stdout[-200:]!r}>"
    for line in stderr.splitlines():
        word = line.strip().split(" ", 1)[0] if line.strip() else ""
        if word in ("aborted", "completed", "failed"):
            return word
    return "<no status line>"


def run_trial(workdir: Path, mode: str, sig: signal.Signals, delay: float, hang_guard: float = 10.0) -> TrialResult:
    """Run one trial in ``workdir`` (a fresh folder)."""
    out = workdir / "runs"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", *COMMAND, "--out", str(out), *MODES[mode]],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    problems: list[str] = []
    try:
        path = _wait_for_started_step(out, proc, timeout=60.0)
        time.sleep(delay)  # the moment varies; correctness must not
        proc.send_signal(sig)
        t_signal = time.monotonic()
        try:
            stdout, stderr = proc.communicate(timeout=hang_guard)
        except subprocess.TimeoutExpired:
            problems.append(f"process still alive {hang_guard:g} s after the signal")
            proc.kill()
            stdout, stderr = proc.communicate()
        seconds = time.monotonic() - t_signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 130:
        problems.append(f"exit code {proc.returncode}, expected 130; stderr: {stderr[-300:]!r}")
    if "Traceback" in stderr:
        problems.append("a traceback on the terminal")
    printed = _printed_status(mode, stdout, stderr)
    if printed != "aborted":
        problems.append(f"printed status {printed!r}")
    file_status, safe = "<unreadable>", False
    try:
        with h5py.File(path, "r") as f:  # plain open: the file is finalised
            file_status = str(f.attrs.get("status", "<none>"))
            states = [bytes(s).decode("utf-8", "replace") for s in f["events"]["state"]]
            safe = "safe" in states
            if states[-3:] != ["aborting", "safe", "aborted"]:
                problems.append(f"/events does not end aborting -> safe -> aborted: {states}")
    except OSError as exc:
        problems.append(f"file does not open with plain h5py: {' '.join(str(exc).split())[:200]}")
    if file_status != "aborted":
        problems.append(f"file status {file_status!r}")
    if not safe:
        problems.append("no 'safe' event in the file")
    return TrialResult(mode, sig.name, delay, proc.returncode, printed, file_status, safe, seconds, tuple(problems))


def ignore_sigint() -> None:
    """``preexec_fn`` for a child started as ``cmd &`` in a script starts: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sim_server(*args: str, prefix: str = "tcp://127.0.0.1:") -> Iterator[str]:
    """``labctl sim-server ARGS`` in a child process: yields the resource it prints (checked to
    start with ``prefix``); on leaving, Ctrl-C must stop it with exit code 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "sim-server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        resource = proc.stdout.readline().strip()
        assert resource.startswith(prefix), proc.stderr.read()
        yield resource
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
