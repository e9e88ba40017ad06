"""Helpers of the queue worker and CLI tests: the CLI in subprocesses, waiting on store conditions.

Everything waits on a condition read from the store, with a generous hang guard; nothing
asserts on how fast anything ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from labctl.queue import Job, JobState, open_store

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD_S = 300.0
T = TypeVar("T")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "LABCTL_LAB": "", "LABCTL_QUEUE_STORE": ""}


def labctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``labctl ARGS`` to the end."""
    result = subprocess.run(
        [sys.executable, "-m", "labctl.cli", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=HANG_GUARD_S,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"labctl {' '.join(args)} -> {result.returncode}: {result.stderr}")
    return result


def start_runner(store: str, runs: Path, *extra: str) -> subprocess.Popen[str]:
    """``labctl queue run`` in the background (stderr kept for failure messages)."""
    return subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "queue", "run", "--store", store, "--runs", str(runs), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )


def wait_for(condition: Callable[[], T], what: str, guard: float = HANG_GUARD_S) -> T:
    """Poll ``condition`` until it returns something truthy (hang guard only)."""
    deadline = time.monotonic() + guard
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"hang guard: still waiting for {what}")
        time.sleep(0.05)


def jobs(store: str) -> list[Job]:
    with open_store(store) as s:
        return s.list_jobs()


def job(store: str, job_id: int) -> Job:
    with open_store(store) as s:
        return s.get(job_id)


def list_json(store: str) -> list[dict[str, Any]]:
    return json.loads(labctl("queue", "list", "--json", "--store", store).stdout)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def all_done(store: str) -> list[Job] | None:
    current = jobs(store)
    return current if current and all(j.done for j in current) else None


def state_is(store: str, job_id: int, *states: JobState) -> Job | None:
    current = job(store, job_id)
    return current if current.state in states else None
