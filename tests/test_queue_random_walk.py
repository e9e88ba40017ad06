"""Random sequences of queue operations, on both backends, checked against the queue's rules.

Hypothesis draws a night of adds, claims by two workers over random channel subsets, finishes
with random outcomes and policies, cancels, holds and acks. After every step the invariants
must hold: at most one active job per channel, a claim takes the head of the channel's queue
(or an any-channel job when the channel's own queue is empty), no job is claimed twice, a
finished job never changes state, and a claim that returns nothing had nothing it could start.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.queue import (
    ACTIVE_STATES,
    FINISHED_STATES,
    CellInfo,
    InvalidTransition,
    Job,
    JobSpec,
    JobState,
    JobStore,
    OnFailure,
    open_store,
)

#: The throwaway PostgreSQL cluster fixture, one per test session for all modules using it.
pytest_plugins = ["tests.pg_fixture"]

CHANNELS = ["a", "b"]
WORKERS = ["w1", "w2"]

add = st.tuples(st.just("add"), st.sampled_from([*CHANNELS, None]), st.sampled_from(list(OnFailure)))
claim = st.tuples(st.just("claim"), st.sampled_from(WORKERS), st.sets(st.sampled_from(CHANNELS), min_size=1))
operation = st.one_of(  # adds and claims listed twice: queues grow long enough for order to matter
    add,
    add,
    claim,
    claim,
    st.tuples(st.just("finish"), st.integers(0, 50),
              st.sampled_from([JobState.COMPLETED, JobState.FAILED, JobState.ABORTED, JobState.CANCELLED])),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("hold"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("ack"), st.sampled_from(CHANNELS)),
)

_counter = itertools.count()


def _queue_of(jobs: list[Job], channel: str | None) -> list[Job]:
    return sorted((j for j in jobs if j.state == JobState.QUEUED and j.requested_channel == channel),
                  key=lambda j: (j.position, j.id))


def _check_claim(before: list[Job], held: set[str], channels: set[str], claimed: Job | None) -> None:
    busy = {j.channel for j in before if j.state in ACTIVE_STATES} | held
    free = [c for c in channels if c not in busy]
    if claimed is None:
        assert all(not _queue_of(before, c) for c in free), "a free channel had a queued job"
        assert not free or not _queue_of(before, None), "a free channel and an any-channel job, but no claim"
        return
    assert claimed.channel in free
    own = _queue_of(before, claimed.channel)
    if claimed.requested_channel is None:
        assert not own, f"any-channel job {claimed.id} taken while {claimed.channel} had its own queue"
        assert claimed.id == _queue_of(before, None)[0].id
    else:
        assert claimed.id == own[0].id, f"job {claimed.id} is not the head of {claimed.channel}"


def _walk(store: JobStore, ops: list[tuple[Any, ...]]) -> None:
    claimed_ever: set[int] = set()
    finished: dict[int, JobState] = {}
    for op in ops:
        jobs = store.list_jobs()
        held = {h.channel for h in store.holds()}
        kind = op[0]
        if kind == "add":
            store.add(JobSpec("eis", CellInfo(f"c{next(_counter)}"), channel=op[1], on_failure=op[2]))
        elif kind == "claim":
            job = store.claim_next(op[1], sorted(op[2]))
            _check_claim(jobs, held, op[2], job)
            if job is not None:
                assert job.id not in claimed_ever
                claimed_ever.add(job.id)
        elif kind == "finish":
            active = [j for j in jobs if j.state in ACTIVE_STATES]
            if active:
                job = active[op[1] % len(active)]
                store.finish(job.id, str(job.worker), op[2])
        elif kind == "cancel" and jobs:
            job = jobs[op[1] % len(jobs)]
            try:
                store.cancel(job.id)
            except InvalidTransition:
                assert job.state in FINISHED_STATES or job.request is not None
        elif kind == "hold" and op[1] not in held:
            store.hold(op[1], "random walk")
        elif kind == "ack" and op[1] in held:
            store.ack(op[1])
        after = store.list_jobs()
        active_channels = [j.channel for j in after if j.state in ACTIVE_STATES]
        assert len(active_channels) == len(set(active_channels)), "two active jobs on one channel"
        for j in after:
            if j.id in finished:
                assert j.state == finished[j.id], f"finished job {j.id} changed state"
            elif j.state in FINISHED_STATES:
                finished[j.id] = j.state


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=5, max_size=60))
def test_random_walk_keeps_the_rules(backend: str, ops: list[tuple[Any, ...]], request: pytest.FixtureRequest,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    if backend == "sqlite":
        location = str(tmp_path_factory.mktemp("walk") / "queue.sqlite3")
    else:
        location = request.getfixturevalue("pg_cluster").create_database("walk")
    with open_store(location) as store:
        _walk(store, ops)
