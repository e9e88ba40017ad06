"""``labctl queue …`` from a technician's terminal: loading (checked like ``labctl run``, bad
input refused whole with exit 2), steering a running queue, and resuming what an interrupted
job left undone. Waits are on store conditions with hang guards only."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from labctl.queue import CellInfo, JobSpec, JobState, OnFailure, open_store
from labctl.queue.jobparams import job_params, split_params
from labctl.storage import open_run
from tests.queue_procs import job, labctl, list_json, start_runner, state_is, stop, wait_for

LAB = """
[instruments.pstat]
driver = "emstat4"
resource = "/dev/ttyACM0"

[instruments.pstat.channels.1]
max_current = 1.0
"""


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "queue.sqlite3")


def test_add_checks_like_run_and_queues_nothing_on_bad_input(store: str) -> None:
    cases = [
        (("nosuch", "--cell-id", "c"), "unknown protocol"),
        (("eis", "--cell-id", "c", "-p", "bogus=1"), "parameter 'bogus'"),
        (("eis", "--cell-id", "c", "-p", "thickness=-5"), "parameter 'thickness'"),
        (("eis", "--cell-id", "c", "--sim", "sigma=7"), "sigma"),
        (("eis", "--cell-id", "c", "--channel", "pstat"), "channel: unknown channel 'pstat'"),
        (("eis", "--cell-id", "c", "--not-before", "tomorrow"), "--not-before: cannot read 'tomorrow'"),
        (("eis", "--cell-id", "c", "--after", "99"), "after: job 99 does not exist"),
        (("eis", "--cell-id", "c", "--on-failure", "pray"), "pray"),
    ]
    for args, fragment in cases:
        result = labctl("queue", "add", *args, "--store", store, check=False)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert list_json(store) == []
    options = ("--electrolyte", "LiTFSI", "--channel", "sim2", "--on-failure", "stop", "--json")
    good = labctl("queue", "add", "eis", "--cell-id", "A-1", "--sim", "sigma=1e-3", "-p", "thickness=200",
                  *options, "--store", store)  # fmt: skip
    [record] = json.loads(good.stdout)
    assert (record["protocol"], record["channel"], record["state"]) == ("eis", "sim2", "queued")
    assert record["params"] == {"thickness": "200"} and record["sim"] == {"sigma": "1e-3"}
    assert record["cell"]["electrolyte"] == "LiTFSI" and record["on_failure"] == "stop"


BATCH_OK = """
[[job]]
key = "second"
protocol = "lsv"
cell_id = "B"
channel = "sim1"
after = ["first"]

[[job]]
key = "first"
protocol = "eis"
cell_id = "A"
channel = "sim1"
params = { thickness = 250 }
sim = { sigma = 0.002 }
not_before = 2020-01-01T00:00:00
"""


def test_add_batch_queues_in_dependency_order(store: str, tmp_path: Path) -> None:
    path = tmp_path / "night.toml"
    path.write_text(BATCH_OK)
    labctl("queue", "add-batch", str(path), "--store", store)
    first, second = list_json(store)
    assert (first["cell"]["id"], second["cell"]["id"]) == ("A", "B")  # moved after what it waits for
    assert second["after"] == [first["id"]] and first["sim"] == {"sigma": "0.002"}


@pytest.mark.parametrize(
    ("replace", "fragment"),
    [
        (('protocol = "lsv"', 'protocol = "lvs"'), "job 1 (second): parameter 'protocol'"),
        (("thickness = 250", "thickness = -250"), "job 2 (first): parameter 'thickness'"),
        (('channel = "sim1"\nafter', 'channel = "pstat:9"\nafter'), "job 1 (second): channel: unknown channel"),
        (('after = ["first"]', 'after = ["third"]'), "job 1 (second): after: 'third' is not the key"),
        (('not_before = 2020-01-01T00:00:00', 'after = ["second"]'), "after: dependency cycle"),
        (('cell_id = "A"', 'cell = "A"'), "job 2 (first): unknown field 'cell'"),
        (('sim = { sigma = 0.002 }', 'sim = { sigma = 5 }'), "job 2 (first): sim parameter sigma=5"),
        (('[[job]]\nkey = "second"', '[jobs]\nkey = "second"'), "unknown table 'jobs'"),
    ],
)
def test_bad_batch_files_are_rejected_whole(
    store: str, tmp_path: Path, replace: tuple[str, str], fragment: str
) -> None:
    path = tmp_path / "night.toml"
    (tmp_path / "lab.toml").write_text(LAB)
    text = BATCH_OK.replace(*replace)
    assert text != BATCH_OK
    path.write_text(text)
    result = labctl("queue", "add-batch", str(path), "--lab", str(tmp_path / "lab.toml"), "--store", store, check=False)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert list_json(store) == []


def test_batch_exceeding_a_lab_file_limit_is_rejected_whole(store: str, tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text(LAB)
    path = tmp_path / "night.toml"
    path.write_text(BATCH_OK + '\n[[job]]\nprotocol = "ccd"\ncell_id = "C"\nchannel = "pstat"\n'
                    "params = { area = 2.0, thickness = 100 }\n")  # fmt: skip
    result = labctl("queue", "add-batch", str(path), "--lab", str(tmp_path / "lab.toml"), "--store", store, check=False)
    assert result.returncode == 2
    assert "job 3" in result.stderr and "safety limit 1 mA" in result.stderr, result.stderr
    assert list_json(store) == []


def test_steering_a_running_queue_from_the_cli(store: str, tmp_path: Path) -> None:
    with open_store(store) as s:
        long = s.add(JobSpec("cycling", CellInfo("long"), job_params({"cycles": "5000", "half_cycle": "0.01"}), "sim1"))
        b = s.add(JobSpec("lsv", CellInfo("B"), {}, "sim1"))
        c = s.add(JobSpec("lsv", CellInfo("C"), {}, "sim1"))
        # parameters the protocol no longer accepts when the job starts: it fails, and stops its channel
        bad = s.add(JobSpec("eis", CellInfo("bad"), {"bogus": "1"}, "sim2", on_failure=OnFailure.STOP))
        after_bad = s.add(JobSpec("lsv", CellInfo("F"), {}, "sim2"))
    runner = start_runner(store, tmp_path / "runs", "--sim-channels", "2", "--speed", "1000")
    try:
        wait_for(lambda: (j := job(store, long.id)).state == JobState.RUNNING and j.step, "the long job running")
        labctl("queue", "pause", str(long.id), "--store", store)
        wait_for(lambda: state_is(store, long.id, JobState.PAUSED), "paused")
        labctl("queue", "resume", str(long.id), "--store", store)
        wait_for(lambda: (j := job(store, long.id)).state == JobState.RUNNING and j.request is None, "resumed")
        moved = labctl("queue", "move", str(c.id), "--before", str(b.id), "--store", store)
        assert f"queue now: {c.id} {b.id}" in moved.stdout

        failed = wait_for(lambda: state_is(store, bad.id, JobState.FAILED), "the bad job to fail")
        assert "parameter 'bogus'" in (failed.error or "")
        listing = labctl("queue", "list", "--store", store).stdout
        assert "held: sim2" in listing
        assert job(store, after_bad.id).state == JobState.QUEUED
        labctl("queue", "ack", "sim2", "--store", store)
        wait_for(lambda: state_is(store, after_bad.id, JobState.COMPLETED), "the job behind the failure, after ack")

        labctl("queue", "cancel", str(long.id), "--store", store)
        cancelled = wait_for(lambda: state_is(store, long.id, JobState.CANCELLED), "cancelled")
        with open_run(cancelled.file) as run:
            assert run.status == "aborted" and "cancelled" in run.error
        done_c = wait_for(lambda: state_is(store, c.id, JobState.COMPLETED), "C")
        done_b = wait_for(lambda: state_is(store, b.id, JobState.COMPLETED), "B")
        assert done_c.started < done_b.started  # the reorder held

        retried = labctl("queue", "retry", str(long.id), "--store", store).stdout
        again_id = int(retried.split()[1].rstrip(":"))
        again = job(store, again_id)
        assert again.retry_of == long.id and again.attempt == 2
        wait_for(lambda: job(store, again_id).state in (JobState.RUNNING, JobState.PAUSING), "the retry running")
        labctl("queue", "cancel", str(again_id), "--store", store)
        wait_for(lambda: state_is(store, again_id, JobState.CANCELLED), "the retry cancelled")
        shown = json.loads(labctl("queue", "show", str(again_id), "--json", "--store", store).stdout)
        assert shown["retry_of"] == long.id and shown["state"] == "cancelled" and Path(shown["file"]).exists()
    finally:
        stop(runner)
    assert runner.returncode == 0
    records = {r["id"]: r for r in list_json(store)}
    assert records[b.id]["results"] and Path(records[b.id]["file"]).exists()
    cleared = labctl("queue", "clear-finished", "--store", store).stdout
    assert f"cleared {len(records)} finished job(s)" in cleared
    assert list_json(store) == []


def test_resume_remaining_queues_the_temperatures_not_measured(store: str, tmp_path: Path) -> None:
    temperatures = [20.0, 40.0, 60.0]
    with open_store(store) as s:
        params = job_params({"temperatures": temperatures, "settle_time": "60"})
        spec = JobSpec("arrhenius", CellInfo("T"), params, "sim1")
        arr = s.add(spec)
        eis = s.add(JobSpec("eis", CellInfo("E"), {}, "sim2"))
    runner = start_runner(store, tmp_path / "runs", "--sim-channels", "2", "--speed", "1000")
    try:
        running = wait_for(lambda: (j := job(store, arr.id)).step == "40 °C" and j, "the second set point")
        with open_run(running.file) as run:
            os.kill(int(run.meta["writer_pid"]), signal.SIGKILL)
        wait_for(lambda: state_is(store, arr.id, JobState.INTERRUPTED), "interrupted")
        wait_for(lambda: state_is(store, eis.id, JobState.COMPLETED), "the eis job")
    finally:
        stop(runner)
    interrupted = job(store, arr.id)
    with open_run(interrupted.file) as run:
        assert run.status == "interrupted"
        measured = {s.label for s in run.steps if s.end_reason is not None and s.label.startswith("EIS")}
    assert "EIS 20 °C" in measured
    out = labctl("queue", "resume-remaining", str(arr.id), "--json", "--store", store).stdout
    new = json.loads(out)
    left = [float(t) for t in new["params"]["temperatures"].split(",")]
    assert left == [t for t in temperatures if f"EIS {t:g} °C" not in measured]
    assert new["params"]["settle_time"] == "60" and new["channel"] == "sim1"
    assert f"remaining steps of job {arr.id}" in new["cell"]["notes"]
    refused = labctl("queue", "resume-remaining", str(eis.id), "--store", store, check=False)
    assert refused.returncode == 2 and "only a job that stopped early" in refused.stderr
    assert split_params(job(store, new["id"]).params)[0]["temperatures"] == new["params"]["temperatures"]


def test_resume_remaining_refuses_protocols_that_cannot_continue(store: str, tmp_path: Path) -> None:
    with open_store(store) as s:
        lsv = s.add(JobSpec("lsv", CellInfo("L"), {}, "sim1"))
        s.claim_next("w/sim1", ["sim1"])
        s.attach_file(lsv.id, "w/sim1", str(tmp_path / "none.h5"))
        s.recover_worker("w/sim1")
    result = labctl("queue", "resume-remaining", str(lsv.id), "--store", store, check=False)
    assert result.returncode == 2 and "has no run file" in result.stderr
    (tmp_path / "none.h5").write_bytes(b"")
    result = labctl("queue", "resume-remaining", str(lsv.id), "--store", store, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_store_errors_are_one_line(tmp_path: Path) -> None:
    result = labctl("queue", "list", "--store", "mysql://nowhere", check=False)
    assert result.returncode == 2 and "unknown scheme 'mysql'" in result.stderr
    result = labctl("queue", "show", "7", "--store", str(tmp_path / "q.sqlite3"), check=False)
    assert result.returncode == 2 and "7" in result.stderr and "Traceback" not in result.stderr


def test_list_follow_prints_the_queue_again_when_it_changes(store: str) -> None:
    import subprocess
    import sys
    import threading

    from tests.queue_procs import env
    from tests.signal_trial import ignore_sigint

    labctl("queue", "add", "lsv", "--cell-id", "first-cell", "--store", store)
    follower = subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", "queue", "list", "--follow", "--store", store],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        preexec_fn=ignore_sigint,  # as started by `cmd &` in a script: Ctrl-C must still stop it
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("first-cell" in line for line in lines), "the first table")
        labctl("queue", "add", "lsv", "--cell-id", "second-cell", "--store", store)
        wait_for(lambda: any("second-cell" in line for line in lines), "the redrawn table")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(60)
    assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
