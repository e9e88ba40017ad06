"""The queue worker (``labctl queue run`` / ``queue worker``): parallel channels, one process
per job, crash recovery, never a job run twice.

Simulated channels run in virtual time (``--speed max``) or at a high speed factor where a
job must take a little wall time (to be killed mid-run). Every wait is on a store condition
with a hang guard; kill moments are random draws, reported on failure.
"""

from __future__ import annotations

import itertools
import random
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from labctl.queue import CellInfo, JobSpec, JobState, OnFailure, open_store
from labctl.queue.identity import WorkerLock, owns, slot_id
from labctl.queue.jobparams import job_params, split_params
from labctl.storage import open_run
from tests.queue_procs import all_done, jobs, labctl, start_runner, stop, wait_for

pytest_plugins = ["tests.pg_fixture"]


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "queue.sqlite3")
    return request.getfixturevalue("pg_cluster").create_database()


def eis_spec(channel: str | None, sigma: float, seed: int, cell: str) -> JobSpec:
    # r_leads subtracts the simulator's lead resistance (r_series, default 0.25 Ω), as a lab would.
    return JobSpec(
        "eis",
        CellInfo(cell, "LiTFSI/PEO"),
        job_params({"r_leads": "0.25"}, {"sigma": f"{sigma:.6g}", "seed": str(seed)}),
        channel=channel,
    )


def cycling_spec(channel: str | None, cell: str, cycles: int = 2) -> JobSpec:
    params = job_params({"cycles": str(cycles), "half_cycle": "0.01"})
    return JobSpec("cycling", CellInfo(cell), params, channel=channel)


def lsv_spec(channel: str | None, cell: str) -> JobSpec:
    return JobSpec("lsv", CellInfo(cell), job_params({}), channel=channel)


def mixed_batch(rng: np.random.Generator) -> tuple[list[JobSpec], dict[str, float]]:
    """12 jobs over sim1…sim4 (some on "any channel"): 6 eis with random truth, 3 cycling, 3 lsv."""
    specs: list[JobSpec] = []
    truth: dict[str, float] = {}
    channels = ["sim1", "sim2", "sim3", "sim4", None]
    for i in range(6):
        sigma = float(10 ** rng.uniform(-4, -2.7))
        truth[f"eis{i}"] = sigma
        specs.append(eis_spec(channels[i % 5], sigma, int(rng.integers(0, 2**31)), f"eis{i}"))
    specs += [cycling_spec(channels[(i + 1) % 5], f"cyc{i}") for i in range(3)]
    specs += [lsv_spec(channels[(i + 3) % 5], f"lsv{i}") for i in range(3)]
    return specs, truth


def check_batch_results(finished: list, truth: dict[str, float], channels: set[str]) -> None:
    assert len(finished) == 12
    for job in finished:
        assert job.state == JobState.COMPLETED, (job.id, job.error)
        assert job.channel in channels
        with open_run(job.file) as run:
            assert run.status == "completed"
            assert run.results.keys() == dict(job.results).keys()
        if job.protocol == "eis":
            sigma = job.results["sigma_S_cm"]
            assert sigma == pytest.approx(truth[job.cell.id], rel=0.02), (job.cell.id, job.params)
    # one process per channel at a time, channels in parallel: the claim-to-finish intervals of
    # different channels overlap (all four are claimed in the worker's first pass)
    by_channel = Counter(job.channel for job in finished)
    assert set(by_channel) == channels
    spans = sorted((job.started, job.finished, job.channel) for job in finished)
    overlapping = any(a[1] > b[0] and a[2] != b[2] for a, b in itertools.pairwise(spans))
    assert overlapping
    for channel in channels:
        mine = sorted((j.started, j.finished) for j in finished if j.channel == channel)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(mine))


def test_batch_of_12_runs_in_parallel_on_4_sim_channels(tmp_path: Path) -> None:
    store = str(tmp_path / "queue.sqlite3")
    specs, truth = mixed_batch(np.random.default_rng())
    with open_store(store) as s:
        s.add_batch(specs)
    runner = start_runner(store, tmp_path / "runs", "--until-empty", "--sim-channels", "4")
    assert runner.wait(600) == 0, runner.stderr.read() if runner.stderr else ""
    check_batch_results(jobs(store), truth, {"sim1", "sim2", "sim3", "sim4"})


def test_batch_on_postgres_with_two_workers_of_two_channels(pg_cluster, tmp_path: Path) -> None:
    store = pg_cluster.create_database()
    specs, truth = mixed_batch(np.random.default_rng())
    with open_store(store) as s:
        s.add_batch(specs)
    workers = [
        start_runner(store, tmp_path / "runs", "--until-empty", "--sim-channels", "4",
                     "--channels", channels, "--worker-id", name)
        for name, channels in (("pcA", "sim1,sim2"), ("pcB", "sim3,sim4"))
    ]  # fmt: skip
    for worker in workers:
        assert worker.wait(600) == 0, worker.stderr.read() if worker.stderr else ""
    finished = jobs(store)
    check_batch_results(finished, truth, {"sim1", "sim2", "sim3", "sim4"})
    for job in finished:
        expected = "pcA" if job.channel in ("sim1", "sim2") else "pcB"
        assert owns(expected, job.worker), (job.id, job.channel, job.worker)


def test_two_runners_on_one_sqlite_store_never_share_a_job_or_a_channel(tmp_path: Path) -> None:
    store = str(tmp_path / "queue.sqlite3")
    with open_store(store) as s:
        s.add_batch([cycling_spec(None, f"c{i}", cycles=1) if i % 2 else lsv_spec(None, f"l{i}") for i in range(10)])
    runners = [
        start_runner(store, tmp_path / "runs", "--until-empty", "--sim-channels", "2", "--worker-id", name)
        for name in ("left", "right")
    ]
    for runner in runners:
        assert runner.wait(600) == 0, runner.stderr.read() if runner.stderr else ""
    finished = jobs(store)
    assert [j.state for j in finished] == [JobState.COMPLETED] * 10
    files = sorted((tmp_path / "runs").glob("*.h5"))
    assert len(files) == 10 and len({j.file for j in finished}) == 10  # each job ran once
    for channel in ("sim1", "sim2"):
        mine = sorted((j.started, j.finished) for j in finished if j.channel == channel)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(mine)), channel


def test_same_worker_id_twice_on_one_pc_is_refused(tmp_path: Path) -> None:
    store = str(tmp_path / "queue.sqlite3")
    lock = WorkerLock("bench:sim", store)
    lock.acquire()
    try:
        result = labctl("queue", "run", "--until-empty", "--store", store, "--worker-id", "bench:sim",
                        "--runs", str(tmp_path / "runs"), check=False)  # fmt: skip
    finally:
        lock.release()
    assert result.returncode == 2
    assert "worker id 'bench:sim' is already running on this PC" in result.stderr
    assert "Traceback" not in result.stderr


def test_runner_killed_at_random_moments_keeps_the_store_consistent(tmp_path: Path) -> None:
    """SIGKILL the runner 20 times; after each restart: finished jobs keep files and results,
    the jobs that were running are interrupted (never re-run) with a readable file."""
    store = str(tmp_path / "queue.sqlite3")
    runs = tmp_path / "runs"
    with open_store(store) as s:
        s.add_batch([cycling_spec(None, f"cell{i}", cycles=1) for i in range(70)])
    rng = random.Random()
    moments: list[float] = []
    finished_seen: dict[int, tuple[str, dict]] = {}
    was_active: list[int] = []
    kills = 0
    for _ in range(20):
        runner = start_runner(store, runs, "--sim-channels", "2", "--speed", "300")
        left = list(was_active)
        wait_for(lambda left=left: not any(j.active and j.id in left for j in jobs(store)), "recovery after restart")
        _check_consistent(store, runs, left, finished_seen, moments)
        with open_store(store) as s:
            for hold in s.holds():
                s.ack(hold.channel)  # a technician checked the cell
        wait_for(lambda: any(j.active for j in jobs(store)) or all_done(store), "a job to start")
        moment = rng.uniform(0.0, 3.0)  # job processes need about a second to start
        moments.append(moment)
        _pause(moment)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        kills += 1
        was_active = [j.id for j in jobs(store) if j.active]
    with open_store(store) as s:
        for job in s.list_jobs(states=[JobState.QUEUED])[4:]:
            s.cancel(job.id)  # four are left to show the queue still runs after all this
    final = start_runner(store, runs, "--sim-channels", "2")
    try:
        left = list(was_active)
        wait_for(lambda: not any(j.active and j.id in left for j in jobs(store)), "recovery after the last kill")
        with open_store(store) as s:
            for hold in s.holds():
                s.ack(hold.channel)
        wait_for(lambda: all_done(store), "the last queued jobs")
    finally:
        stop(final)
    _check_consistent(store, runs, was_active, finished_seen, moments)
    assert kills == 20
    states = Counter(j.state for j in jobs(store))
    assert states[JobState.COMPLETED] >= 1 and states[JobState.INTERRUPTED] >= 1, states
    assert set(states) <= {JobState.COMPLETED, JobState.INTERRUPTED, JobState.CANCELLED}, states


def _pause(seconds: float) -> None:
    """A random kill moment (the randomness is the point; nothing is asserted about speed)."""
    import time

    time.sleep(seconds)


def _check_consistent(store: str, runs: Path, was_active: list[int], seen: dict, moments: list[float]) -> None:
    current = {j.id: j for j in jobs(store)}
    context = f"kill moments so far: {moments}"
    # no job ran twice: at most one run file per job (file names carry the job id and attempt)
    per_job = Counter(p.name.split("_job")[1].split("-")[0] for p in runs.glob("*.h5"))
    assert all(n == 1 for n in per_job.values()), (per_job, context)
    for job_id in was_active:
        job = current[job_id]
        assert job.state in (JobState.INTERRUPTED, JobState.COMPLETED), (job, context)
        if job.state == JobState.INTERRUPTED and job.file and Path(job.file).exists():
            with open_run(job.file) as run:
                # readable and closed; "completed" when the run ended just as its worker died
                # (the outcome could not reach the store before the restarted worker interrupted it)
                assert run.finalized and run.status in ("interrupted", "aborted", "completed"), (run.status, context)
    for job in current.values():
        assert job.state != JobState.QUEUED or job.file is None, (job, context)
        if job.state == JobState.COMPLETED:
            record = (job.file, dict(job.results or {}))
            assert seen.setdefault(job.id, record) == record, context
            with open_run(job.file) as run:
                assert run.status == "completed", context
    active_channels = Counter(j.channel for j in current.values() if j.active)
    assert all(n == 1 for n in active_channels.values()), context


def test_postgres_kill_one_worker_the_other_keeps_its_channels(pg_cluster, tmp_path: Path) -> None:
    store = pg_cluster.create_database()
    runs = tmp_path / "runs"
    with open_store(store) as s:
        for channel in ("sim1", "sim2", "sim3", "sim4"):
            s.add_batch([cycling_spec(channel, f"{channel}-{i}", cycles=2) for i in range(3)])
    args = ("--sim-channels", "4", "--speed", "100")
    doomed = start_runner(store, runs, *args, "--channels", "sim1,sim2", "--worker-id", "pcA")
    survivor = start_runner(store, runs, *args, "--channels", "sim3,sim4", "--worker-id", "pcA2", "--until-empty")
    wait_for(lambda: any(j.active and owns("pcA", j.worker) for j in jobs(store)), "pcA running a job")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    left_active = [j.id for j in jobs(store) if j.active and owns("pcA", j.worker)]
    assert survivor.wait(600) == 0
    current = {j.id: j for j in jobs(store)}
    for job in current.values():
        if job.channel in ("sim3", "sim4") or job.requested_channel in ("sim3", "sim4"):
            assert job.state == JobState.COMPLETED and owns("pcA2", job.worker)
        else:
            assert job.worker is None or owns("pcA", job.worker)  # never taken over
    assert all(current[i].active for i in left_active)  # nobody touched them while pcA was dead
    # pcA comes back: its job is interrupted (not re-run), its channel held
    back = start_runner(store, runs, *args, "--channels", "sim1,sim2", "--worker-id", "pcA", "--until-empty")
    assert back.wait(600) == 0
    with open_store(store) as s:
        held = {h.channel for h in s.holds()}
        for job_id in left_active:
            job = s.get(job_id)
            assert job.state == JobState.INTERRUPTED and job.channel in held


def test_killed_job_process_interrupts_only_its_job_and_holds_its_channel(tmp_path: Path) -> None:
    store = str(tmp_path / "queue.sqlite3")
    with open_store(store) as s:
        victim = s.add(cycling_spec("sim1", "victim", cycles=5000))
        other = s.add(cycling_spec("sim2", "other", cycles=1))
        behind = s.add(lsv_spec("sim1", "behind"))
    runner = start_runner(store, tmp_path / "runs", "--sim-channels", "2", "--speed", "1000")
    try:
        running = wait_for(lambda: _with_file(store, victim.id), "the victim's run file")
        with open_run(running.file) as run:
            pid = int(run.meta["writer_pid"])
        import os

        os.kill(pid, signal.SIGKILL)
        interrupted = wait_for(lambda: _in_state(store, victim.id, JobState.INTERRUPTED), "interruption")
        wait_for(lambda: _in_state(store, other.id, JobState.COMPLETED), "the other channel's job")
        with open_store(store) as s:
            assert [h.channel for h in s.holds()] == ["sim1"]
            assert s.get(behind.id).state == JobState.QUEUED  # held channel: nothing started behind it
        with open_run(interrupted.file) as run:
            assert run.status == "interrupted"
        labctl("queue", "ack", "sim1", "--store", store)
        wait_for(lambda: _in_state(store, behind.id, JobState.COMPLETED), "the job behind, after ack")
    finally:
        stop(runner)


def _with_file(store: str, job_id: int):
    with open_store(store) as s:
        job = s.get(job_id)
    return job if job.active and job.file and Path(job.file).exists() and job.step else None


def _in_state(store: str, job_id: int, state: JobState):
    with open_store(store) as s:
        job = s.get(job_id)
    return job if job.state == state else None


def test_attach_file_is_kept_when_the_worker_dies(location: str) -> None:
    with open_store(location) as s:
        job = s.add(lsv_spec("sim1", "x"))
        claimed = s.claim_next(slot_id("w", "sim1"), ["sim1"])
        assert claimed is not None and claimed.id == job.id
        s.attach_file(job.id, slot_id("w", "sim1"), "/data/run.h5")
        with pytest.raises(ValueError, match="not 'other/sim1'"):
            s.attach_file(job.id, "other/sim1", "/data/x.h5")
        [interrupted] = s.recover_worker(slot_id("w", "sim1"))
        assert interrupted.file == "/data/run.h5" and interrupted.state == JobState.INTERRUPTED


def test_job_params_keep_protocol_parameters_and_sim_truth_apart() -> None:
    stored = job_params({"temperatures": [20, 30.5], "form": "sigma"}, {"sigma": 0.001})
    assert split_params(stored) == ({"temperatures": "20,30.5", "form": "sigma"}, {"sigma": "0.001"})
    assert OnFailure("stop") is OnFailure.STOP


def test_any_channel_jobs_with_sim_truth_go_only_to_simulated_channels(tmp_path: Path) -> None:
    from labctl.queue.jobparams import fits_channel

    with open_store(str(tmp_path / "q.sqlite3")) as s:
        simulated = s.add(eis_spec(None, 1e-3, 1, "s"))
        plain = s.add(lsv_spec(None, "p"))
    assert fits_channel("sim3", simulated) and not fits_channel("pstat", simulated)
    assert fits_channel("pstat", plain) and fits_channel("sim1", plain)


def test_worker_runs_its_lab_file_channel_on_a_wire_emulator(pg_cluster, tmp_path: Path) -> None:
    """``queue worker --lab`` on PostgreSQL drives a real driver (EmStat4 over its wire emulator)."""
    from drivers.sim import SimParams
    from drivers.sim.wire.emstat import serve_emstat4

    store = pg_cluster.create_database()
    sigma = float(10 ** np.random.default_rng().uniform(-4, -3))
    truth = SimParams.from_strings({"sigma": f"{sigma:.6g}", "thickness": "200", "area": "0.5"})
    with serve_emstat4(truth, speed=1000, cell_type="ss") as server:
        lab = tmp_path / "lab.toml"
        lab.write_text(
            f'[instruments.pstat]\ndriver = "emstat4"\nresource = "{server.resource}"\n'
            "options = { clock_speed = 1000, timeout = 1.0 }\n"
            "[instruments.pstat.channels.1]\ncell = { thickness = 200, area = 0.5 }\n"
        )
        labctl("queue", "add", "eis", "--cell-id", "wire", "--channel", "pstat", "-p", "r_leads=0.25",
               "--lab", str(lab), "--store", store)  # fmt: skip
        result = labctl("queue", "worker", "--lab", str(lab), "--store", store, "--until-empty",
                        "--runs", str(tmp_path / "runs"), check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert server.device.wait_idle(5.0) and not server.device.cell_on
    [done] = jobs(store)
    assert done.state == JobState.COMPLETED, done.error
    assert done.channel == "pstat" and done.worker is not None and ":lab-lab-" in done.worker
    assert done.results["sigma_S_cm"] == pytest.approx(sigma, rel=0.02)


def test_sigkilled_worker_leaves_the_emulated_cell_off(tmp_path: Path) -> None:
    """The job process notices its worker's death (PR_SET_PDEATHSIG) and switches the cell off;
    the restarted worker marks the job interrupted and holds the channel."""
    from drivers.sim import SimParams
    from drivers.sim.wire.emstat import serve_emstat4

    store = str(tmp_path / "queue.sqlite3")
    runs = tmp_path / "runs"
    with serve_emstat4(SimParams(), speed=100, cell_type="li_li") as server:
        lab = tmp_path / "lab.toml"
        lab.write_text(
            f'[instruments.pstat]\ndriver = "emstat4"\nresource = "{server.resource}"\n'
            "options = { clock_speed = 100, timeout = 1.0 }\n"
            "[instruments.pstat.channels.1]\ncell = { thickness = 100, area = 1.0 }\n"
        )
        labctl("queue", "add", "cycling", "--cell-id", "on", "--channel", "pstat", "-p", "cycles=100",
               "--lab", str(lab), "--store", store)  # fmt: skip
        worker = start_runner(store, runs, "--lab", str(lab))
        wait_for(lambda: any(j.active and j.step for j in jobs(store)) and server.device.cell_on, "the cell driven")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        wait_for(lambda: not server.device.cell_on, "the cell switched off after the worker died", guard=60)
        back = start_runner(store, runs, "--lab", str(lab), "--until-empty")
        assert back.wait(600) == 0
    [job] = jobs(store)
    assert job.state == JobState.INTERRUPTED
    with open_store(store) as s:
        assert [h.channel for h in s.holds()] == ["pstat"]
    with open_run(job.file) as run:
        assert run.finalized and "worker supervising this job died" in run.error
