"""What the queue worker plugs in: the dry-run ETA and the lab file's alerts."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from labctl.config import parse_lab
from labctl.queue import CellInfo, JobSpec, JobState, open_store
from labctl.queue.hooks import alert_for, alert_hook, job_estimator
from labctl.queue.jobparams import SIM_KEY
from labctl.queue.worker import QueueEvent
from tests.test_alerts import http_server  # noqa: F401 - the local webhook server fixture


@pytest.fixture
def job(tmp_path: Path):
    with open_store(tmp_path / "q.sqlite") as store:
        yield store.add(JobSpec(protocol="eis", cell=CellInfo(id="A7"), params={"area": "1"}, channel="sim2"))


def test_the_worker_estimator_uses_the_stored_simulation_truth() -> None:
    """A job queued with --sim keeps it under the reserved key; the ETA's dry run uses it
    (a cell that shorts early ends the CCD ramp early) instead of refusing the key."""
    base = {"max": "3", "area": "1", "thickness": "100"}
    estimate = job_estimator(None)
    weak = estimate(JobSpec(protocol="ccd", cell=CellInfo(id="c"), params={**base, SIM_KEY: {"ccd": "0.3"}}))
    tough = estimate(JobSpec(protocol="ccd", cell=CellInfo(id="c"), params={**base, SIM_KEY: {"ccd": "10"}}))
    assert 0 < weak < tough


def test_the_worker_estimator_says_why_it_cannot_know() -> None:
    with pytest.raises(ValueError, match="nonsense"):
        job_estimator(None)(JobSpec(protocol="eis", cell=CellInfo(id="c"), params={"nonsense": "1"}))


def test_worker_events_map_onto_the_lab_files_alert_events(job) -> None:
    failed = dataclasses.replace(job, state=JobState.FAILED, error="instrument error: no reply")
    completed = dataclasses.replace(job, state=JobState.COMPLETED)
    assert alert_for(QueueEvent("finished", "job ended", failed, "sim2")).event == "failed"
    assert alert_for(QueueEvent("finished", "job ended", failed, "sim2")).reason == "instrument error: no reply"
    assert alert_for(QueueEvent("finished", "job ended", completed, "sim2")) is None
    interrupted = alert_for(QueueEvent("interrupted", "its job process exited with code -9", job, "sim2"))
    assert (interrupted.event, interrupted.reason, interrupted.cell_id) == (
        "interrupted",
        "its job process exited with code -9",
        "A7",
    )
    held = alert_for(QueueEvent("held", "channel sim2 held until acknowledged", job, "sim2"))
    assert (held.event, held.channel) == ("held", "sim2")
    assert alert_for(QueueEvent("queue_complete", "nothing left to run on sim1, sim2")).event == "queue_done"


def test_alert_hook_is_none_without_destinations(tmp_path: Path) -> None:
    assert alert_hook(None) is None
    assert alert_hook(parse_lab({}, tmp_path / "lab.toml")) is None


def test_a_failed_job_reaches_the_labs_webhook(tmp_path: Path, job, http_server) -> None:  # noqa: F811
    hook, port = http_server
    lab = parse_lab({"alerts": {"webhook": {"url": f"http://127.0.0.1:{port}/night"}}}, tmp_path / "lab.toml")
    on_event = alert_hook(lab)
    assert on_event is not None
    failed = dataclasses.replace(job, state=JobState.FAILED, error="safety stop: E above 5 V")
    on_event(QueueEvent("finished", "job ended", dataclasses.replace(failed, channel="sim2"), "sim2"))
    on_event(QueueEvent("finished", "job ended", dataclasses.replace(job, state=JobState.COMPLETED), "sim2"))
    threads = [t for t in threading.enumerate() if t.name == "labctl-alert"]
    for thread in threads:
        thread.join(30)
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["event"] == "failed" and body["job_id"] == job.id and body["reason"] == "safety stop: E above 5 V"
