"""The dead-man guardian: a cell is never left powered because the process driving it died.

A run on hardware is driven by one process (``labctl run``, or a queue job). If that
process is killed (SIGKILL, the OOM killer, a crash in a C extension), nothing in it
runs again: no ``finally``, no exit handler, and a Keithley SMU keeps its output on
indefinitely. So the runner starts a *guardian* before the cell is touched: a small
separate process (``python -m labctl.guardian``, spawned with a fresh interpreter and
its own session, so neither a fork of a threaded parent nor a terminal's Ctrl-C
reaches it) that knows how to build the run's instruments and watches its parent:

* through a pipe (its stdin): end-of-file means every copy of the parent's end is
  closed, i.e. the parent died, whatever the cause, at once;
* through the parent's pid (a pidfd on Linux, the parent pid otherwise) as a fallback,
  for a parent whose pipe end was inherited by a forked child.

When the parent dies the guardian opens its **own** connection to each instrument and
applies the driver's safe state (output off / cell off, chamber standby), retrying for
a while: an instrument that allows one connection only (a serial EmStat) is free only
once the dead parent's port is closed by the kernel. It never connects while the
parent lives, so it never competes with it for a single-connection port. What it did
goes to a sidecar log next to the run file (``<run>.guardian.log``): the run file itself
may still be held open by the dead writer's SWMR session, and the queue's crash recovery
marks it interrupted.

On a normal end (completed, aborted, failed) the engine applies its own safe state
and the runner then tells the guardian to stand down (``done`` on the pipe): it exits
without touching the instrument. If the engine reports that its own safe state failed,
the runner asks the guardian to try with a fresh connection (``unsafe``).

``make_safe(config, channel)`` is the same action by hand (``labctl instruments
safe``) and for a queue worker at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from labctl.channel import Channel, InstrumentError, TemperatureController, with_one_reconnect
from labctl.config import InstrumentConfig, LabConfig
from labctl.events import Event, StatusChanged

#: Hang guard for the guardian's start (a fresh interpreter importing the drivers on a
#: loaded 2-core PC takes a second or two; far more means something is wrong).
ARM_TIMEOUT_S = 60.0
#: How long a guardian keeps trying to reach an instrument after its parent died (a
#: port still held for a moment by the dying process, an instrument slow to accept).
SAFE_RETRY_S = 30.0
#: Pause between attempts.
RETRY_PAUSE_S = 0.2
#: How often the parent's pid is checked when no pidfd is available.
PID_POLL_S = 0.25
#: Suffix of the sidecar log next to a run file.
LOG_SUFFIX = ".guardian.log"


class GuardianError(RuntimeError):
    """The guardian could not be started: a hardware run does not start unguarded."""


@dataclass(frozen=True)
class GuardedInstrument:
    """What the guardian needs to build one instrument of the run on its own."""

    name: str
    driver: str
    resource: str
    options: Mapping[str, Any] = field(default_factory=dict)
    channel: str | None = None  # the lab file's channel name (None: a chamber)

    @classmethod
    def of(cls, config: InstrumentConfig, channel: str | None) -> GuardedInstrument:
        return cls(config.name, config.driver, config.resource, dict(config.options), channel)

    def config(self) -> InstrumentConfig:
        return InstrumentConfig(self.name, self.driver, self.resource, dict(self.options), {})

    def label(self) -> str:
        where = f"{self.name}:{self.channel}" if self.channel else self.name
        return f"{where} ({self.driver} at {self.resource})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "resource": self.resource,
            "options": dict(self.options),
            "channel": self.channel,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuardedInstrument:
        return cls(
            str(data["name"]), str(data["driver"]), str(data["resource"]), dict(data["options"]), data["channel"]
        )


def guarded_instruments(lab: LabConfig, spec: str) -> tuple[GuardedInstrument, ...]:
    """The instruments a run on ``spec`` (``pstat`` or ``pstat:2``) drives: the channel's
    instrument first (the cell), then its chamber."""
    instrument, channel = lab.channel(spec)
    guarded = [GuardedInstrument.of(instrument, channel.name)]
    if channel.chamber is not None:
        guarded.append(GuardedInstrument.of(lab.instruments[channel.chamber], None))
    return tuple(guarded)


# --- the safe state, by hand or by the guardian ---------------------------------------------
def make_safe(config: InstrumentConfig, channel: str | None = None) -> str:
    """Open a connection of our own to the instrument, apply its safe state, close.

    A measuring channel gets ``Channel.safe_state`` (output off / cell off, confirmed
    by the driver); a chamber ``standby``. A broken first attempt is retried once on a
    fresh connection (``with_one_reconnect``). Returns what was done, one line; raises
    ``InstrumentError`` when the instrument could not be made safe, ``ParameterError``
    for options the driver refuses.
    """
    from labctl.instruments import build_instrument

    instrument = build_instrument(config, channel)
    label = f"{config.name}:{channel}" if channel else config.name
    if isinstance(instrument, Channel):
        apply, what = instrument.safe_state, "output off"
    elif isinstance(instrument, TemperatureController):
        apply, what = instrument.standby, "standby"
    else:
        raise InstrumentError(f"{label}: {config.driver} has no safe state")

    def action() -> None:
        instrument.open()
        apply()

    def reconnect() -> None:
        with contextlib.suppress(Exception):  # a broken session may not close cleanly
            instrument.close()

    try:
        goal = f"apply the safe state ({what})"
        with_one_reconnect(action, reconnect, instrument=label, goal=goal, retry_on=(InstrumentError, OSError))
    except OSError as exc:
        raise InstrumentError(f"{label}: could not apply the safe state ({what}): {exc}") from exc
    finally:
        reconnect()
    return f"{label}: {what}"


# --- the parent's side ---------------------------------------------------------------------------
def log_path_for(run_file: Path) -> Path:
    return run_file.with_name(run_file.name + LOG_SUFFIX)


class Guardian:
    """The parent's handle on its guardian process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._finished = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls, instruments: tuple[GuardedInstrument, ...], run_file: Path, *, timeout: float = ARM_TIMEOUT_S
    ) -> Guardian:
        """Spawn the guardian and wait until it is armed (it has built every driver it
        may need, without connecting). Raises ``GuardianError`` otherwise."""
        plan = {
            "parent_pid": os.getpid(),
            "run_file": str(run_file),
            "log": str(log_path_for(run_file)),
            "instruments": [i.as_dict() for i in instruments],
        }
        root = str(Path(__file__).resolve().parents[1])  # labctl/ and drivers/ live here
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        try:
            with log_path_for(run_file).open("ab") as errors:  # a guardian's own crash lands in its log
                process = subprocess.Popen(
                    [sys.executable, "-m", "labctl.guardian"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=env,
                    start_new_session=True,  # a terminal's Ctrl-C / hang-up is the parent's business
                    close_fds=True,
                )
        except OSError as exc:
            raise GuardianError(f"cannot start the guardian process: {exc}") from exc
        guardian = cls(process)
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write((json.dumps(plan, default=str) + "\n").encode())
            process.stdin.flush()
            reply = _read_line(process.stdout, timeout)
        except OSError as exc:
            reply = f"pipe failed: {exc}"
        if reply != "armed":
            guardian._kill()
            raise GuardianError(f"the guardian did not arm: {reply or 'no reply'}")
        process.stdout.close()
        return guardian

    def stand_down(self) -> None:
        """The run ended with the engine's own safe state: exit without touching anything."""
        self._finish("done")

    def request_safe_state(self) -> None:
        """The engine's own safe state failed: try again on a fresh connection, then exit."""
        self._finish("unsafe")

    def _finish(self, word: str) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(f"{word}\n".encode())
            stdin.flush()
        except OSError:  # the guardian is gone already: nothing to tell
            pass
        with contextlib.suppress(OSError):
            stdin.close()
        if word == "done":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5.0)  # reaped, so a long-lived worker collects no zombies

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.process.wait(5.0)


def _read_line(stream: Any, timeout: float) -> str:
    """One line from a pipe, or "" at EOF or after ``timeout`` seconds."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return ""
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


class GuardianSink:
    """Engine sink that stands the guardian down at the end of the run.

    ``close`` is the engine's last call, after its safe state and the run's end are
    recorded: "done" if the engine reported the cell safe, "unsafe" otherwise."""

    def __init__(self, guardian: Guardian) -> None:
        self.guardian = guardian
        self._unsafe = False

    def handle(self, event: Event) -> None:
        if isinstance(event, StatusChanged) and event.state == "unsafe":
            self._unsafe = True

    def close(self) -> None:
        if self._unsafe:
            self.guardian.request_safe_state()
        else:
            self.guardian.stand_down()


# --- the guardian process -------------------------------------------------------------------------
class _Log:
    """The sidecar log: one timestamped line per thing done, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._file.write(f"{stamp} pid {os.getpid()}: {text}\n")
        self._file.flush()
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _parent_watch(parent_pid: int) -> int | None:
    """A pidfd for the parent (readable when it exits), or None where there is none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(parent_pid)
    except OSError:
        return None


def _wait_for_verdict(parent_pid: int, pending: bytes = b"") -> str:
    """Block until the parent says "done"/"unsafe" or dies; return what happened.
    ``pending``: what was read from the pipe after the plan."""
    stdin = sys.stdin.fileno()
    pidfd = _parent_watch(parent_pid)
    watched = [stdin] + ([pidfd] if pidfd is not None else [])
    buffer = pending
    while True:
        for word in buffer.decode(errors="replace").split():
            if word in ("done", "unsafe"):
                return word
        if os.getppid() != parent_pid:
            return "parent died (it is no longer this process's parent)"
        ready, _, _ = select.select(watched, [], [], PID_POLL_S)
        if stdin in ready:
            chunk = os.read(stdin, 4096)
            if not chunk:
                return f"parent pid {parent_pid} died (end of file on the pipe)"
            buffer += chunk
        elif pidfd is not None and pidfd in ready:
            return f"parent pid {parent_pid} exited (pidfd)"


def _read_plan() -> tuple[bytes, bytes]:
    """The plan line from the pipe (raw reads: nothing after it is left in a buffer)."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def _apply_all(instruments: list[GuardedInstrument], log: _Log, retry_s: float) -> bool:
    """Safe state on each instrument, retrying until ``retry_s``; True if all are safe."""
    all_safe = True
    for item in instruments:
        deadline = time.monotonic() + retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                done = make_safe(item.config(), item.channel)
            except Exception as exc:  # keep trying: the cell matters more than the reason
                if time.monotonic() >= deadline:
                    log.line(f"FAILED to make {item.label()} safe after {attempt} attempts: {exc}")
                    all_safe = False
                    break
                time.sleep(RETRY_PAUSE_S)
                continue
            log.line(f"safe state applied: {done} (attempt {attempt})")
            break
    return all_safe


def guard(plan: Mapping[str, Any], pending: bytes = b"", *, retry_s: float = SAFE_RETRY_S) -> int:
    """The guardian's life after it is armed; the exit code (0: nothing left unsafe)."""
    from labctl.instruments import build_instrument

    instruments = [GuardedInstrument.from_dict(d) for d in plan["instruments"]]
    parent_pid = int(plan["parent_pid"])
    log = _Log(Path(plan["log"]))
    try:
        for item in instruments:
            build_instrument(item.config(), item.channel)  # refuses now, not when it matters
    except Exception as exc:
        log.line(f"cannot guard: {exc}")
        print(f"cannot build {item.label()}: {' '.join(str(exc).split())}", flush=True)
        return 2
    names = ", ".join(i.label() for i in instruments)
    log.line(f"armed for run file {plan['run_file']} driven by pid {parent_pid}: {names}")
    with contextlib.suppress(OSError):  # a parent that died meanwhile is noticed below
        print("armed", flush=True)
        sys.stdout.close()
    verdict = _wait_for_verdict(parent_pid, pending)
    try:
        if verdict == "done":
            log.line("stood down: the run ended with the engine's own safe state")
            return 0
        if verdict == "unsafe":
            log.line("the engine could not confirm its safe state: applying it on a fresh connection")
        else:
            log.line(f"{verdict}: applying the safe state on a connection of its own")
        return 0 if _apply_all(instruments, log, retry_s) else 1
    finally:
        log.close()


def main() -> int:
    # The parent's session may send these to its whole group; the guardian outlives them.
    for name in ("SIGINT", "SIGHUP", "SIGQUIT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    line, pending = _read_plan()
    try:
        plan = json.loads(line)
    except ValueError as exc:
        print(f"bad plan: {exc}", flush=True)
        return 2
    return guard(plan, pending)


if __name__ == "__main__":
    sys.exit(main())
