"""ETA by dry run: the estimate of a simulated job is the simulated run's duration, and the
queue's schedule follows the store's rules (per-channel FIFO, dependencies, not-before)."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from labctl.config import parse_lab
from labctl.queue import CellInfo, Job, JobSpec, JobState, OnFailure, open_store
from labctl.queue.estimate import Estimate, Estimator, StepEstimate, estimate_job, estimate_queue
from labctl.runner import prepare_run
from labctl.storage.reader import open_run

#: Both sides run the same deterministic simulator in virtual time: only float rounding differs.
TOLERANCE_S = 1e-6


PROTOCOLS = ("cycling", "eis", "lsv", "ccd", "li_cu_ce", "transference")


def random_recipe(rng: random.Random, choice: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """Parameters and simulation truth for ``choice`` drawn at random (kept short to run)."""
    sim = {"seed": str(rng.randrange(2**31)), "sigma": f"{10 ** rng.uniform(-5, -3):.3g}"}
    if choice == "cycling":
        params = {"cycles": str(rng.randint(1, 4)), "half_cycle": f"{rng.uniform(0.2, 1.0):.2f}"}
    elif choice == "eis":
        params = {"points_per_decade": str(rng.randint(3, 10)), "rest": f"{rng.uniform(0, 60):.1f}"}
    elif choice == "lsv":
        params = {"rate": f"{rng.uniform(0.5, 5):.2f}", "rest": f"{rng.uniform(0, 60):.0f}"}
        sim["esw"] = f"{rng.uniform(3.5, 5.0):.2f}"
    elif choice == "ccd":
        params = {"step": f"{rng.uniform(0.1, 0.5):.2f}", "max": f"{rng.uniform(0.5, 2.0):.2f}"}
        sim["ccd"] = f"{rng.uniform(0.2, 1.5):.2f}"  # sometimes shorts within the ramp: an early end
    elif choice == "li_cu_ce":
        params = {"n": str(rng.randint(1, 4))}
        sim["ce"] = f"{rng.uniform(0.9, 0.99):.3f}"
    else:
        params = {"max_time": f"{rng.uniform(0.2, 2):.2f}", "points_per_decade": str(rng.randint(3, 8))}
    params["area"] = f"{rng.uniform(0.5, 2.0):.2f}"
    params["thickness"] = f"{rng.uniform(50, 500):.0f}"
    return choice, params, sim


def actual_duration(tmp_path: Path, protocol: str, params: dict[str, str], sim: dict[str, str]) -> float:
    """Run the job for real on the simulator and read the duration back from its run file."""
    path = tmp_path / f"actual-{len(list(tmp_path.iterdir()))}.h5"
    outcome = prepare_run(protocol, params=params, instrument="sim", sim=sim, speed="max", path=path).execute()
    assert outcome.status.value == "completed", outcome.error
    with open_run(path) as run:
        last = run.steps[-1]
        return last.t_start + last.duration


@pytest.mark.parametrize("draw", range(2 * len(PROTOCOLS)))
def test_estimate_equals_the_simulated_run(tmp_path: Path, draw: int) -> None:
    rng = random.Random(1000 + draw)
    protocol, params, sim = random_recipe(rng, PROTOCOLS[draw % len(PROTOCOLS)])
    spec = JobSpec(protocol=protocol, cell=CellInfo(id=f"cell-{draw}"), params=params)

    estimate = estimate_job(spec, sim=sim)

    assert estimate.known, estimate.reason
    truth = actual_duration(tmp_path, protocol, params, sim)
    assert estimate.duration == pytest.approx(truth, abs=TOLERANCE_S, rel=1e-9)
    assert estimate.steps and estimate.steps[-1].ends_at == estimate.duration
    assert sum(s.duration for s in estimate.steps) <= estimate.duration + TOLERANCE_S


def test_the_simulation_truth_changes_the_estimate() -> None:
    """The job's --sim truth is used: a cell that shorts early ends the CCD ramp early."""
    spec = JobSpec(protocol="ccd", cell=CellInfo(id="c"), params={"max": "3", "area": "1", "thickness": "100"})
    tough = estimate_job(spec, sim={"ccd": "10"})
    weak = estimate_job(spec, sim={"ccd": "0.3"})
    assert tough.known and weak.known
    assert weak.duration is not None and tough.duration is not None
    assert weak.duration < tough.duration


def test_geometry_comes_from_the_lab_file_for_the_jobs_channel(tmp_path: Path) -> None:
    lab = parse_lab(
        {
            "defaults": {"cell": {"area": 1.0, "thickness": 100}},
            "instruments": {
                "pstat": {"driver": "emstat4", "resource": "/dev/null", "channels": {"1": {"cell": {"area": 0.5}}}}
            },
        },
        tmp_path / "lab.toml",
    )
    estimator = Estimator(lab=lab)
    spec = JobSpec(protocol="cycling", cell=CellInfo(id="c"), params={"cycles": "1"}, channel="pstat:1")
    assert estimator.params_for(spec) == {"cycles": "1", "area": "0.5", "thickness": "100.0"}
    given = replace(spec, params={"cycles": "1", "area": "2"})
    assert estimator.params_for(given)["area"] == "2"


def test_repeated_recipes_are_dry_run_once() -> None:
    estimator = Estimator()
    specs = [
        JobSpec(
            protocol="eis",
            cell=CellInfo(id=f"cell-{i}"),
            params={"points_per_decade": "4", "area": "1", "thickness": "100"},
        )
        for i in range(10)
    ]
    estimates = [estimator.estimate(spec) for spec in specs]
    assert estimator.dry_runs == 1
    assert len({e.duration for e in estimates}) == 1
    other = replace(specs[0], params={**specs[0].params, "points_per_decade": "5"})
    assert estimator.estimate(other).duration != estimates[0].duration
    assert estimator.dry_runs == 2


@pytest.mark.parametrize(
    ("protocol", "params", "sim", "reason_part"),
    [
        ("no_such_protocol", {}, {}, "no_such_protocol"),
        ("cycling", {"cycles": "many"}, {}, "cycles"),
        ("cycling", {"sampel_period": "1"}, {}, "sampel_period"),
        ("cycling", {"cycles": "1"}, {"sigma": "fast"}, "sigma"),
    ],
)
def test_a_job_the_simulator_cannot_run_is_unknown_with_the_reason(
    protocol: str, params: dict[str, str], sim: dict[str, str], reason_part: str
) -> None:
    estimate = estimate_job(JobSpec(protocol=protocol, cell=CellInfo(id="c"), params=params), sim=sim)
    assert not estimate.known
    assert estimate.duration is None
    assert reason_part in estimate.reason
    assert "\n" not in estimate.reason


def test_remaining_is_scaled_by_the_measured_pace() -> None:
    steps = (
        StepEstimate(0, "Rest", "rest", 100.0, 100.0),
        StepEstimate(1, "ConstantCurrent", "charge", 300.0, 400.0),
        StepEstimate(2, "ConstantCurrent", "discharge", 600.0, 1000.0),
    )
    estimate = Estimate(1000.0, steps)
    assert estimate.remaining(0, 0.0) == 1000.0
    assert estimate.remaining(1, 100.0) == pytest.approx(900.0)  # on pace
    assert estimate.remaining(2, 800.0) == pytest.approx(1200.0)  # twice as slow so far
    assert estimate.remaining(3, 500.0) == 0.0
    assert Estimate(None, reason="x").remaining(1, 10.0) is None


# ---- the schedule -------------------------------------------------------------------


class FixedEstimator(Estimator):
    """Durations given per protocol name, so the schedule arithmetic is checked exactly."""

    def __init__(self, durations: dict[str, float | None]) -> None:
        super().__init__()
        self.durations = durations

    def estimate(self, job, *, sim=None):  # type: ignore[no-untyped-def, override]
        duration = self.durations[job.protocol]
        return Estimate(duration) if duration is not None else Estimate(None, reason=f"{job.protocol} unknown")


def add(store, protocol: str, channel: str | None, **kw):  # type: ignore[no-untyped-def]
    return store.add(JobSpec(protocol=protocol, cell=CellInfo(id=protocol), channel=channel, **kw), now=0.0)


def test_schedule_follows_fifo_dependencies_and_not_before(tmp_path: Path) -> None:
    estimator = FixedEstimator({"a": 100.0, "b": 50.0, "c": 10.0, "d": 30.0, "e": 5.0})
    now = 1000.0
    with open_store(tmp_path / "q.sqlite3") as store:
        a = add(store, "a", "ch1")
        b = add(store, "b", "ch1")
        c = add(store, "c", "ch2", after=(a.id,))  # waits for a although ch2 is free
        d = add(store, "d", "ch2")  # FIFO: behind c on ch2
        e = add(store, "e", "ch3", not_before=now + 500.0)
        schedule = estimate_queue(store.list_jobs(), now, estimator=estimator)

    assert schedule.slot(a.id).start == now and schedule.slot(a.id).end == now + 100
    assert schedule.slot(b.id).start == now + 100 and schedule.slot(b.id).end == now + 150
    assert schedule.slot(c.id).start == now + 100 and schedule.slot(c.id).end == now + 110
    assert schedule.slot(d.id).start == now + 110 and schedule.slot(d.id).end == now + 140
    assert schedule.slot(e.id).start == now + 500 and schedule.slot(e.id).end == now + 505
    assert schedule.channel_ends == {"ch1": now + 150, "ch2": now + 140, "ch3": now + 505}


def test_schedule_counts_the_running_job_and_unknowns(tmp_path: Path) -> None:
    estimator = FixedEstimator({"a": 100.0, "b": None, "c": 20.0, "d": 40.0})
    now = 1000.0
    with open_store(tmp_path / "q.sqlite3") as store:
        a = add(store, "a", "ch1")
        b = add(store, "b", "ch2")
        c = add(store, "c", "ch2")  # behind an unknown on its channel
        d = add(store, "d", "ch1", after=(b.id,))  # depends on the unknown
        claimed = store.claim_next("w", ["ch1"], now=now - 30.0)
        assert claimed is not None and claimed.id == a.id
        schedule = estimate_queue(store.list_jobs(), now, estimator=estimator)

    assert schedule.slot(a.id).end == pytest.approx(now + 70.0)  # started 30 s ago
    assert schedule.slot(b.id).start == now and schedule.slot(b.id).end is None
    assert "b unknown" in schedule.slot(b.id).note
    assert schedule.slot(c.id).start is None and "no estimate" in schedule.slot(c.id).note
    assert schedule.slot(d.id).start is None and str(b.id) in schedule.slot(d.id).note
    assert schedule.channel_ends["ch1"] is None and schedule.channel_ends["ch2"] is None


def test_any_channel_jobs_take_the_first_free_channel(tmp_path: Path) -> None:
    estimator = FixedEstimator({"long": 300.0, "short": 60.0, "any1": 10.0, "any2": 20.0})
    now = 0.0
    with open_store(tmp_path / "q.sqlite3") as store:
        add(store, "long", "ch1")
        add(store, "short", "ch2")
        any1 = add(store, "any1", None)
        any2 = add(store, "any2", None)
        schedule = estimate_queue(store.list_jobs(), now, estimator=estimator)
    assert schedule.slot(any1.id).channel == "ch2" and schedule.slot(any1.id).start == 60.0
    assert schedule.slot(any2.id).channel == "ch2" and schedule.slot(any2.id).start == 70.0
    assert schedule.channel_ends == {"ch1": 300.0, "ch2": 90.0}


def test_random_queues_obey_fifo_and_dependencies(tmp_path: Path) -> None:
    """Over random queues: no two jobs overlap on a channel, a channel's jobs start in queue
    order, and no job starts before the jobs it depends on end or before its not-before time."""
    for draw in range(5):
        rng = random.Random(draw)
        names = [f"p{i}" for i in range(6)]
        estimator = FixedEstimator({n: rng.uniform(10, 1000) for n in names})
        with open_store(tmp_path / f"q{draw}.sqlite3") as store:
            added: list[Job] = []
            for _ in range(15):
                after = tuple(rng.sample([j.id for j in added], k=min(len(added), rng.randint(0, 2))))
                not_before = rng.choice([None, rng.uniform(0, 2000)])
                added.append(
                    add(
                        store,
                        rng.choice(names),
                        rng.choice(["a", "b", "c"]),
                        after=after,
                        not_before=not_before,
                        on_failure=OnFailure.CONTINUE,
                    )
                )
            jobs = store.list_jobs(states=[JobState.QUEUED])
        schedule = estimate_queue(jobs, 0.0, estimator=estimator)
        slots = {s.job_id: s for s in schedule.jobs}
        assert set(slots) == {j.id for j in jobs}
        for job in jobs:
            slot = slots[job.id]
            assert slot.start is not None and slot.end is not None
            assert slot.end - slot.start == pytest.approx(estimator.durations[job.protocol])
            assert slot.start >= (job.not_before or 0.0)
            for dep in job.depends_on:
                assert slot.start >= slots[dep].end  # type: ignore[operator]
        for channel in ("a", "b", "c"):
            mine = [slots[j.id] for j in jobs if j.requested_channel == channel]
            for earlier, later in itertools.pairwise(mine):
                assert later.start >= earlier.end  # type: ignore[operator]
            if mine:
                assert schedule.channel_ends[channel] == mine[-1].end


def test_estimate_queue_on_real_dry_runs(tmp_path: Path) -> None:
    """End to end: queued jobs estimated by dry runs, one channel's end is the sum of its jobs."""
    with open_store(tmp_path / "q.sqlite3") as store:
        geometry = {"area": "1", "thickness": "100"}
        a = store.add(JobSpec("eis", CellInfo("c1"), {"points_per_decade": "4", **geometry}, channel="ch1"), now=0)
        b = store.add(JobSpec("cycling", CellInfo("c1"), {"cycles": "1", **geometry}, channel="ch1"), now=0)
        bad = store.add(JobSpec("cycling", CellInfo("c2"), {"cycles": "0"}, channel="ch2"), now=0)
        schedule = estimate_queue(store.list_jobs(), 0.0)
    ea, eb = schedule.slot(a.id).estimate, schedule.slot(b.id).estimate
    assert ea.known and eb.known
    assert schedule.channel_ends["ch1"] == pytest.approx(ea.duration + eb.duration)  # type: ignore[operator]
    assert schedule.slot(bad.id).end is None and "cycles" in schedule.slot(bad.id).note


# ---- queue estimate (the command the lead registers under `labctl queue`) ------------


def test_estimate_command_prints_jobs_and_channel_ends(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from labctl.queue.estimate_cli import estimate_command

    store_path = tmp_path / "q.sqlite3"
    geometry = {"area": "1", "thickness": "100"}
    with open_store(store_path) as store:
        first = store.add(JobSpec("eis", CellInfo("c1"), {"points_per_decade": "4", **geometry}, channel="ch1"))
        second = store.add(JobSpec("eis", CellInfo("c2"), {"points_per_decade": "4", **geometry}, channel="ch1"))
        bad = store.add(JobSpec("cycling", CellInfo("c3"), {"cycles": "0"}, channel="ch2"))
    runner = CliRunner()
    result = runner.invoke(estimate_command, ["--store", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {row["id"]: row for row in report["jobs"]}
    expected = estimate_job(JobSpec("eis", CellInfo("x"), {"points_per_decade": "4", **geometry})).duration
    assert rows[first.id]["duration_s"] == pytest.approx(expected)
    assert rows[second.id]["start"] == pytest.approx(rows[first.id]["end"])
    assert rows[bad.id]["duration_s"] is None and "cycles" in rows[bad.id]["note"]
    assert report["channels"]["ch1"] == pytest.approx(rows[second.id]["end"])
    assert report["channels"]["ch2"] is None

    text = runner.invoke(estimate_command, ["--store", str(store_path)])
    assert text.exit_code == 0
    assert "channel ch1: done" in text.output and "channel ch2: done ?" in text.output
    assert "(2 dry runs for 3 jobs)" in text.output  # the two identical EIS jobs cost one dry run

    wrong = runner.invoke(estimate_command, ["--store", "mysql://x/y"])
    assert wrong.exit_code == 2 and wrong.output.startswith("error: ") and len(wrong.output.splitlines()) == 1
    lab = tmp_path / "lab.toml"
    lab.write_text("[alerts]\non = 3\n")
    bad_lab = runner.invoke(estimate_command, ["--store", str(store_path), "--lab", str(lab)])
    assert bad_lab.exit_code == 2 and "alerts.on" in bad_lab.output and len(bad_lab.output.splitlines()) == 1


def test_any_channel_jobs_without_known_channels_are_unknown_not_lost(tmp_path: Path) -> None:
    estimator = FixedEstimator({"any": 10.0})
    with open_store(tmp_path / "q.sqlite3") as store:
        job = add(store, "any", None)
        schedule = estimate_queue(store.list_jobs(), 0.0, estimator=estimator)
    assert schedule.slot(job.id).start is None and "none is known" in schedule.slot(job.id).note
    with_channels = estimate_queue([job], 0.0, estimator=estimator, channels=["x"])
    assert with_channels.slot(job.id).channel == "x" and with_channels.slot(job.id).end == 10.0


def test_the_dry_run_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = JobSpec("eis", CellInfo("c"), {"points_per_decade": "3", "area": "1", "thickness": "100"})
    assert estimate_job(spec).known
    assert not estimate_job(replace(spec, params={"points_per_decade": "0"})).known
    assert list(scratch.iterdir()) == []
    assert list(Path.cwd().glob("runs/*dry-run*")) == []


def test_estimate_command_times_simulated_channels_at_their_speed(tmp_path: Path) -> None:
    """Durations are cell time; clock times on a simulated channel at --speed N are 1/N of it,
    on a hardware channel they are the cell time itself."""
    from click.testing import CliRunner

    from labctl.queue.estimate_cli import estimate_command

    store_path = tmp_path / "q.sqlite3"
    geometry = {"points_per_decade": "4", "area": "1", "thickness": "100"}
    with open_store(store_path) as store:
        sim = store.add(JobSpec("eis", CellInfo("s"), geometry, channel="sim1"))
        hw = store.add(JobSpec("eis", CellInfo("h"), geometry, channel="ch1"))
    runner = CliRunner()
    result = runner.invoke(estimate_command, ["--store", str(store_path), "--json", "--speed", "50"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)["jobs"]}
    for job_id in (sim.id, hw.id):
        assert rows[job_id]["duration_s"] > 0
    assert rows[sim.id]["end"] - rows[sim.id]["start"] == pytest.approx(rows[sim.id]["duration_s"] / 50)
    assert rows[hw.id]["end"] - rows[hw.id]["start"] == pytest.approx(rows[hw.id]["duration_s"])
    refused = runner.invoke(estimate_command, ["--store", str(store_path), "--speed", "fast"])
    assert refused.exit_code == 2 and "speed" in refused.output and len(refused.output.splitlines()) == 1
