"""The job store, one suite run against both backends (SQLite file, throwaway PostgreSQL).

Times passed as ``now`` are explicit numbers, so not-before and ordering never depend on the
wall clock; cross-process checks wait on conditions (events, watcher notifications) with
generous timeouts only as hang guards.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from labctl.queue import (
    CellInfo,
    InvalidJobSpec,
    InvalidTransition,
    JobNotFound,
    JobSpec,
    JobState,
    JobStore,
    OnFailure,
    QueueError,
    Request,
    StoreUnavailable,
    default_store_path,
    fits_protocols,
    open_store,
)

#: The throwaway PostgreSQL cluster fixture, one per test session for all modules using it.
pytest_plugins = ["tests.pg_fixture"]

HANG_GUARD_S = 120.0
T0 = 1_800_000_000.0  # a fixed "now" for tests that do not care about the wall clock
SPAWN = multiprocessing.get_context("spawn")  # children open their own connections; nothing inherited


def spec(channel: str | None = "ch1", protocol: str = "eis", cell: str = "c1", **kw: Any) -> JobSpec:
    return JobSpec(protocol=protocol, cell=CellInfo(cell), channel=channel, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "queue.sqlite3")
    return request.getfixturevalue("pg_cluster").create_database()


@pytest.fixture
def store(location: str) -> JobStore:
    with open_store(location) as s:
        yield s


def raw_execute(location: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run SQL on a connection of our own, bypassing the store's code."""
    if location.startswith("postgresql://"):
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), params)
    else:
        conn = sqlite3.connect(location, isolation_level=None)
        try:
            conn.execute(sql, params)
        finally:
            conn.close()


def drain(store: JobStore, worker: str, channels: list[str], now: float = T0) -> list[int]:
    """Claim and complete jobs until nothing can start; returns the ids in claim order."""
    order = []
    while (job := store.claim_next(worker, channels, now=now)) is not None:
        order.append(job.id)
        store.finish(job.id, worker, JobState.COMPLETED, now=now)
    return order


# ---- adding, reading, validation -------------------------------------------------------------


def test_add_and_get_round_trip(store: JobStore) -> None:
    dep = store.add(spec(), now=T0)
    job = store.add(
        JobSpec(
            protocol="transference",
            cell=CellInfo("LLZO-7", electrolyte="LLZO", notes="pressed 2 t"),
            params={"thickness": "120", "j": 0.5, "fast": True},
            channel="ch2",
            on_failure=OnFailure.RETRY,
            after=(dep.id,),
            not_before=T0 + 60,
        ),
        now=T0,
    )
    got = store.get(job.id)
    assert got == job
    assert got.protocol == "transference"
    assert got.cell == CellInfo("LLZO-7", "LLZO", "pressed 2 t")
    assert dict(got.params) == {"thickness": "120", "j": 0.5, "fast": True}
    assert (got.requested_channel, got.channel, got.state) == ("ch2", None, JobState.QUEUED)
    assert got.on_failure == OnFailure.RETRY and got.depends_on == (dep.id,)
    assert got.not_before == T0 + 60 and got.created == T0 and got.attempt == 1
    assert got.position > dep.position


def test_get_unknown_job(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match="job 999"):
        store.get(999)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"on_failure": "explode"}, "on_failure: 'explode' is not one of stop, continue, retry"),
        ({"protocol": ""}, "protocol"),
        ({"channel": ""}, "channel"),
        ({"params": {"x": object()}}, "params"),
        ({"params": {"x": float("nan")}}, "params"),
        ({"not_before": float("inf")}, "not_before"),
        ({"after": ("nope",)}, "after: 'nope'"),
    ],
)
def test_bad_spec_names_the_field_and_stores_nothing(store: JobStore, bad: dict[str, Any], message: str) -> None:
    fields = {"protocol": "eis", "cell": CellInfo("c1"), "channel": "ch1", **bad}
    with pytest.raises(InvalidJobSpec, match=message.replace("(", r"\(")) as err:
        store.add_batch([spec(), JobSpec(**fields)])
    assert "job 2 of the batch" in str(err.value) and "\n" not in str(err.value)
    assert store.list_jobs() == []


def test_batch_is_all_or_nothing_even_when_the_database_rejects_it(store: JobStore) -> None:
    first = store.add(spec())
    with pytest.raises(InvalidJobSpec, match="after: job 12345 does not exist"):
        store.add_batch([spec(cell="a"), spec(cell="b", after=(first.id, 12345))])
    assert [j.id for j in store.list_jobs()] == [first.id]


def test_batch_dependencies_by_key(store: JobStore) -> None:
    a, b, c = store.add_batch([
        spec("ch1", key="eis"),
        spec("ch2", key="cycle", after=("eis",)),
        spec("ch1", after=("eis", "cycle")),
    ])
    assert b.depends_on == (a.id,) and c.depends_on == (a.id, b.id)
    with pytest.raises(InvalidJobSpec, match="key 'x' is used twice"):
        store.add_batch([spec(key="x"), spec(key="x")])
    with pytest.raises(InvalidJobSpec, match="not the key of an earlier job"):
        store.add_batch([spec(after=("later",)), spec(key="later")])


def test_cannot_depend_on_a_job_that_already_failed(store: JobStore) -> None:
    a = store.add(spec())
    store.claim_next("w", ["ch1"])
    store.finish(a.id, "w", JobState.FAILED, error="short")
    with pytest.raises(InvalidJobSpec, match=f"job {a.id} ended failed"):
        store.add(spec(after=(a.id,)))


def test_list_filters(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    b = store.add(spec("ch2"))
    c = store.add(spec(None, protocol="lsv"))
    store.claim_next("w1", ["ch1"])
    store.claim_next("w2", ["ch3"])  # takes the any-channel job c onto ch3
    assert [j.id for j in store.list_jobs()] == [a.id, b.id, c.id]
    assert [j.id for j in store.list_jobs(states=[JobState.QUEUED])] == [b.id]
    assert [j.id for j in store.list_jobs(states=["running"])] == [a.id, c.id]
    assert [j.id for j in store.list_jobs(channel="ch3")] == [c.id]
    assert [j.id for j in store.list_jobs(channel="ch2")] == [b.id]
    assert [j.id for j in store.list_jobs(worker="w1")] == [a.id]
    assert store.list_jobs(states=[]) == []
    with pytest.raises(InvalidJobSpec, match="states: 'done' is not one of queued, running"):
        store.list_jobs(states=["done"])


# ---- claiming: FIFO, reorder, not-before, dependencies, any channel ---------------------------


def test_per_channel_fifo(store: JobStore) -> None:
    ids = {ch: [store.add(spec(ch, cell=f"{ch}-{i}")).id for i in range(4)] for ch in ("ch1", "ch2")}
    assert drain(store, "w", ["ch2"]) == ids["ch2"]
    assert drain(store, "w", ["ch1"]) == ids["ch1"]


def test_one_claim_per_free_channel(store: JobStore) -> None:
    a1, a2 = store.add(spec("ch1")), store.add(spec("ch1"))
    b1 = store.add(spec("ch2"))
    first = store.claim_next("w", ["ch1", "ch2"], now=T0)
    second = store.claim_next("w", ["ch1", "ch2"], now=T0)
    assert (first.id, first.channel, second.id, second.channel) == (a1.id, "ch1", b1.id, "ch2")
    assert store.claim_next("w", ["ch1", "ch2"], now=T0) is None  # ch1 busy with a1: a2 waits
    assert (first.state, first.worker, first.started, first.heartbeat) == (JobState.RUNNING, "w", T0, T0)
    store.finish(a1.id, "w", JobState.COMPLETED)
    assert store.claim_next("w", ["ch1", "ch2"]).id == a2.id


def test_move_reorders_within_a_channel(store: JobStore) -> None:
    j = [store.add(spec("ch1", cell=str(i))).id for i in range(5)]
    other = store.add(spec("ch2")).id
    queue = store.move([j[4], j[3]], before=j[1])
    assert [x.id for x in queue] == [j[0], j[4], j[3], j[1], j[2]]
    assert [x.id for x in store.move([j[0]])] == [j[4], j[3], j[1], j[2], j[0]]
    assert drain(store, "w", ["ch1"]) == [j[4], j[3], j[1], j[2], j[0]]
    extra = store.add(spec("ch1"))
    with pytest.raises(QueueError, match=r"different channel queues \(ch1, ch2\)"):
        store.move([extra.id], before=other)
    with pytest.raises(QueueError, match="named twice"):
        store.move([extra.id, extra.id])
    with pytest.raises(InvalidTransition, match=f"job {j[0]} is completed: only queued jobs can be moved"):
        store.move([j[0]])


def test_claim_arguments_are_checked(store: JobStore) -> None:
    store.add(spec("ch1"))
    with pytest.raises(QueueError, match="channels: must be a list of channel names, got the string 'ch1'"):
        store.claim_next("w", "ch1")
    with pytest.raises(QueueError, match="worker: must be a non-empty worker id"):
        store.claim_next("", ["ch1"])
    assert store.claim_next("w", []) is None
    assert store.list_jobs(states=["running"]) == []


def test_not_before_blocks_its_channel_only(store: JobStore) -> None:
    late = store.add(spec("ch1", not_before=T0 + 3600))
    behind = store.add(spec("ch1"))
    elsewhere = store.add(spec("ch2"))
    assert store.claim_next("w", ["ch1", "ch2"], now=T0).id == elsewhere.id
    assert store.claim_next("w", ["ch1", "ch2"], now=T0 + 3599) is None  # FIFO: behind waits for late
    assert store.claim_next("w", ["ch1"], now=T0 + 3600).id == late.id
    store.finish(late.id, "w", JobState.COMPLETED)
    assert store.claim_next("w", ["ch1"], now=T0 + 3600).id == behind.id


def test_dependency_waits_for_completion(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    b = store.add(spec("ch2", after=(a.id,)))
    assert store.claim_next("w", ["ch2"]) is None
    assert store.claim_next("w", ["ch1"]).id == a.id
    assert store.claim_next("w", ["ch2"]) is None  # running is not completed
    store.finish(a.id, "w", JobState.COMPLETED)
    assert store.claim_next("w", ["ch2"]).id == b.id


@pytest.mark.parametrize("end", [JobState.FAILED, JobState.ABORTED, JobState.CANCELLED])
def test_dependents_of_a_job_that_did_not_complete_are_cancelled_with_the_reason(
    store: JobStore, end: JobState
) -> None:
    a = store.add(spec("ch1"))
    b = store.add(spec("ch2", after=(a.id,)))
    c = store.add(spec("ch3", after=(b.id,)))
    unrelated = store.add(spec("ch2"))
    store.claim_next("w", ["ch1"])
    store.finish(a.id, "w", end, now=T0)
    b, c = store.get(b.id), store.get(c.id)
    assert b.state == c.state == JobState.CANCELLED
    assert b.error == f"not run: job {a.id}, which it depends on, ended {end}"
    assert c.error == f"not run: job {b.id}, which it depends on, ended cancelled"
    assert store.claim_next("w", ["ch2", "ch3"]).id == unrelated.id


def test_cancelling_a_queued_dependency_cancels_its_dependents(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    b = store.add(spec("ch2", after=(a.id,)))
    assert store.cancel(a.id).state == JobState.CANCELLED
    assert store.get(b.id).state == JobState.CANCELLED
    assert str(a.id) in store.get(b.id).error


def test_any_channel_jobs_go_to_the_first_free_channel_that_fits(store: JobStore) -> None:
    fits = fits_protocols({"pot1": {"eis", "lsv"}, "pot2": {"eis", "lsv"}, "lcr": {"eis"}})
    lsv = store.add(spec(None, protocol="lsv"))
    eis = store.add(spec(None, protocol="eis"))
    first = store.claim_next("w", ["lcr", "pot1", "pot2"], fits=fits)
    assert (first.id, first.channel) == (lsv.id, "pot1")  # the LCR meter cannot sweep
    second = store.claim_next("w", ["lcr", "pot1", "pot2"], fits=fits)
    assert (second.id, second.channel, second.requested_channel) == (eis.id, "lcr", None)
    cd = store.add(spec(None, protocol="ccd"))
    assert store.claim_next("w", ["pot2"], fits=fits) is None  # nobody can run ccd
    assert store.get(cd.id).state == JobState.QUEUED


def test_a_channel_runs_its_own_queue_before_any_channel_jobs(store: JobStore) -> None:
    anyjob = store.add(spec(None))
    own_late = store.add(spec("ch1", not_before=T0 + 10))
    assert store.claim_next("w", ["ch1"], now=T0) is None  # ch1 has its own queued work
    assert store.claim_next("w", ["ch1", "ch2"], now=T0).id == anyjob.id
    assert store.claim_next("w", ["ch1"], now=T0 + 10).id == own_late.id


def test_holds_and_ack(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    store.hold("ch1", "cell swelling", now=T0)
    assert store.claim_next("w", ["ch1"]) is None
    (hold,) = store.holds()
    assert (hold.channel, hold.reason, hold.since) == ("ch1", "cell swelling", T0)
    with pytest.raises(InvalidTransition, match="channel 'ch1' is held already: cell swelling"):
        store.hold("ch1", "again")
    assert store.ack("ch1") == hold
    assert store.holds() == []
    with pytest.raises(InvalidTransition, match="channel 'ch1' is not held"):
        store.ack("ch1")
    assert store.claim_next("w", ["ch1"]).id == a.id


# ---- the worker's reports and the technician's requests ---------------------------------------


def test_heartbeat_records_progress_and_returns_requests(store: JobStore) -> None:
    a = store.add(spec())
    store.claim_next("w", ["ch1"], now=T0)
    assert store.heartbeat(a.id, "w", fraction=0.25, step="3/12 Impedance", eta=T0 + 600, now=T0 + 5) is None
    got = store.get(a.id)
    assert (got.fraction, got.step, got.eta, got.heartbeat) == (0.25, "3/12 Impedance", T0 + 600, T0 + 5)
    store.heartbeat(a.id, "w", now=T0 + 6)  # liveness only: progress kept
    assert store.get(a.id).fraction == 0.25
    store.pause(a.id)
    assert store.heartbeat(a.id, "w") == Request.PAUSE
    with pytest.raises(InvalidTransition, match=f"job {a.id} is run by worker 'w', not 'intruder'"):
        store.heartbeat(a.id, "intruder")
    with pytest.raises(QueueError, match="fraction: must be between 0 and 1"):
        store.heartbeat(a.id, "w", fraction=1.5)


def test_pause_resume_cycle(store: JobStore) -> None:
    a = store.add(spec())
    store.claim_next("w", ["ch1"])
    pausing = store.pause(a.id)
    assert (pausing.state, pausing.request) == (JobState.PAUSING, Request.PAUSE)
    with pytest.raises(InvalidTransition, match=f"job {a.id} is pausing: only a running job can be paused"):
        store.pause(a.id)
    paused = store.report_paused(a.id, "w")
    assert (paused.state, paused.request) == (JobState.PAUSED, None)
    assert store.resume(a.id).request == Request.RESUME
    with pytest.raises(InvalidTransition, match="resume request pending"):
        store.resume(a.id)
    assert store.heartbeat(a.id, "w") == Request.RESUME
    running = store.report_resumed(a.id, "w")
    assert (running.state, running.request) == (JobState.RUNNING, None)
    with pytest.raises(InvalidTransition, match=f"job {a.id} is running: only a paused job can be resumed"):
        store.resume(a.id)


def test_pause_of_a_queued_job_is_refused(store: JobStore) -> None:
    a = store.add(spec())
    with pytest.raises(InvalidTransition, match=f"job {a.id} is queued: only a running job can be paused"):
        store.pause(a.id)


def test_cancel(store: JobStore) -> None:
    queued = store.add(spec("ch2"))
    running = store.add(spec("ch1"))
    store.claim_next("w", ["ch1"])
    assert store.cancel(queued.id).state == JobState.CANCELLED
    requested = store.cancel(running.id)
    assert (requested.state, requested.request) == (JobState.RUNNING, Request.CANCEL)
    with pytest.raises(InvalidTransition, match="cancel request already"):
        store.cancel(running.id)
    with pytest.raises(InvalidTransition, match="being cancelled"):
        store.pause(running.id)
    assert store.heartbeat(running.id, "w") == Request.CANCEL
    done = store.finish(running.id, "w", JobState.CANCELLED, file="runs/x.h5")
    assert (done.state, done.request, done.file) == (JobState.CANCELLED, None, "runs/x.h5")
    with pytest.raises(InvalidTransition, match=f"job {running.id} is cancelled: only queued or running"):
        store.cancel(running.id)


def test_finish_records_the_outcome(store: JobStore) -> None:
    a = store.add(spec())
    store.claim_next("w", ["ch1"], now=T0)
    done = store.finish(a.id, "w", JobState.COMPLETED, results={"sigma_S_cm": 3.3e-4}, file="runs/a.h5",
                        now=T0 + 100)
    assert (done.state, done.finished, done.file) == (JobState.COMPLETED, T0 + 100, "runs/a.h5")
    assert dict(done.results) == {"sigma_S_cm": 3.3e-4} and done.error is None
    with pytest.raises(InvalidTransition, match=f"job {a.id} is completed, not running"):
        store.finish(a.id, "w", JobState.COMPLETED)


def test_finish_refuses_states_a_worker_cannot_report(store: JobStore) -> None:
    a = store.add(spec())
    store.claim_next("w", ["ch1"])
    with pytest.raises(QueueError, match="state 'interrupted' is not one of aborted, cancelled, completed, failed"):
        store.finish(a.id, "w", JobState.INTERRUPTED)
    with pytest.raises(QueueError, match="state: 'ok' is not one of"):
        store.finish(a.id, "w", "ok")
    with pytest.raises(QueueError, match="results: must be a JSON object"):
        store.finish(a.id, "w", JobState.COMPLETED, results={"x": float("nan")})
    assert store.get(a.id).state == JobState.RUNNING  # nothing half-written


def test_on_failure_stop_holds_the_channel(store: JobStore) -> None:
    a = store.add(spec("ch1", on_failure=OnFailure.STOP))
    b = store.add(spec("ch1"))
    c = store.add(spec("ch2"))
    store.claim_next("w", ["ch1"])
    store.finish(a.id, "w", JobState.FAILED, error="compliance")
    assert [(h.channel, h.job_id) for h in store.holds()] == [("ch1", a.id)]
    assert "failed" in store.holds()[0].reason
    assert store.claim_next("w", ["ch1", "ch2"]).id == c.id
    assert store.claim_next("w", ["ch1"]) is None
    store.ack("ch1")
    assert store.claim_next("w", ["ch1"]).id == b.id


def test_on_failure_continue_goes_on(store: JobStore) -> None:
    a = store.add(spec("ch1", on_failure=OnFailure.CONTINUE))
    b = store.add(spec("ch1"))
    store.claim_next("w", ["ch1"])
    store.finish(a.id, "w", JobState.FAILED, error="short")
    assert store.holds() == []
    assert store.claim_next("w", ["ch1"]).id == b.id


def test_on_failure_retry_once_at_the_head_of_the_channel(store: JobStore) -> None:
    a = store.add(spec(None, on_failure=OnFailure.RETRY, params={"j": 0.5}))
    dependent = store.add(spec("ch2", after=(a.id,)))
    assert store.claim_next("w", ["ch1"]).id == a.id  # an any-channel job, run on ch1
    b = store.add(spec("ch1"))
    store.finish(a.id, "w", JobState.FAILED, error="contact")
    retry = store.claim_next("w", ["ch1"])
    assert retry.id not in (a.id, b.id)
    assert (retry.retry_of, retry.attempt, retry.requested_channel) == (a.id, 2, "ch1")
    assert dict(retry.params) == {"j": 0.5} and retry.on_failure == OnFailure.RETRY
    assert store.get(dependent.id).state == JobState.QUEUED  # now waits for the retry
    assert store.get(dependent.id).depends_on == (retry.id,)
    store.finish(retry.id, "w", JobState.FAILED, error="contact again")
    assert store.claim_next("w", ["ch1"]).id == b.id  # only once: then the queue goes on
    assert len(store.list_jobs()) == 4
    assert store.get(dependent.id).state == JobState.CANCELLED


def test_a_successful_retry_releases_dependents(store: JobStore) -> None:
    a = store.add(spec("ch1", on_failure=OnFailure.RETRY))
    dependent = store.add(spec("ch2", after=(a.id,)))
    store.claim_next("w", ["ch1"])
    store.finish(a.id, "w", JobState.FAILED)
    retry = store.claim_next("w", ["ch1"])
    store.finish(retry.id, "w", JobState.COMPLETED)
    assert store.claim_next("w", ["ch2"]).id == dependent.id


def test_manual_retry(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    b = store.add(spec("ch1"))
    store.claim_next("w", ["ch1"])
    with pytest.raises(InvalidTransition, match=f"job {a.id} is running: only failed"):
        store.retry(a.id)
    store.finish(a.id, "w", JobState.ABORTED)
    again = store.retry(a.id)
    assert (again.retry_of, again.attempt, again.state) == (a.id, 2, JobState.QUEUED)
    assert drain(store, "w", ["ch1"]) == [again.id, b.id]
    with pytest.raises(InvalidTransition, match="only failed, aborted, cancelled or interrupted"):
        store.retry(b.id)


def test_clear_finished(store: JobStore) -> None:
    old = store.add(spec("ch1"))
    newer = store.add(spec("ch1"))
    waiting = store.add(spec("ch2"))
    store.claim_next("w", ["ch1"], now=T0)
    store.finish(old.id, "w", JobState.COMPLETED, now=T0)
    store.claim_next("w", ["ch1"], now=T0 + 50)
    store.finish(newer.id, "w", JobState.FAILED, now=T0 + 100)
    retried = store.retry(newer.id)
    assert store.clear_finished(before=T0 + 50) == 1
    assert {j.id for j in store.list_jobs()} == {newer.id, waiting.id, retried.id}
    assert store.clear_finished() == 1
    assert {j.id for j in store.list_jobs()} == {waiting.id, retried.id}
    assert store.get(retried.id).retry_of is None  # the link goes with the deleted job


def test_recover_worker_interrupts_and_holds(store: JobStore) -> None:
    a = store.add(spec("ch1"))
    p = store.add(spec("ch2"))
    theirs = store.add(spec("ch3"))
    after_a = store.add(spec("ch4", after=(a.id,)))
    next_on_ch1 = store.add(spec("ch1"))
    store.claim_next("dead", ["ch1", "ch2"])
    store.claim_next("dead", ["ch1", "ch2"])
    store.claim_next("alive", ["ch3"])
    store.pause(p.id)
    store.report_paused(p.id, "dead")
    interrupted = store.recover_worker("dead", reason="PC rebooted", now=T0)
    assert {j.id for j in interrupted} == {a.id, p.id}
    assert all(j.state == JobState.INTERRUPTED and j.finished == T0 for j in interrupted)
    assert "PC rebooted" in store.get(a.id).error
    assert {h.channel: h.job_id for h in store.holds()} == {"ch1": a.id, "ch2": p.id}
    assert store.get(theirs.id).state == JobState.RUNNING
    assert store.get(after_a.id).state == JobState.CANCELLED
    assert store.claim_next("new", ["ch1", "ch2"]) is None
    assert store.recover_worker("dead") == []
    store.ack("ch1")
    assert store.claim_next("new", ["ch1"]).id == next_on_ch1.id  # the interrupted job is never re-run


def test_silent_workers(store: JobStore) -> None:
    for channel in ("ch1", "ch2", "ch3"):
        store.add(spec(channel))
    a = store.claim_next("quiet", ["ch1"], now=T0)
    b = store.claim_next("chatty", ["ch2"], now=T0)
    c = store.claim_next("chatty", ["ch3"], now=T0)
    store.heartbeat(b.id, "chatty", now=T0 + 100)
    assert store.silent_workers(since=T0 + 50) == ["quiet"]
    store.heartbeat(a.id, "quiet", now=T0 + 60)
    assert store.silent_workers(since=T0 + 50) == []
    assert store.silent_workers(since=T0 + 200) == ["chatty", "quiet"]
    store.finish(c.id, "chatty", JobState.COMPLETED, now=T0 + 300)  # a finished job is no sign of life
    assert store.silent_workers(since=T0 + 200) == ["chatty", "quiet"]
    store.heartbeat(b.id, "chatty", now=T0 + 250)
    assert store.silent_workers(since=T0 + 200) == ["quiet"]


# ---- the database enforces one active job per channel -----------------------------------------


def test_database_rejects_a_second_active_job_on_a_channel(store: JobStore, location: str) -> None:
    running = store.add(spec("ch1"))
    other = store.add(spec("ch1"))
    store.claim_next("w", ["ch1"])
    rejected = (sqlite3.IntegrityError, psycopg.errors.UniqueViolation)
    with pytest.raises(rejected):
        raw_execute(location, "UPDATE jobs SET state = 'paused', channel = 'ch1', worker = 'x' WHERE id = ?",
                    (other.id,))
    with pytest.raises(rejected):
        raw_execute(
            location,
            "INSERT INTO jobs (position, protocol, params, cell_id, requested_channel, channel, on_failure,"
            " state, worker, created) VALUES (99, 'eis', '{}', 'c', 'ch1', 'ch1', 'continue', 'running', 'x', 0)",
        )
    assert [j.id for j in store.list_jobs(states=["running"])] == [running.id]


def test_postgres_store_reconnects_after_losing_its_connection(pg_cluster: Any) -> None:
    location = pg_cluster.create_database()
    with open_store(location) as store:
        a = store.add(spec())
        with psycopg.connect(location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(StoreUnavailable, match=r"connection lost .*may not have been recorded"):
            store.get(a.id)
        assert store.get(a.id) == a  # the next call reconnects
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get(a.id)


# ---- opening stores ---------------------------------------------------------------------------


def test_newer_schema_is_refused(location: str) -> None:
    open_store(location).close()
    raw_execute(location, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreUnavailable, match="schema version 99 is newer"):
        open_store(location)


def test_reopening_keeps_the_jobs(location: str) -> None:
    with open_store(location) as first:
        a = first.add(spec())
    with open_store(location) as second:
        assert second.get(a.id) == a


def test_bad_locations(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="unknown scheme 'mysql'"):
        open_store("mysql://x/y")
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, this is not SQLite" * 100)
    with pytest.raises(StoreUnavailable, match="not a job store"):
        open_store(not_a_db)
    with pytest.raises(StoreUnavailable, match="is a directory"):
        open_store(tmp_path)
    with pytest.raises(StoreUnavailable, match=r"postgresql://u:\*\*\*@127.0.0.1:1/db: cannot connect"):
        open_store("postgresql://u:secret@127.0.0.1:1/db")


def test_default_location_is_the_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_store_path() == tmp_path / "data" / "labctl" / "queue.sqlite3"
    with open_store() as s:
        s.add(spec())
    assert default_store_path().is_file()


# ---- several processes -------------------------------------------------------------------------


def _claim_loop(location: str, worker: str, channels: list[str], log: Any, seq: Any, lock: Any, cap: int) -> None:
    """A worker process: claim and finish until no job is queued or it has claimed ``cap``
    jobs (so that, however the OS schedules the processes, several of them must claim);
    log claims and finishes."""

    def record(kind: str, job_id: int, channel: str) -> None:
        with lock:
            log.put((seq.value, kind, job_id, channel, worker))
            seq.value += 1

    claimed = 0
    with open_store(location) as store:
        while claimed < cap:
            job = store.claim_next(worker, channels)
            if job is None:
                if not store.list_jobs(states=[JobState.QUEUED]):
                    return
                continue
            claimed += 1
            record("claim", job.id, str(job.channel))
            store.heartbeat(job.id, worker, fraction=0.5)
            record("finish", job.id, str(job.channel))
            store.finish(job.id, worker, JobState.COMPLETED, results={"by": worker})


@pytest.mark.parametrize(("backend", "workers", "jobs"), [("sqlite", 4, 160), ("postgres", 8, 400)])
def test_concurrent_claimers(backend: str, workers: int, jobs: int, request: pytest.FixtureRequest,
                             tmp_path: Path) -> None:
    location = (str(tmp_path / "q.sqlite3") if backend == "sqlite"
                else request.getfixturevalue("pg_cluster").create_database())
    channels = [f"ch{i}" for i in range(8)]
    with open_store(location) as store:
        added = store.add_batch([spec(channels[i % 8], cell=f"c{i}") for i in range(jobs)])
    log, seq, lock = SPAWN.Queue(), SPAWN.Value("q", 0, lock=False), SPAWN.Lock()
    cap = 2 * jobs // workers  # no worker may take more than twice its share: they must contend
    procs = [SPAWN.Process(target=_claim_loop, args=(location, f"w{i}", channels, log, seq, lock, cap))
             for i in range(workers)]
    for p in procs:
        p.start()
    events = [log.get(timeout=HANG_GUARD_S) for _ in range(2 * jobs)]
    for p in procs:
        p.join(HANG_GUARD_S)
        assert p.exitcode == 0
    events.sort()
    claims = [e for e in events if e[1] == "claim"]
    assert sorted(e[2] for e in claims) == sorted(j.id for j in added)  # each job claimed exactly once
    active: dict[str, int] = {}
    order: dict[str, list[int]] = defaultdict(list)
    for _, kind, job_id, channel, _ in events:
        if kind == "claim":
            assert channel not in active, f"{channel}: job {job_id} claimed while job {active[channel]} ran"
            active[channel] = job_id
            order[channel].append(job_id)
        else:
            assert active.pop(channel) == job_id
    for channel in channels:
        assert order[channel] == sorted(j.id for j in added if j.requested_channel == channel)  # FIFO
    with open_store(location) as store:
        final = store.list_jobs()
    assert all(j.state == JobState.COMPLETED and j.attempt == 1 for j in final)
    claimer = {e[2]: e[4] for e in claims}
    assert all(j.worker == claimer[j.id] == j.results["by"] for j in final)
    assert len({e[4] for e in claims}) > 1  # the workers really contended


def _hold_a_job(location: str, worker: str, channel: str, claimed: Any) -> None:
    with open_store(location) as store:
        job = store.claim_next(worker, [channel])
        assert job is not None
        claimed.set()
        multiprocessing.Event().wait()  # holds the job until SIGKILLed


def _steady_worker(location: str, worker: str, channels: list[str], first_claimed: Any, go_on: Any,
                   done: Any) -> None:
    with open_store(location) as store:
        job = store.claim_next(worker, channels)
        first_claimed.set()
        go_on.wait(HANG_GUARD_S)
        while job is not None:
            store.finish(job.id, worker, JobState.COMPLETED)
            job = store.claim_next(worker, channels)
    done.set()


def test_a_killed_worker_is_recovered_not_rerun(location: str, store: JobStore) -> None:
    dead_job = store.add(spec("A"))
    next_on_a = store.add(spec("A"))
    b_jobs = [store.add(spec("B", cell=f"b{i}")).id for i in range(3)]
    claimed, first_claimed, go_on, done = SPAWN.Event(), SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
    doomed = SPAWN.Process(target=_hold_a_job, args=(location, "pc1", "A", claimed))
    survivor = SPAWN.Process(target=_steady_worker, args=(location, "pc2", ["B"], first_claimed, go_on, done))
    doomed.start()
    survivor.start()
    assert claimed.wait(HANG_GUARD_S) and first_claimed.wait(HANG_GUARD_S)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(HANG_GUARD_S)
    assert doomed.exitcode == -signal.SIGKILL
    assert store.get(dead_job.id).state == JobState.RUNNING  # nobody knows yet ...
    assert store.claim_next("pc3", ["A"]) is None  # ... and nobody takes the channel over
    (interrupted,) = store.recover_worker("pc1", reason="process killed")
    assert (interrupted.id, interrupted.state) == (dead_job.id, JobState.INTERRUPTED)
    assert [h.channel for h in store.holds()] == ["A"]
    go_on.set()
    assert done.wait(HANG_GUARD_S)
    survivor.join(HANG_GUARD_S)
    assert survivor.exitcode == 0
    assert [store.get(i).state for i in b_jobs] == [JobState.COMPLETED] * 3
    assert {store.get(i).worker for i in b_jobs} == {"pc2"}
    assert store.get(next_on_a.id).state == JobState.QUEUED  # A stays held
    assert store.claim_next("pc3", ["A"]) is None
    assert len(store.list_jobs()) == 5  # nothing re-run: no new job appeared
    store.ack("A")
    assert store.claim_next("pc3", ["A"]).id == next_on_a.id


def _change_on_signal(location: str, go: Any, committed_at: Any) -> None:
    with open_store(location) as store:
        go.wait(HANG_GUARD_S)
        store.add(spec("ch9"))
        committed_at.value = time.monotonic()


def test_watch_sees_another_process_within_a_second(location: str, store: JobStore) -> None:
    go, committed_at = SPAWN.Event(), SPAWN.Value("d", 0.0)
    writer = SPAWN.Process(target=_change_on_signal, args=(location, go, committed_at))
    writer.start()
    with store.watch() as watcher:
        assert watcher.wait(0.0) is None
        go.set()
        change = watcher.wait(HANG_GUARD_S)
        seen_at = time.monotonic()
        writer.join(HANG_GUARD_S)
        assert change is not None
        assert seen_at - committed_at.value < 1.0
        store.add(spec("ch9"))
        later = watcher.wait(HANG_GUARD_S)
        assert later is not None and later.version > change.version
        assert watcher.wait(0.0) is None  # each change is reported once


def test_watch_changes_iterates_until_idle(store: JobStore) -> None:
    with store.watch() as watcher:
        job = store.add(spec())
        store.claim_next("w", ["ch1"])
        store.finish(job.id, "w", JobState.COMPLETED)  # three committed mutations
        versions = []
        for change in watcher.changes(idle_timeout=HANG_GUARD_S):
            versions.append(change.version)
            if change.version >= 3:
                break
        assert versions == sorted(set(versions)) and versions[-1] == 3  # both backends count from 1
        assert list(watcher.changes(idle_timeout=0.0)) == []
