"""The restarted worker waits for (and if hung, kills) the job processes its predecessor left."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labctl.queue.orphans import await_orphans, job_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="orphans are found through /proc")

# A stand-in with a job process's command line; it ends when its stdin closes.
_WAIT_FOR_STDIN = "import sys; print('ready', flush=True); sys.stdin.read()"


def _fake_job(job_id: int, slot: str) -> subprocess.Popen[bytes]:
    """Returns once the stand-in runs (between fork and exec /proc shows the parent's command line)."""
    argv = [sys.executable, "-c", _WAIT_FOR_STDIN, "-m", "labctl.queue.job", "--job", str(job_id), "--worker", slot]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_job_processes_are_found_by_job_and_slot() -> None:
    first, other = _fake_job(41, "host:sim/sim1"), _fake_job(42, "host:sim/sim2")
    try:
        assert job_processes(41, "host:sim/sim1") == [first.pid]
        assert job_processes(42, "host:sim/sim2") == [other.pid]
        assert job_processes(41, "host:sim/sim2") == []
        assert job_processes(4, "host:sim/sim1") == []
    finally:
        for p in (first, other):
            p.kill()
            p.wait()


def test_an_orphan_that_ends_is_waited_for_not_killed() -> None:
    orphan = _fake_job(7, "w/ch")
    pids = job_processes(7, "w/ch")
    assert pids == [orphan.pid]
    assert orphan.stdin is not None
    orphan.stdin.close()  # it ends its run by itself
    assert await_orphans(pids, wait_s=120.0) == []
    assert orphan.wait() == 0  # exited normally (a kill would give -9)


def test_a_hung_orphan_is_killed_after_the_wait() -> None:
    orphan = _fake_job(8, "w/ch")
    try:
        assert await_orphans([orphan.pid], wait_s=0.0) == [orphan.pid]
        assert orphan.wait() == -9
    finally:
        orphan.kill()
        orphan.wait()


def test_a_zombie_counts_as_gone() -> None:
    orphan = _fake_job(9, "w/ch")
    assert orphan.stdin is not None
    orphan.stdin.close()
    import os

    os.waitid(os.P_PID, orphan.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie
    assert job_processes(9, "w/ch") == []
    assert await_orphans([orphan.pid], wait_s=0.0) == []
    assert orphan.wait() == 0
