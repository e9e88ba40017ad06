"""The run lifecycle end to end: real signals to a real process in every
output mode, a real full disk, unwritable output folders, one-line errors."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from labctl.events import RunEnded, SinkFailure, StateChanged, StatusChanged
from labctl.runner import check_output_dir
from labctl.storage import RunFileWriter, open_run
from labctl.storage import appender as appender_module
from tests.signal_trial import MODES, ROOT, run_trial

LABCTL = [sys.executable, "-m", "labctl.cli"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

# -- signals --------------------------------------------------------------------

SIGNAL_CASES = [(mode, sig) for mode in MODES for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]


@pytest.mark.parametrize(("mode", "sig"), SIGNAL_CASES, ids=[f"{m}-{s.name}" for m, s in SIGNAL_CASES])
def test_a_signal_at_a_random_moment_aborts_cleanly(tmp_path: Path, mode: str, sig: signal.Signals) -> None:
    rng = np.random.default_rng(1000 + SIGNAL_CASES.index((mode, sig)))  # seeded: the moment varies per case
    delay = float(rng.uniform(0.0, 1.0))
    result = run_trial(tmp_path, mode, sig, delay)
    assert result.ok, result
    assert result.exit_code == 130 and result.printed_status == "aborted" and result.file_status == "aborted"


@pytest.mark.parametrize("mode", ["json-quiet", "plain"])
def test_a_second_ctrl_c_does_not_break_the_abort(tmp_path: Path, mode: str) -> None:
    """Two Ctrl-C in a row: the second is another request, never an unwinding."""

    # run_trial sends one signal; send the second one from a wrapper around Popen.send_signal.
    original = subprocess.Popen.send_signal

    def send_twice(self: subprocess.Popen[str], sig: int) -> None:
        original(self, sig)
        original(self, sig)

    with _patched(subprocess.Popen, "send_signal", send_twice):
        result = run_trial(tmp_path, mode, signal.SIGINT, delay=0.2)
    assert result.ok, result


@contextlib.contextmanager
def _patched(owner: object, name: str, value: object) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


# -- a full disk --------------------------------------------------------------------


def _mount_tmpfs(where: Path, options: str) -> bool:
    """Mount a tmpfs (needs root or CAP_SYS_ADMIN); False where not permitted."""
    if os.environ.get("LABCTL_TEST_NO_MOUNT"):  # to exercise the fallbacks
        return False
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


@contextlib.contextmanager
def small_disk(where: Path, size_bytes: int) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A real small filesystem (tmpfs) at ``where``; where mounting is not
    permitted, the same fault from the kernel by RLIMIT_FSIZE in the child
    (EFBIG, with SIGXFSZ ignored). Yields (folder, preexec_fn for the child)."""
    where.mkdir()
    mounted = _mount_tmpfs(where, f"size={size_bytes}")
    if mounted:
        try:
            yield where, None
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        return

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, size_bytes))

    yield where, limit_file_size


#: A run that writes far more than 2 MiB (cycling, 1 s samples, 100 cycles).
BIG_RUN = ["run", "cycling", "-p", "cycles=100", "-p", "sample_period=1"]


@pytest.mark.parametrize("debug", [False, True])
def test_disk_full_fails_the_run_with_one_line_and_records_why(tmp_path: Path, debug: bool) -> None:
    with small_disk(tmp_path / "disk", 2 << 20) as (out, preexec):
        args = [*LABCTL, *(["--debug"] if debug else []), *BIG_RUN, "--out", str(out), "--json", "-q"]
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=ENV, preexec_fn=preexec
        )
        assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # not 139 (segfault)
        payload = json.loads(proc.stdout)
        assert payload["status"] == "failed"
        assert payload["error"].startswith("storage error: ")
        assert "(ENOSPC)" in payload["error"] or "(EFBIG)" in payload["error"]
        assert "\n" not in payload["error"]
        if debug:
            assert "Traceback" in proc.stderr  # --debug shows where it happened
        else:
            assert proc.stderr == ""  # nothing but the one JSON line
        path = Path(payload["file"])
        with open_run(path) as run:  # the reason is in the file
            assert run.status == "failed"
            assert run.error == payload["error"]
        with h5py.File(path, "r") as f:  # and plain HDF5 tools open it
            assert f["samples"].shape[0] > 0


SAFE_SCRIPT = """
import json, sys
from labctl.engine import Engine
from labctl.storage import RunFileWriter
from labctl.steps import ConstantVoltage, Limits
from tests.test_engine import CELL, make_protocol
from tests.resistor_channel import ResistorChannel

def plan(params, cell):
    yield ConstantVoltage(voltage=0.1, limits=Limits(max_time=1e6), sample_period=1.0)
    return {}

channel = ResistorChannel(chunk=500)
outcome = Engine(channel, sinks=[RunFileWriter(sys.argv[1])]).run(make_protocol(plan), {}, CELL)
print(json.dumps({"status": outcome.status.value, "error": outcome.error, "output_on": channel.output_on,
                  "last": channel.events[-1]}))
"""


def test_disk_full_leaves_the_cell_safe(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 2 << 20) as (out, preexec):
        path = out / "run.h5"
        proc = subprocess.run(
            [sys.executable, "-c", SAFE_SCRIPT, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=ENV,
            preexec_fn=preexec,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout)
        assert report["status"] == "failed" and report["error"].startswith("storage error: ")
        assert report["output_on"] is False and report["last"] == "safe"
        with open_run(path) as run:
            assert run.status == "failed" and run.error == report["error"]


# -- the writer's file layer, with an injected ENOSPC -------------------------------------


def test_injected_enospc_stops_the_writer_and_records_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.engine import Engine, RunState
    from labctl.steps import ConstantVoltage, Limits
    from tests.resistor_channel import ResistorChannel
    from tests.test_engine import CELL, make_protocol

    writes = {"n": 0}
    real_write_rows = appender_module.write_rows

    def failing_write_rows(ds, start, rows, mtype=None):  # type: ignore[no-untyped-def]
        if ds.name == "/samples":
            writes["n"] += 1
            if writes["n"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write_rows(ds, start, rows, mtype)

    monkeypatch.setattr(appender_module, "write_rows", failing_write_rows)

    def plan(params, cell):
        yield ConstantVoltage(voltage=0.1, limits=Limits(max_time=2e5), sample_period=1.0)
        return {}

    path = tmp_path / "run.h5"
    writer = RunFileWriter(path)
    channel = ResistorChannel(chunk=20000)
    engine = Engine(channel, sinks=[writer])
    sub = engine.bus.subscribe()
    outcome = engine.run(make_protocol(plan), {}, CELL)
    assert outcome.status == RunState.FAILED
    assert outcome.error == f"storage error: No space left on device (ENOSPC) writing {path}"
    assert isinstance(writer.storage_error, OSError) and writer.storage_error.errno == errno.ENOSPC
    assert not channel.output_on and channel.events[-1] == "safe"
    events = sub.drain()
    assert [e.new for e in events if isinstance(e, StateChanged)][-1] == "failed"
    assert [e.state for e in events if isinstance(e, StatusChanged)] == ["safe"]
    with h5py.File(path, "r") as f:
        record = json.loads(bytes(f["failure"][:]).rstrip(b"\0"))
    assert record["status"] == "failed" and record["error"] == outcome.error
    assert "OSError" in record["error_detail"]  # the traceback is in the file
    with open_run(path) as run:
        assert run.status == "failed" and run.error == outcome.error


def test_a_broken_writer_ignores_events_until_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.events import RunStarted, Samples
    from labctl.steps import empty_samples
    from tests.test_storage import INFO

    path = tmp_path / "run.h5"
    writer = RunFileWriter(path)
    writer.handle(RunStarted(INFO))

    def no_space(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(appender_module, "write_rows", no_space)
    block = empty_samples(100_000)
    block["t"] = np.arange(len(block))
    with pytest.raises(SinkFailure, match=r"\(ENOSPC\)"):
        writer.handle(Samples(0, block))
    writer.handle(Samples(0, block))  # ignored: HDF5 is not touched again
    writer.handle(RunEnded("failed", error="protocol gave up"))
    writer.close()
    with open_run(path) as run:  # the run's reason, and the storage's when it was not the same
        assert run.status == "failed"
        assert run.error == f"protocol gave up; storage error: No space left on device (ENOSPC) writing {path}"


def test_closing_a_running_writer_from_another_thread_is_refused(tmp_path: Path) -> None:
    import threading

    from labctl.events import RunStarted
    from tests.test_storage import INFO

    writer = RunFileWriter(tmp_path / "run.h5")
    writer.handle(RunStarted(INFO))
    errors: list[Exception] = []

    def close_elsewhere() -> None:
        try:
            writer.close()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=close_elsewhere)
    thread.start()
    thread.join()
    assert errors and "another thread" in str(errors[0])
    writer.close()  # the owner may
    with open_run(tmp_path / "run.h5") as run:
        assert run.status == "interrupted"


# -- the output folder ----------------------------------------------------------------


def _run_to(tmp_path: Path, out: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LABCTL, "run", "eis", "--out", out, "--json", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=ENV,
    )


def test_an_uncreatable_out_is_one_line_and_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = _run_to(tmp_path, str(blocker / "runs"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out: cannot create folder")
    assert "allowed:" in lines[0]
    assert blocker.read_text() == "not a folder"


def test_a_read_only_out_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    mounted = _mount_tmpfs(out, "ro,size=1m")
    if not mounted:
        if os.geteuid() == 0:
            out = Path("/sys")  # root ignores file modes; sysfs takes no new files, even from root
        else:
            out.chmod(0o555)
    try:
        before = sorted(out.iterdir())
        proc = _run_to(tmp_path, str(out))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: --out: cannot write in {out}"), proc.stderr
        assert sorted(out.iterdir()) == before
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(out)], capture_output=True)


def test_too_little_free_space_is_refused_before_the_run(tmp_path: Path) -> None:
    import shutil

    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(ValueError, match=r"--out: only \d+ KiB free"):
        check_output_dir(tmp_path, min_free=free + (1 << 30))
    check_output_dir(tmp_path / "new" / "folder")  # created, writable
    assert (tmp_path / "new" / "folder").is_dir() and not list((tmp_path / "new" / "folder").iterdir())


# -- what the terminal shows ----------------------------------------------------------

NOISY_SCRIPT = """
import logging, sys, threading, warnings
from labctl.logsetup import configure_logging
configure_logging(sys.argv[1] == "debug")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("labctl.test").exception("sink failed on Samples:\\n  details")
warnings.warn("careful with that axe")
thread = threading.Thread(target=lambda: 1 / 0, name="worker")
thread.start()
thread.join()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_logging_warnings_and_thread_errors_are_one_line_without_debug(debug: bool) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NOISY_SCRIPT, "debug" if debug else "quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    if debug:
        assert proc.stderr.count("Traceback") == 2  # the logged exception and the thread's
        return
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: sink failed on Samples: details",
        lines[1],
        "error in worker: ZeroDivisionError: division by zero",
    ]
    assert lines[1].startswith("warning: ") and "careful with that axe" in lines[1]


def test_progress_shows_pausing_and_aborting_while_the_engine_gets_there() -> None:
    from rich.console import Console

    from labctl.progress import ProgressDisplay

    console = Console(record=True, width=100)
    display = ProgressDisplay(console)
    for old, new, shown in [
        ("pending", "running", "running"),
        ("running", "pausing", "pausing…"),
        ("pausing", "paused", "paused"),
        ("paused", "aborting", "aborting…"),
    ]:
        assert display._apply(StateChanged(old, new, "test", 1.0)) is False
        console.print(display.render())
        assert console.export_text().strip().endswith(shown)
    assert display._apply(RunEnded("aborted")) is True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_only_request_the_abort_and_handlers_are_restored(sig: signal.Signals) -> None:
    """In-process: the handler raises nothing in the waiting thread; the run
    ends aborted with the signal named; the previous handlers come back."""
    from labctl.clock import VirtualClock
    from labctl.engine import Engine, RunState
    from labctl.runner import AbortOnSignals, wait_through_interrupts
    from tests.resistor_channel import ResistorChannel
    from tests.test_engine import CELL, At, _long_cc_plan, make_protocol

    before = {s: signal.getsignal(s) for s in AbortOnSignals.SIGNALS}
    channel = ResistorChannel(clock=VirtualClock(), chunk=5)
    engine = Engine(channel)

    def signal_twice_and_wait_for_the_request() -> None:
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), sig)  # a second one is just another request
        assert engine._interrupt.wait(30.0), "the abort was never requested (hang guard)"

    engine.sinks.insert(0, At(0.5, signal_twice_and_wait_for_the_request))
    signals = AbortOnSignals().install()
    try:
        handle = engine.start(make_protocol(_long_cc_plan), {}, CELL)
        signals.attach(handle)
        outcome = wait_through_interrupts(handle, 60.0)
    finally:
        signals.restore()
    assert outcome is not None and outcome.status == RunState.ABORTED
    expected = "aborted by user (Ctrl-C)" if sig == signal.SIGINT else f"aborted by signal {sig.name}"
    assert outcome.error == expected
    assert not channel.output_on and channel.events[-1] == "safe"
    assert {s: signal.getsignal(s) for s in AbortOnSignals.SIGNALS} == before


def test_a_failed_fsync_is_a_storage_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the background fsync reaches the engine at the next flush."""
    import threading
    import time

    from labctl.events import RunStarted
    from labctl.storage import syncer as syncer_module
    from tests.test_storage import INFO

    synced = threading.Event()

    def eio(fd: int) -> None:
        synced.set()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(syncer_module, "_sync", eio)
    path = tmp_path / "run.h5"
    writer = RunFileWriter(path)
    writer.handle(RunStarted(INFO))  # asks for the first sync
    assert synced.wait(30.0)
    deadline = time.monotonic() + 30.0
    while writer._syncer is not None and writer._syncer.error is None:  # the error is stored after the call
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.001)
    with pytest.raises(SinkFailure, match=r"Input/output error \(EIO\)"):
        writer.handle(StatusChanged("paused", 1.0))  # a status change flushes at once
    writer.handle(RunEnded("failed", error=f"storage error: Input/output error (EIO) writing {path}"))
    with open_run(path) as run:
        assert run.status == "failed" and "(EIO)" in run.error
